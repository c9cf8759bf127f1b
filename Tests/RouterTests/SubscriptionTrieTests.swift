// The topic-filter trie: the spec's wildcard examples, `$` topics, updates and pruning,
// copy-on-write snapshots, forced hash collisions, and a randomized check against a reference.

import XCTest
@testable import Router

final class SubscriptionTrieTests: XCTestCase {
    func trie(_ filters: [String], hashMask: UInt64 = ~0) -> SubscriptionTrie<String> {
        var t = SubscriptionTrie<String>(hashMask: hashMask)
        for f in filters { t.update(filter: f) { $0 = f } }
        return t
    }

    func matched(_ t: SubscriptionTrie<String>, _ topic: String) -> Set<String> {
        Set(t.matches(topic: topic))
    }

    func testSpecMultiLevelWildcardExamples() {
        let t = trie(["sport/tennis/player1/#", "sport/#", "#"])
        XCTAssertEqual(matched(t, "sport/tennis/player1"), ["sport/tennis/player1/#", "sport/#", "#"])
        XCTAssertEqual(matched(t, "sport/tennis/player1/ranking"), ["sport/tennis/player1/#", "sport/#", "#"])
        XCTAssertEqual(matched(t, "sport/tennis/player1/score/wimbledon"), ["sport/tennis/player1/#", "sport/#", "#"])
        XCTAssertEqual(matched(t, "sport"), ["sport/#", "#"])
        XCTAssertEqual(matched(t, "sports"), ["#"])
    }

    func testSpecSingleLevelWildcardExamples() {
        let t = trie(["sport/tennis/+", "sport/+", "+/+", "/+", "+", "+/tennis/#"])
        XCTAssertEqual(matched(t, "sport/tennis/player1"), ["sport/tennis/+", "+/tennis/#"])
        XCTAssertEqual(matched(t, "sport/tennis/player2"), ["sport/tennis/+", "+/tennis/#"])
        XCTAssertEqual(matched(t, "sport/tennis/player1/ranking"), ["+/tennis/#"])
        XCTAssertEqual(matched(t, "sport"), ["+"])
        XCTAssertEqual(matched(t, "sport/"), ["sport/+", "+/+"])
        XCTAssertEqual(matched(t, "/finance"), ["+/+", "/+"])
        XCTAssertEqual(matched(t, "sport/tennis"), ["sport/+", "+/+", "+/tennis/#"])
    }

    func testDollarTopics() {
        let t = trie(["#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+", "+"])
        XCTAssertEqual(matched(t, "$SYS/monitor/Clients"), ["$SYS/#", "$SYS/monitor/+"])
        XCTAssertEqual(matched(t, "$SYS"), ["$SYS/#"])
        XCTAssertEqual(matched(t, "a/monitor/Clients"), ["#", "+/monitor/Clients"])
        // Only the first level is special.
        let u = trie(["a/+", "a/#"])
        XCTAssertEqual(matched(u, "a/$x"), ["a/+", "a/#"])
    }

    func testEmptyLevels() {
        let t = trie(["a//b", "a/+/b", "/", "+/", "//"])
        XCTAssertEqual(matched(t, "a//b"), ["a//b", "a/+/b"])
        XCTAssertEqual(matched(t, "/"), ["/", "+/"])
        XCTAssertEqual(matched(t, "//"), ["//"])
        XCTAssertEqual(matched(t, "a/x/b"), ["a/+/b"])
    }

    /// The byte-filter API (mailbox records) finds the same nodes as the String one, empty
    /// levels included.
    func testUpdateAndLookupByBytes() {
        var t = trie(["a/b", "/x", "y/", "a//b", "+/+", "#"])
        for filter in ["a/b", "/x", "y/", "a//b", "+/+", "#"] {
            let bytes = Array(filter.utf8)
            XCTAssertEqual(bytes.withUnsafeBytes { t.value(forFilter: $0) }, filter)
            bytes.withUnsafeBytes { raw in t.update(filter: raw) { $0 = $0! + "!" } }
            XCTAssertEqual(t.value(forFilter: filter), filter + "!")
        }
        XCTAssertNil(Array("a".utf8).withUnsafeBytes { t.value(forFilter: $0) })
        XCTAssertNil(Array("a/b/c".utf8).withUnsafeBytes { t.value(forFilter: $0) })
        Array("a//b".utf8).withUnsafeBytes { raw in t.update(filter: raw) { $0 = nil } }
        XCTAssertNil(t.value(forFilter: "a//b"))
        XCTAssertEqual(t.value(forFilter: "a/b"), "a/b!")
        XCTAssertEqual(t.count, 5)
        XCTAssertEqual(matched(t, "a/b"), ["a/b!", "+/+!", "#!"])
    }

    func testUpdateReplaceDeleteAndPrune() {
        var t = SubscriptionTrie<Int>()
        t.update(filter: "a/b/c") { $0 = 1 }
        t.update(filter: "a/b") { $0 = 2 }
        XCTAssertEqual(t.count, 2)
        t.update(filter: "a/b/c") { $0 = ($0 ?? 0) + 10 }
        XCTAssertEqual(t.value(forFilter: "a/b/c"), 11)
        XCTAssertEqual(t.count, 2)
        let nodesBefore = t.liveNodes
        t.update(filter: "a/b/c") { $0 = nil }
        XCTAssertNil(t.value(forFilter: "a/b/c"))
        XCTAssertEqual(t.value(forFilter: "a/b"), 2)
        XCTAssertEqual(t.count, 1)
        XCTAssertEqual(t.liveNodes, nodesBefore - 1)
        t.update(filter: "a/b") { $0 = nil }
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.liveNodes, 1, "only the root is left")
        XCTAssertTrue(t.matches(topic: "a/b").isEmpty)
        // Freed nodes are reused.
        let capacity = t.nodeCapacity
        t.update(filter: "x/y/z") { $0 = 3 }
        XCTAssertEqual(t.nodeCapacity, capacity)
        XCTAssertEqual(t.matches(topic: "x/y/z"), [3])
        // Reading a filter that does not exist creates nothing; an update that leaves nil prunes.
        XCTAssertNil(t.value(forFilter: "q/r"))
        t.update(filter: "q/r") { _ in }
        XCTAssertEqual(t.liveNodes, 4)
    }

    func testWildcardNodesPrune() {
        var t = SubscriptionTrie<Int>()
        t.update(filter: "a/+/#") { $0 = 1 }
        XCTAssertEqual(t.matches(topic: "a/b/c"), [1])
        t.update(filter: "a/+/#") { $0 = nil }
        XCTAssertEqual(t.liveNodes, 1)
        XCTAssertTrue(t.matches(topic: "a/b/c").isEmpty)
    }

    func testCopyOnWriteSnapshot() {
        var t = SubscriptionTrie<Int>()
        t.update(filter: "a/+") { $0 = 1 }
        let snapshot = t
        t.update(filter: "a/+") { $0 = nil }
        t.update(filter: "a/b") { $0 = 2 }
        XCTAssertEqual(snapshot.matches(topic: "a/b"), [1])
        XCTAssertEqual(t.matches(topic: "a/b"), [2])
    }

    func testForcedHashCollisions() {
        // Every level hashes to 0: literal children share one collision chain.
        var t = trie(["a/b", "a/c", "b/c", "c", "a/b/d"], hashMask: 0)
        XCTAssertEqual(matched(t, "a/b"), ["a/b"])
        XCTAssertEqual(matched(t, "a/c"), ["a/c"])
        XCTAssertEqual(matched(t, "b/c"), ["b/c"])
        XCTAssertEqual(matched(t, "a/b/d"), ["a/b/d"])
        XCTAssertEqual(matched(t, "d"), [])
        t.update(filter: "a/c") { $0 = nil }  // removes from the middle of a chain
        t.update(filter: "a/b") { $0 = nil }
        XCTAssertEqual(matched(t, "a/b/d"), ["a/b/d"])
        XCTAssertEqual(matched(t, "a/c"), [])
        XCTAssertEqual(matched(t, "c"), ["c"])
        XCTAssertEqual(Set(t.allFilters().map(\.filter)), ["b/c", "c", "a/b/d"])
    }

    func testAllFilters() {
        let t = trie(["a/+/c", "#", "x"])
        XCTAssertEqual(Set(t.allFilters().map(\.filter)), ["a/+/c", "#", "x"])
        XCTAssertEqual(Set(t.allFilters().map(\.value)), ["a/+/c", "#", "x"])
    }

    /// Reference matcher: split both into levels.
    static func referenceMatches(filter: String, topic: String) -> Bool {
        let f = filter.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let t = topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if t[0].hasPrefix("$") && (f[0] == "+" || f[0] == "#") { return false }
        var i = 0
        while i < f.count {
            if f[i] == "#" { return true }
            if i >= t.count { return false }
            if f[i] != "+" && f[i] != t[i] { return false }
            i += 1
        }
        return i == t.count
    }

    func testRandomizedAgainstReference() {
        var rng = SplitMix64(seed: 42)
        let literals = ["a", "b", "", "$x", "long-level-name"]
        func randomTopic() -> String {
            (0..<Int.random(in: 1...4, using: &rng)).map { _ in literals.randomElement(using: &rng)! }.joined(separator: "/")
        }
        func randomFilter() -> String {
            let n = Int.random(in: 1...4, using: &rng)
            var levels: [String] = []
            for i in 0..<n {
                let r = Int.random(in: 0..<10, using: &rng)
                if r < 2 { levels.append("+") } else if r == 2 && i == n - 1 { levels.append("#") } else { levels.append(literals.randomElement(using: &rng)!) }
            }
            return levels.joined(separator: "/")
        }
        for mask in [~UInt64(0), UInt64(0x3)] {
            var t = SubscriptionTrie<String>(hashMask: mask)
            var filters = Set<String>()
            for round in 0..<3000 {
                let f = randomFilter()
                if round % 3 == 2, let victim = filters.randomElement(using: &rng) {
                    t.update(filter: victim) { $0 = nil }
                    filters.remove(victim)
                } else {
                    t.update(filter: f) { $0 = f }
                    filters.insert(f)
                }
                let topic = randomTopic()
                let expected = Set(filters.filter { SubscriptionTrieTests.referenceMatches(filter: $0, topic: topic) })
                let got = t.matches(topic: topic)
                XCTAssertEqual(got.count, Set(got).count, "each filter visited once for \(topic)")
                XCTAssertEqual(Set(got), expected, "topic \(topic)")
            }
            XCTAssertEqual(t.count, filters.count)
        }
    }
}

/// A deterministic generator for reproducible randomized tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
