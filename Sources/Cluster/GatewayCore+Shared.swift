// Shared subscriptions across nodes: each message to exactly one member of a group, cluster-wide,
// each node weighted by the members it has.
//
// Shards count a group's members per shard and tell each other (`shareCount`); the gateway is told
// too. It tells the other nodes this node's total for the group, and tells its shards the other
// nodes' total as its own count: to a shard the rest of the cluster is one more shard with that
// many members. A shard that picks member k of the gateway's share sends it `sharedPublish` with
// member k; the gateway finds the node whose members hold index k (nodes in slot order) and sends
// the message there with the index within that node; that node's gateway finds the shard the
// same way. Messages from other nodes never leave the node again.

import ApusBase
import Router
import ShardContract

/// A shared group: its filter and name.
struct ShareKey: Hashable {
    var filter: String
    var group: String
}

extension GatewayCore {
    /// The most members one node can claim in one group (far above any node's connections).
    static let maximumMembersPerNode = 1 << 24

    /// A shard's member count of a group changed.
    func shareCountFromShard(filter: String, group: String, count: Int, shard: Int) {
        let key = ShareKey(filter: filter, group: group)
        var counts = localShares[key] ?? Array(repeating: 0, count: shards)
        let before = counts.reduce(0, +)
        counts[shard] = count
        let after = counts.reduce(0, +)
        localShares[key] = after == 0 ? nil : counts
        guard after != before else { return }
        for peer in peersUp { encodeShareCount(key, after, into: &peerOutbox[peer]) }
    }

    /// A peer's member count of a group changed.
    func shareCountFromPeer(filter: String, group: String, count: Int, peer: Int) {
        let key = ShareKey(filter: filter, group: group)
        var counts = remoteShares[key] ?? Array(repeating: 0, count: GatewayCore.maximumPeers)
        let before = counts.reduce(0, +)
        // A peer's word is input: a count beyond any node's connections is cut, so the sum over
        // 64 peers stays within the record's 32 bits.
        counts[peer] = min(max(count, 0), GatewayCore.maximumMembersPerNode)
        let after = counts.reduce(0, +)
        remoteShares[key] = after == 0 ? nil : counts
        if after != before {
            for shard in 0..<shards { encodeShareCount(key, after, into: &shardOutbox[shard]) }
        }
    }

    /// A peer left or its link broke: its members no longer count.
    func dropShares(of peer: Int) {
        for (key, counts) in remoteShares where counts[peer] != 0 {
            shareCountFromPeer(filter: key.filter, group: key.group, count: 0, peer: peer)
        }
    }

    /// Members of shared groups on other nodes, over all groups.
    public var remoteSharedMembers: Int { remoteShares.values.reduce(0) { $0 + $1.reduce(0, +) } }

    /// This node's groups, for a peer whose link just came up.
    func shareSnapshot(into buffer: inout ByteBuffer) {
        for (key, counts) in localShares { encodeShareCount(key, counts.reduce(0, +), into: &buffer) }
    }

    /// Member `member` of the other nodes' share: to the node that has it.
    func sharedPublishFromShard(_ p: ForwardedPublish, filter: UnsafeRawBufferPointer, group: UnsafeRawBufferPointer, member: Int) {
        let key = ShareKey(filter: String(decoding: filter, as: UTF8.self), group: String(decoding: group, as: UTF8.self))
        guard let counts = remoteShares[key] else { counters.sharedDropped += 1; return }
        var k = member
        for peer in peersUp {
            let n = counts[peer]
            if k >= n { k -= n; continue }
            ShardRecordCodec.encode(.sharedPublish(p, filter: filter, group: group, member: k), origin: address, into: &peerOutbox[peer])
            counters.publishesToPeers += 1
            return
        }
        counters.sharedDropped += 1  // the node left while the message was on its way
    }

    /// Member `member` of this node's share, from another node: to the shard that has it.
    func sharedPublishFromPeer(_ p: ForwardedPublish, filter: UnsafeRawBufferPointer, group: UnsafeRawBufferPointer, member: Int) {
        let key = ShareKey(filter: String(decoding: filter, as: UTF8.self), group: String(decoding: group, as: UTF8.self))
        counters.publishesFromPeers += 1
        guard let counts = localShares[key] else { counters.sharedDropped += 1; return }
        let total = counts.reduce(0, +)
        var k = member % max(total, 1)
        for shard in 0..<shards {
            let n = counts[shard]
            if k >= n { k -= n; continue }
            ShardRecordCodec.encode(.sharedPublish(p, filter: filter, group: group, member: k), origin: address, into: &shardOutbox[shard])
            return
        }
        counters.sharedDropped += 1
    }

    private func encodeShareCount(_ key: ShareKey, _ count: Int, into buffer: inout ByteBuffer) {
        var filter = Array(key.filter.utf8), group = Array(key.group.utf8)
        filter.withUnsafeMutableBytes { f in
            group.withUnsafeMutableBytes { g in
                ShardRecordCodec.encode(.shareCount(filter: UnsafeRawBufferPointer(f), group: UnsafeRawBufferPointer(g), count: count),
                                        origin: address, into: &buffer)
            }
        }
    }
}
