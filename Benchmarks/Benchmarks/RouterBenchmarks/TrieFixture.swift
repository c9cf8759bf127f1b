// The tries the router benchmarks run on, built in each benchmark's setup (one process per
// benchmark, so a 1M-filter trie exists only while its benchmark runs).
//
// Topics look like `tenant/{t}/device/{i}/telemetry` with t = i mod 1000. The exact shape
// subscribes each topic by name; the wildcard shape spreads the filters over four forms, so a
// match walks `+` and `#` branches at several levels:
//   tenant/{t}/device/{i}/+   tenant/{t}/+/{i}/telemetry   tenant/{t}/device/{i}/#   +/{t}/device/{i}/telemetry
// Either way every benchmark topic matches exactly one filter.

import Router

enum FilterShape: CustomStringConvertible {
    case exact, wildcard
    var description: String { self == .exact ? "exact" : "wildcard" }
}

/// The value a benchmark trie stores per filter (what a RouteEntry carries, minus the arrays).
struct Route {
    var id: UInt32
    var remote: UInt64
}

/// Counts the matches of every topic visited.
struct CountingVisitor: TrieVisitor {
    var matches = 0
    var sum: UInt64 = 0
    mutating func visit(_ value: Route) {
        matches += 1
        sum &+= UInt64(value.id)
    }
}

final class TrieFixture {
    var trie = SubscriptionTrie<Route>()
    /// 1024 topics that each match one filter, in stable memory.
    var topics: [UnsafeRawBufferPointer] = []
    /// 1024 filters not in the trie.
    var newFilters: [String] = []
    /// 1024 filters in the trie.
    var existingFilters: [String] = []

    static func topic(_ i: Int) -> String { "tenant/\(i % 1000)/device/\(i)/telemetry" }

    static func filter(_ i: Int, _ shape: FilterShape) -> String {
        let t = i % 1000
        switch (shape, i % 4) {
        case (.exact, _): return topic(i)
        case (.wildcard, 0): return "tenant/\(t)/device/\(i)/+"
        case (.wildcard, 1): return "tenant/\(t)/+/\(i)/telemetry"
        case (.wildcard, 2): return "tenant/\(t)/device/\(i)/#"
        default: return "+/\(t)/device/\(i)/telemetry"
        }
    }

    func build(size: Int, shape: FilterShape) {
        for i in 0..<size {
            trie.update(filter: TrieFixture.filter(i, shape)) { $0 = Route(id: UInt32(i), remote: 0) }
        }
        precondition(trie.count == size)
        // Spread the sampled topics over the whole trie (a stride coprime with the size).
        let stride = 7_919
        for k in 0..<1024 {
            let i = (k * stride) % size
            let bytes = Array(TrieFixture.topic(i).utf8)
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
            memory.copyBytes(from: bytes)
            topics.append(UnsafeRawBufferPointer(memory))
            existingFilters.append(TrieFixture.filter(i, shape))
            newFilters.append("tenant/\(i % 1000)/device/new-\(k)/telemetry")
        }
    }

    func reset() {
        trie = SubscriptionTrie<Route>()
        for topic in topics { topic.deallocate() }
        topics = []
        newFilters = []
        existingFilters = []
    }
}
