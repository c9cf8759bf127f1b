// What a shard stores per topic filter in its subscription trie: its local subscribers and the
// other shards that have subscribers on the same filter (the route table).

import Codec
import Router

/// A local connection subscribed to a filter.
public struct LocalSubscriber: Sendable {
    public var connection: ConnectionID
    public var options: SubscriptionOptions
}

/// The value of one filter in a shard's trie.
public struct RouteEntry: Sendable {
    /// Subscribers on this shard.
    public var local: [LocalSubscriber] = []
    /// Other shards with at least one subscriber on this filter.
    public var remote: ShardSet = .empty

    public var isEmpty: Bool { local.isEmpty && remote.isEmpty }
}

/// Collects the matches of one PUBLISH: local subscribers (into a reused array) and remote shards.
struct MatchCollector: TrieVisitor {
    var local: [LocalSubscriber]
    var remote: ShardSet = .empty

    @inline(__always)
    mutating func visit(_ value: RouteEntry) {
        remote.formUnion(value.remote)
        if !value.local.isEmpty { local.append(contentsOf: value.local) }
    }
}
