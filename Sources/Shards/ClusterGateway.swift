// The node gateway's thread: one more member of the node's mailbox mesh (index = shard count),
// with its own io_uring ring for the node links. It drains what the shards send it into
// GatewayCore (the pure routing), moves GatewayCore's records into the shards' mailboxes (waking
// them as shards wake each other) and onto the links, and follows the membership etcd reports:
// a new member gets a link, a member whose lease ended loses its links and its routes.
//
// Links (NodeFrame.swift): this node opens one connection to each peer and writes only on it
// (hello, its route snapshot, then routes, publishes, retained messages and a status each second);
// it reads what peers send on the connections they opened to it. A link that breaks is opened
// again with backoff while the peer is a member; one whose unsent bytes pass
// `maxLinkBacklog` is dropped (and re-opened with a fresh snapshot).

import ApusBase
import CApusSys
import Cluster
import Codec
import IOUring
import Logging
import ShardContract
@preconcurrency import Glibc
final class ClusterGateway {
    let group: ShardGroup
    let index: Int
    let config: ClusterConfig
    let ring: IOUring
    let routing: GatewayCore
    let membership: EtcdMembership
    let listenFD: Int32
    let hello: NodeHello
    var logger: Logger
    var peers: [PeerNode?] = Array(repeating: nil, count: GatewayCore.maximumPeers)
    var peerByName: [String: Int] = [:]
    var inbound: [InboundLink?] = []
    var nextGeneration: UInt32 = 1
    var membershipGeneration = -1
    var completions: UnsafeMutablePointer<Completion>
    let completionCapacity = 512
    var linkDrops = 0
    var pausedInbound = false
    let startedAt = apus_monotonic_ns()
    /// Bytes queued for the shards beyond which reading the links pauses.
    static let shardBacklogLimit = 64 << 20

    init(group: ShardGroup, config: ClusterConfig, membership: EtcdMembership, listenFD: Int32, incarnation: UInt64) throws {
        self.group = group
        self.index = group.config.shards
        self.config = config
        self.membership = membership
        self.listenFD = listenFD
        ring = try IOUring(entries: 512, cqEntries: 4096)
        routing = GatewayCore(nodeID: group.config.broker.nodeID, shards: group.config.shards, wallClockOffset: group.wallClockOffset)
        hello = NodeHello(clusterName: config.clusterName, nodeName: config.nodeName, incarnation: incarnation,
                          shards: group.config.shards)
        logger = group.logger
        logger[metadataKey: "node"] = "\(config.nodeName)"
        completions = .allocate(capacity: completionCapacity)
        // The retained messages the store recovered, for peers that link later (the shards load
        // the same, with the same stamps' origin; ShardGroup drops them once all have).
        let wallNow = apus_monotonic_ns() &+ group.wallClockOffset
        for part in group.recoveredStore?.retained ?? [] {
            for r in part where !r.payload.isEmpty {
                routing.loadRetained(topic: r.topic, qos: QoS(rawValue: r.qos) ?? .atMostOnce, properties: r.properties, payload: r.payload,
                                     wallTime: wallNow, origin: ShardAddress(node: r.node, shard: Int(r.shard) % group.config.shards))
            }
        }
    }

    deinit { completions.deallocate() }

    @inline(__always) func now() -> UInt64 { apus_monotonic_ns() }

    func run() {
        let signals = group.signals[index]
        ring.prepareMultishotAccept(fd: listenFD, userData: UserData.make(.linkAccept))
        var nextTick = now()
        var nextStatus = now()
        while true {
            let before = now()
            if group.stopping.load(ordering: .relaxed) { break }
            var timeout = nextTick > before ? Int64(nextTick - before) : 0
            signals.sleeping.store(true, ordering: .sequentiallyConsistent)
            if timeout > 0 && (inboundMailboxesHaveRecords() || ring.readyCompletions > 0) { timeout = 0 }
            if timeout == 0 { ring.submitAndGetEvents() } else { ring.submitAndWait(timeoutNanoseconds: timeout) }
            signals.sleeping.store(false, ordering: .relaxed)
            let current = now()
            routing.currentTime = current
            processCompletions(now: current)
            drainMailboxes()
            if current >= nextTick {
                nextTick = current + group.config.tickNanoseconds
                signals.lastTick.store(current, ordering: .relaxed)
                followMembership(now: current)
                routing.tick(now: current)
                connectDuePeers(now: current)
                if current >= nextStatus {
                    nextStatus = current + 1_000_000_000
                    sendStatus(now: current)
                }
                publishBoard()
            }
            sendToShards()
            sendToPeers()
            resumeInboundIfDrained()
        }
        // Stopping: links close with the process; the lease is revoked by the group.
        for p in peers.compactMap({ $0 }) where p.fd >= 0 { shutdown(p.fd, Int32(SHUT_RDWR)); close(p.fd); p.fd = -1 }
        for l in inbound.compactMap({ $0 }) where l.open { shutdown(l.fd, Int32(SHUT_RDWR)); close(l.fd); l.open = false }
    }

    // MARK: mailboxes

    func inboundMailboxesHaveRecords() -> Bool {
        for from in 0..<index where group.mailbox(from: from, to: index).hasRecords { return true }
        return false
    }

    func drainMailboxes() {
        for from in 0..<index {
            let box = group.mailbox(from: from, to: index)
            var any = false
            while let record = box.nextRecord() {
                any = true
                routing.fromShard(record, shard: from)
            }
            if any { box.release() }
        }
    }

    func shardBacklog() -> Int { routing.shardOutbox.reduce(0) { $0 + $1.readableBytes } }

    func sendToShards() {
        for target in 0..<index where !routing.shardOutbox[target].isEmpty {
            if group.mailbox(from: index, to: target).send(from: &routing.shardOutbox[target]) { wake(target) }
        }
    }

    func wake(_ target: Int) {
        let signals = group.signals[target]
        if signals.sleeping.load(ordering: .sequentiallyConsistent),
           signals.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            ring.prepareMessage(toRing: signals.ringFD.load(ordering: .relaxed), result: UInt32(index),
                                userData: UserData.make(.wake), localUserData: UserData.make(.wakeSent))
        }
    }

    // MARK: completions

    func processCompletions(now: UInt64) {
        while true {
            let n = ring.harvest(into: completions, capacity: completionCapacity)
            if n == 0 { return }
            for i in 0..<n {
                let c = completions[i]
                let slot = Int(UserData.slot(c.userData))
                let generation = UserData.generation24(c.userData)
                switch UserData.kind(c.userData) {
                case .linkAccept?: accepted(c)
                case .linkRecv?: inboundReceived(slot: slot, generation: generation, result: c.result)
                case .linkConnect?: connected(peer: slot, generation: generation, result: c.result, now: now)
                case .linkSend?: sent(peer: slot, generation: generation, result: c.result, now: now)
                case .linkProbe?: probed(peer: slot, generation: generation, result: c.result, now: now)
                default: break  // wake-ups: the mailboxes are drained after every batch
                }
            }
            drainMailboxes()
        }
    }

    // MARK: status

    func localConnections() -> Int {
        group.stats.snapshot().reduce(0) { $0 + $1.gauges.connectedClients }
    }

    func sendStatus(now: UInt64) {
        let status = NodeStatus(connections: localConnections(), uptimeMilliseconds: (now - startedAt) / 1_000_000)
        for p in routing.peersUp { status.encode(origin: routing.address, into: &routing.peerOutbox[p]) }
    }

    func publishBoard() {
        let now = self.now()
        var nodes = [NodeView(name: config.nodeName, running: true, connections: localConnections(),
                              uptimeMilliseconds: (now - startedAt) / 1_000_000, linkUp: true)]
        var sent: [String: UInt64] = [:], received: [String: UInt64] = [:]
        var up = 0
        for peer in peers.compactMap({ $0 }).sorted(by: { $0.name < $1.name }) {
            let linked = peer.state == .up && peer.inbound != nil
            if linked { up += 1 }
            nodes.append(NodeView(name: peer.name, running: peer.isMember, connections: peer.isMember ? peer.status?.connections ?? 0 : 0,
                                  uptimeMilliseconds: peer.isMember ? peer.status?.uptimeMilliseconds ?? 0 : 0, linkUp: linked))
            sent[peer.name] = peer.bytesSent
            received[peer.name] = peer.bytesReceived
        }
        let counters = routing.counters
        let remote = routing.remoteFilterCount
        let sharedMembers = routing.remoteSharedMembers
        let members = membership.current().members.count
        let drops = linkDrops
        group.clusterBoard.update { f in
            f.nodes = nodes
            f.membersSeen = members
            f.linksUp = up
            f.publishesToPeers = counters.publishesToPeers
            f.publishesFromPeers = counters.publishesFromPeers
            f.retainedToPeers = counters.retainedToPeers
            f.retainedFromPeers = counters.retainedFromPeers
            f.linkDrops = drops
            f.linkBytesSent = sent
            f.linkBytesReceived = received
            f.remoteFilters = remote
            f.remoteSharedMembers = sharedMembers
        }
    }
}
