// The node gateway's logic, sans-IO: what crosses between this node's shards and the other nodes.
//
// In a cluster the gateway is one more member of the node's shard mesh (index = shard count): the
// shards send it what they send any other shard (routeAdd/-Remove, publish, retain, barriers) and
// it answers as a shard would. Towards the shards it looks like a shard whose subscribers are the
// other nodes: it sends routeAdd for a filter when the first node gains a subscriber on it and
// routeRemove when the last node loses it, so a shard's per-message work never widens — a publish
// that other nodes want is one more record to one more mailbox. Towards the other nodes it sends
// the node's routes (once per filter, whatever the number of local shards and clients), the
// publishes they want, and retained messages. Records keep the shard contract's layout on the
// wire (ShardRecordCodec.swift); the node protocol adds only `hello` and `status` (NodeFrame.swift).
//
// Loops are impossible by construction: a publish from a node goes only to local shards, which
// deliver it and never forward it again (forwardToShards: false), and a publish from a shard goes
// only to nodes.

import ApusBase
import Codec
import Router
import ShardContract

/// The gateway's routing state and output queues. Driven by the runtime's gateway thread; every
/// input appends records to `shardOutbox` (per local shard) and `peerOutbox` (per peer slot).
public final class GatewayCore {
    /// This node's id (the origin node of what the gateway sends its shards).
    public let nodeID: UInt16
    /// The node's shard count; the gateway's own index in the mesh is `shards`.
    public let shards: Int
    public var address: ShardAddress { ShardAddress(node: nodeID, shard: shards) }
    /// Realtime minus monotonic on this node: retained stamps cross nodes as wall-clock times.
    public let wallClockOffset: UInt64

    /// Records for each local shard and each peer slot (the runtime moves them out).
    public var shardOutbox: [ByteBuffer]
    public var peerOutbox: [ByteBuffer]
    /// Peer slots whose outbound link is up (publishes and routes are sent only to those).
    public private(set) var peersUp = ShardSet.empty

    /// filter → the local shards that have subscribers on it.
    private var localRoutes: [String: ShardSet] = [:]
    /// filter → the peer slots that have subscribers on it (matched per publish from a shard).
    private var remoteRoutes = SubscriptionTrie<ShardSet>()
    /// What each peer slot subscribed, to drop it all when the peer leaves.
    private var peerFilters: [Set<String>]
    /// filter → local shards, as a trie (matched per publish from a peer).
    private var localTrie = SubscriptionTrie<ShardSet>()
    /// Client-id claims across nodes (GatewayCore+Clients.swift): ours waiting for answers, and
    /// other nodes' waiting for a shard here (the peer slots, in order).
    var pendingClaims: [String: PendingClaim] = [:]
    /// Shared groups' members: per local shard, and per peer slot (GatewayCore+Shared.swift).
    var localShares: [ShareKey: [Int]] = [:]
    var remoteShares: [ShareKey: [Int]] = [:]
    var pendingRemoteClaims: [String: [Int]] = [:]
    /// The runtime's monotonic clock at the last input (claim deadlines).
    public var currentTime: UInt64 = 0
    /// The node's retained messages as the gateway saw them pass (stamps in wall-clock time): a
    /// peer whose link comes up gets them all after the routes, so a node that joins late, or
    /// comes back, has every retained message. One more replica per node, beside the shards'.
    private var retained: [[UInt8]: RetainedEntry] = [:]

    struct RetainedEntry {
        var stamp: RetainedStamp
        var qos: QoS
        var properties: [UInt8]
        var payload: [UInt8]
    }

    public struct Counters: Sendable {
        public var publishesToPeers = 0
        public var publishesFromPeers = 0
        public var retainedToPeers = 0
        public var retainedFromPeers = 0
        public var routeChangesToPeers = 0
        public var routeChangesFromPeers = 0
        public var recordsRefused = 0
        public var recordsIgnored = 0
        public var claimsAsked = 0
        public var claimsTimedOut = 0
        public var sessionsTakenFromPeers = 0
        public var sessionsHandedToPeers = 0
        public var sharedDropped = 0
    }
    public var counters = Counters()

    public static let maximumPeers = 64

    public init(nodeID: UInt16, shards: Int, wallClockOffset: UInt64) {
        precondition(shards >= 1 && shards < 64)
        self.nodeID = nodeID
        self.shards = shards
        self.wallClockOffset = wallClockOffset
        shardOutbox = Array(repeating: ByteBuffer(), count: shards)
        peerOutbox = Array(repeating: ByteBuffer(), count: GatewayCore.maximumPeers)
        peerFilters = Array(repeating: [], count: GatewayCore.maximumPeers)
    }

    /// Filters with subscribers on this node.
    public var localFilterCount: Int { localRoutes.count }
    /// Distinct filters other nodes subscribed.
    public var remoteFilterCount: Int { remoteRoutes.count }

    // MARK: links

    /// The outbound link to `peer` is up: it gets this node's hello and every route (a snapshot
    /// that replaces whatever it knew of this node).
    public func peerLinkUp(_ peer: Int, hello: NodeHello) {
        peerOutbox[peer].clear()
        hello.encode(origin: address, into: &peerOutbox[peer])
        for filter in localRoutes.keys.sorted() {
            encodeRoute(.routeAdd, filter: filter, into: &peerOutbox[peer])
        }
        counters.routeChangesToPeers += localRoutes.count
        for (topic, entry) in retained {
            encodeRetained(topic: topic, entry, into: &peerOutbox[peer])
            counters.retainedToPeers += 1
        }
        shareSnapshot(into: &peerOutbox[peer])
        peersUp.insert(peer)
    }

    /// The outbound link to `peer` is down: nothing more is queued for it.
    public func peerLinkDown(_ peer: Int) {
        peersUp.remove(peer)
        peerOutbox[peer].clear()
        peerGoneFromClaims(peer)
    }

    /// `peer`'s routes are void: its inbound link broke, it said hello again (a new epoch: its
    /// snapshot follows), or it left the membership. Local shards lose the filters no node wants.
    public func dropRoutes(of peer: Int) {
        let filters = peerFilters[peer]
        peerFilters[peer] = []
        for filter in filters { removeRemote(filter, peer: peer) }
        peerGoneFromClaims(peer)
        dropShares(of: peer)
    }

    // MARK: from the node's shards

    /// A record one of this node's shards sent the gateway (one whole record).
    public func fromShard(_ record: UnsafeRawBufferPointer, shard: Int) {
        guard let kind = ShardRecordCodec.kind(record) else { counters.recordsRefused += 1; return }
        if kind == .publish {
            guard let (_, p) = try? ShardRecordCodec.decodePublish(record) else { counters.recordsRefused += 1; return }
            var visitor = SetCollector()
            remoteRoutes.match(topic: p.topic, visitor: &visitor)
            let targets = ShardSet(rawValue: visitor.set.rawValue & peersUp.rawValue)
            for peer in targets {
                peerOutbox[peer].writeBytes(record)
                counters.publishesToPeers += 1
            }
            return
        }
        guard let decoded = try? ShardRecordCodec.decode(record) else { counters.recordsRefused += 1; return }
        switch decoded.message {
        case .routeAdd(let filter, _):
            let name = String(decoding: filter, as: UTF8.self)
            var set = localRoutes[name] ?? .empty
            let wasEmpty = set.isEmpty
            set.insert(shard)
            localRoutes[name] = set
            localTrie.update(filter: filter) { $0 = set }
            if wasEmpty { broadcastRoute(.routeAdd, filter: name) }
        case .routeRemove(let filter, _):
            let name = String(decoding: filter, as: UTF8.self)
            guard var set = localRoutes[name] else { return }
            set.remove(shard)
            if set.isEmpty {
                localRoutes.removeValue(forKey: name)
                localTrie.update(filter: filter) { $0 = nil }
                broadcastRoute(.routeRemove, filter: name)
            } else {
                localRoutes[name] = set
                localTrie.update(filter: filter) { $0 = set }
            }
        case .barrier(let token):
            // Routes reach other nodes asynchronously: the SUBACK does not wait for them.
            ShardRecordCodec.encode(.barrierAck(token: token), origin: address, into: &shardOutbox[shard])
        case .storeBarrier(let token):
            // Nothing of a forwarded message is stored on this node by the gateway.
            ShardRecordCodec.encode(.storeBarrierAck(token: token), origin: address, into: &shardOutbox[shard])
        case .retain(var update):
            // On the wire a stamp's time is wall-clock nanoseconds (each node converts).
            update.stamp.time &+= wallClockOffset
            update.stamp.origin.node = nodeID
            guard keepRetained(update) else { return }
            for peer in peersUp {
                ShardRecordCodec.encode(.retain(update), origin: address, into: &peerOutbox[peer])
                counters.retainedToPeers += 1
            }
        case .shareCount(let filter, let group, let count):
            shareCountFromShard(filter: String(decoding: filter, as: UTF8.self), group: String(decoding: group, as: UTF8.self),
                                count: count, shard: shard)
        case .sharedPublish(let p, let filter, let group, let member):
            sharedPublishFromShard(p, filter: filter, group: group, member: member)
        case .client(let m) where m.kind == .claim:
            claimFromShard(m)
        case .client(let m) where m.kind == .claimed:
            claimedFromShard(m)
        default:
            // Flow control, shared groups and replays stay within a node.
            counters.recordsIgnored += 1
        }
    }

    // MARK: from other nodes

    /// A record from `peer`'s link (after its hello). Returns false for a record that does not
    /// decode: the runtime closes the link.
    public func fromPeer(_ record: UnsafeRawBufferPointer, peer: Int, peerNode: UInt16) -> Bool {
        guard let kind = ShardRecordCodec.kind(record) else { counters.recordsRefused += 1; return false }
        if kind == .publish {
            guard let (_, p) = try? ShardRecordCodec.decodePublish(record) else { counters.recordsRefused += 1; return false }
            var visitor = SetCollector()
            localTrie.match(topic: p.topic, visitor: &visitor)
            counters.publishesFromPeers += 1
            for shard in visitor.set where shard < shards {
                // The same record, from the gateway: local shards deliver and never forward it.
                shardOutbox[shard].writeBytes(record)
                let header = shardOutbox[shard].base! + (shardOutbox[shard].writerIndex - record.count)
                header.storeBytes(of: UInt8(truncatingIfNeeded: shards), toByteOffset: 5, as: UInt8.self)
                header.storeBytes(of: nodeID.littleEndian, toByteOffset: 6, as: UInt16.self)
            }
            return true
        }
        guard let decoded = try? ShardRecordCodec.decode(record) else { counters.recordsRefused += 1; return false }
        switch decoded.message {
        case .routeAdd(let filter, _):
            counters.routeChangesFromPeers += 1
            addRemote(String(decoding: filter, as: UTF8.self), peer: peer)
        case .routeRemove(let filter, _):
            counters.routeChangesFromPeers += 1
            let name = String(decoding: filter, as: UTF8.self)
            if peerFilters[peer].remove(name) != nil { removeRemote(name, peer: peer) }
        case .retain(var update):
            update.stamp.origin.node = peerNode
            counters.retainedFromPeers += 1
            guard keepRetained(update) else { return true }
            update.stamp.time = update.stamp.time &- min(update.stamp.time, wallClockOffset)
            for shard in 0..<shards {
                ShardRecordCodec.encode(.retain(update), origin: address, into: &shardOutbox[shard])
            }
        case .client(let m):
            clientFromPeer(m, peer: peer)
        case .shareCount(let filter, let group, let count):
            shareCountFromPeer(filter: String(decoding: filter, as: UTF8.self), group: String(decoding: group, as: UTF8.self),
                               count: count, peer: peer)
        case .sharedPublish(let p, let filter, let group, let member):
            sharedPublishFromPeer(p, filter: filter, group: group, member: member)
        default:
            counters.recordsIgnored += 1
        }
        return true
    }

    // MARK: retained messages

    /// Applies an update (stamp in wall-clock time) to the gateway's replica; false when an
    /// update with a later stamp is already there (nothing to pass on).
    func keepRetained(_ update: RetainedUpdate) -> Bool {
        let topic = Array(update.topic)
        if let current = retained[topic], current.stamp > update.stamp { return false }
        if update.payload.isEmpty {
            retained.removeValue(forKey: topic)
        } else {
            retained[topic] = RetainedEntry(stamp: update.stamp, qos: update.qos, properties: Array(update.properties),
                                            payload: Array(update.payload))
        }
        return true
    }

    /// At start: a retained message the store recovered (the shards load the same).
    public func loadRetained(topic: [UInt8], qos: QoS, properties: [UInt8], payload: [UInt8], wallTime: UInt64, origin: ShardAddress) {
        guard !payload.isEmpty else { return }
        retained[topic] = RetainedEntry(stamp: RetainedStamp(time: wallTime, origin: origin), qos: qos, properties: properties, payload: payload)
    }

    /// Retained messages in the gateway's replica.
    public var retainedCount: Int { retained.count }

    private func encodeRetained(topic: [UInt8], _ entry: RetainedEntry, into buffer: inout ByteBuffer) {
        topic.withUnsafeBytes { t in
            entry.properties.withUnsafeBytes { p in
                entry.payload.withUnsafeBytes { b in
                    ShardRecordCodec.encode(.retain(RetainedUpdate(qos: entry.qos, stamp: entry.stamp, topic: t, properties: p, payload: b)),
                                            origin: address, into: &buffer)
                }
            }
        }
    }

    // MARK: route tables

    private func addRemote(_ filter: String, peer: Int) {
        guard peerFilters[peer].insert(filter).inserted else { return }
        let first = remoteRoutes.update(filter: filter) { entry -> Bool in
            var set = entry ?? .empty
            let wasEmpty = set.isEmpty
            set.insert(peer)
            entry = set
            return wasEmpty
        }
        if first {
            // The gateway is now a "shard with subscribers" on this filter for every local shard.
            for shard in 0..<shards { encodeRoute(.routeAdd, filter: filter, into: &shardOutbox[shard]) }
        }
    }

    private func removeRemote(_ filter: String, peer: Int) {
        let last = remoteRoutes.update(filter: filter) { entry -> Bool in
            guard var set = entry else { return false }
            set.remove(peer)
            entry = set.isEmpty ? nil : set
            return set.isEmpty
        }
        if last {
            for shard in 0..<shards { encodeRoute(.routeRemove, filter: filter, into: &shardOutbox[shard]) }
        }
    }

    private func broadcastRoute(_ kind: ShardMessageKind, filter: String) {
        for peer in peersUp {
            encodeRoute(kind, filter: filter, into: &peerOutbox[peer])
            counters.routeChangesToPeers += 1
        }
    }

    private func encodeRoute(_ kind: ShardMessageKind, filter: String, into buffer: inout ByteBuffer) {
        var bytes = Array(filter.utf8)
        bytes.withUnsafeMutableBytes { raw in
            let f = UnsafeRawBufferPointer(raw)
            let message: ShardMessage = kind == .routeAdd ? .routeAdd(filter: f, time: .max) : .routeRemove(filter: f, time: .max)
            ShardRecordCodec.encode(message, origin: address, into: &buffer)
        }
    }

    /// Filters the given peer subscribed (tests, status).
    public func filters(of peer: Int) -> Set<String> { peerFilters[peer] }
    /// The local shards with subscribers on `filter` (tests).
    public func localShards(for filter: String) -> ShardSet { localRoutes[filter] ?? .empty }
}

/// Collects the union of matching sets.
struct SetCollector: TrieVisitor {
    var set = ShardSet.empty
    @inline(__always) mutating func visit(_ value: ShardSet) { set.formUnion(value) }
}
