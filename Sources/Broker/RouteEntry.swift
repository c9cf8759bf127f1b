// What a shard stores per topic filter in its subscription trie: its local subscribers and the
// other shards that have subscribers on the same filter (the route table).

import Codec
import Router

/// A local connection subscribed to a filter.
public struct LocalSubscriber: Sendable {
    public var connection: ConnectionID
    public var options: SubscriptionOptions
    /// The v5 Subscription Identifier of the subscription, or 0.
    public var identifier: UInt32 = 0
}

/// The value of one filter in a shard's trie.
public struct RouteEntry: Sendable {
    /// Subscribers on this shard.
    public var local: [LocalSubscriber] = []
    /// Other shards with at least one subscriber on this filter.
    public var remote: ShardSet = .empty
    /// Shared subscription groups on this filter (`$share/{name}/{filter}`), with their members
    /// on every shard.
    public var shared: [SharedGroup] = []

    public var isEmpty: Bool { local.isEmpty && remote.isEmpty && shared.isEmpty }
}

/// One shared subscription group of one filter, as a shard sees it.
public struct SharedGroup: Sendable {
    public var name: String
    /// The filter the group is on (its trie key), for records to other shards.
    public var filter: String
    /// Index of this group's round-robin cursor in `ShardCore.sharedCursors`.
    var cursor: Int
    /// Members on this shard.
    public var local: [LocalSubscriber] = []
    /// Members per shard (this shard's entry is unused: `local.count` counts).
    public var counts: [Int]

    /// Members on every shard.
    func total(selfIndex: Int) -> Int {
        var n = local.count
        for (shard, c) in counts.enumerated() where shard != selfIndex { n += c }
        return n
    }

    var isEmpty: Bool { local.isEmpty && counts.allSatisfy { $0 == 0 } }
}

/// Collects the matches of one PUBLISH: local subscribers (into a reused array), remote shards,
/// and shared groups.
struct MatchCollector: TrieVisitor {
    var local: [LocalSubscriber]
    var remote: ShardSet = .empty
    var shared: [SharedGroup] = []

    @inline(__always)
    mutating func visit(_ value: RouteEntry) {
        remote.formUnion(value.remote)
        if !value.local.isEmpty { local.append(contentsOf: value.local) }
        if !value.shared.isEmpty { shared.append(contentsOf: value.shared) }
    }
}
