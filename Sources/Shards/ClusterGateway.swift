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

/// A peer node: its outbound link and what it told us on its own.
final class PeerNode {
    let slot: Int
    let name: String
    var member: ClusterMember?
    var nodeID: UInt16
    /// Still listed by etcd (a node that left shows as `stopped`).
    var isMember = true

    // The outbound link (this node writes).
    enum LinkState { case idle, connecting, up }
    var state = LinkState.idle
    var fd: Int32 = -1
    var generation: UInt32 = 0
    let address = UnsafeMutablePointer<sockaddr_in>.allocate(capacity: 1)
    var wire = ByteBuffer()
    var sending = false
    /// Operations of any generation still in the ring (the wire and probe must outlive them).
    var operationsInFlight = 0
    let probe = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
    var backoff: Double
    var nextAttempt: UInt64 = 0
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var upSince: UInt64 = 0

    // What the peer's own link said.
    var inbound: Int? = nil
    var status: NodeStatus? = nil

    init(slot: Int, name: String, nodeID: UInt16, backoff: Double) {
        self.slot = slot; self.name = name; self.nodeID = nodeID; self.backoff = backoff
    }

    deinit {
        address.deallocate()
        probe.deallocate()
        wire.deallocate()
    }
}

/// A connection a peer opened to this node.
final class InboundLink {
    let fd: Int32
    let generation: UInt32
    var framer: LinkFramer
    let buffer: UnsafeMutableRawPointer
    static let bufferSize = 256 << 10
    var peer: Int? = nil
    var peerNode: UInt16 = 0
    var open = true
    var receiving = false
    var paused = false

    init(fd: Int32, generation: UInt32, maximumRecord: Int) {
        self.fd = fd; self.generation = generation
        framer = LinkFramer(maximumRecord: maximumRecord)
        buffer = .allocate(byteCount: InboundLink.bufferSize, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        framer.deallocate()
    }
}

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

    // MARK: inbound links

    func accepted(_ c: Completion) {
        if !c.hasMore {
            ring.prepareMultishotAccept(fd: listenFD, userData: UserData.make(.linkAccept))
        }
        guard c.result >= 0 else { return }
        let fd = c.result
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let slot = inbound.firstIndex(where: { $0 == nil }) ?? { inbound.append(nil); return inbound.count - 1 }()
        let link = InboundLink(fd: fd, generation: nextGeneration & 0xFF_FFFF,
                               maximumRecord: max(group.config.broker.maxPacketSize, 1 << 20) + 4096)
        nextGeneration &+= 1
        inbound[slot] = link
        armRecv(slot)
    }

    func armRecv(_ slot: Int) {
        guard let link = inbound[slot], link.open, !link.receiving else { return }
        link.receiving = true
        ring.prepareRecv(fd: link.fd, buffer: link.buffer, count: InboundLink.bufferSize,
                         userData: UserData.make(.linkRecv, ConnectionID(slot: Int32(slot), generation: link.generation)))
    }

    func inboundReceived(slot: Int, generation: UInt32, result: Int32) {
        guard slot < inbound.count, let link = inbound[slot], link.generation == generation else { return }
        link.receiving = false
        guard link.open else { inbound[slot] = nil; return }
        guard result > 0 else {
            closeInbound(slot, why: result == 0 ? "closed by the peer" : "error \(-result)")
            return
        }
        if let p = link.peer { peers[p]?.bytesReceived += UInt64(result) }
        link.framer.append(UnsafeRawBufferPointer(start: link.buffer, count: Int(result)))
        var failure: String? = nil
        do {
            try link.framer.forEachRecord { record in
                if let why = self.inboundRecord(record, link: link, slot: slot) { failure = why; return false }
                return true
            }
        } catch {
            failure = "bad record length"
        }
        if let why = failure { closeInbound(slot, why: why); return }
        if shardBacklog() > ClusterGateway.shardBacklogLimit {
            link.paused = true
            pausedInbound = true
            return
        }
        armRecv(slot)
    }

    /// Handles one record of an inbound link; returns why the link must close, if it must.
    func inboundRecord(_ record: UnsafeRawBufferPointer, link: InboundLink, slot: Int) -> String? {
        if let kind = NodeFrame.kind(record) {
            switch kind {
            case .hello:
                guard let h = NodeHello.decode(record) else { return "bad hello" }
                guard h.clusterName == config.clusterName else { return "hello from cluster '\(h.clusterName)'" }
                guard h.nodeName != config.nodeName else { return "hello from a node with this node's name" }
                let nodeID = ClusterMember.nodeID(forName: h.nodeName)
                guard nodeID != routing.nodeID else { return "node '\(h.nodeName)' has this node's id: rename one" }
                guard let p = peerSlot(name: h.nodeName, nodeID: nodeID) else { return "too many nodes" }
                let peer = peers[p]!
                if let old = peer.inbound, old != slot { closeInbound(old, why: "replaced by a new link") }
                // A new epoch: what the peer said before is void; its snapshot follows.
                routing.dropRoutes(of: p)
                peer.inbound = slot
                link.peer = p
                link.peerNode = nodeID
                logger.info("cluster: link from \(h.nodeName) up", metadata: ["incarnation": "\(h.incarnation)", "shards": "\(h.shards)"])
                return nil
            case .status:
                guard let p = link.peer, let status = NodeStatus.decode(record) else { return "bad status" }
                peers[p]?.status = status
                return nil
            }
        }
        guard let p = link.peer else { return "record before hello" }
        return routing.fromPeer(record, peer: p, peerNode: link.peerNode) ? nil : "record refused"
    }

    func closeInbound(_ slot: Int, why: String) {
        guard let link = inbound[slot], link.open else { return }
        link.open = false
        shutdown(link.fd, Int32(SHUT_RDWR))
        close(link.fd)
        if let p = link.peer, let peer = peers[p], peer.inbound == slot {
            peer.inbound = nil
            routing.dropRoutes(of: p)
            logger.info("cluster: link from \(peer.name) down: \(why)")
        } else if link.peer == nil {
            logger.warning("cluster: inbound link closed: \(why)")
        }
        if !link.receiving { inbound[slot] = nil }  // otherwise at the recv's completion
    }

    func resumeInboundIfDrained() {
        guard pausedInbound, shardBacklog() < ClusterGateway.shardBacklogLimit / 2 else { return }
        pausedInbound = false
        for slot in inbound.indices where inbound[slot]?.paused == true {
            inbound[slot]!.paused = false
            armRecv(slot)
        }
    }

    // MARK: peers and outbound links

    func peerSlot(name: String, nodeID: UInt16) -> Int? {
        if let p = peerByName[name] { return p }
        guard let free = peers.firstIndex(where: { $0 == nil }) else { return nil }
        peers[free] = PeerNode(slot: free, name: name, nodeID: nodeID, backoff: config.linkBackoffInitial)
        peerByName[name] = free
        return free
    }

    func followMembership(now: UInt64) {
        let (generation, members) = membership.current()
        guard generation != membershipGeneration else { return }
        membershipGeneration = generation
        for (name, member) in members where name != config.nodeName {
            guard member.nodeID != routing.nodeID else {
                logger.error("cluster: node '\(name)' has this node's id \(routing.nodeID): rename one of them")
                continue
            }
            guard let p = peerSlot(name: name, nodeID: member.nodeID) else {
                logger.error("cluster: more than \(GatewayCore.maximumPeers) nodes; '\(name)' ignored")
                continue
            }
            let peer = peers[p]!
            let changed = peer.member != member
            if !peer.isMember || peer.member == nil {
                logger.info("cluster: node \(name) joined", metadata: ["link": "\(member.linkHost):\(member.linkPort)"])
            }
            peer.isMember = true
            if changed {
                if peer.member != nil && peer.state != .idle { closeOutbound(p, why: "its record changed (restarted)") }
                peer.member = member
                peer.backoff = config.linkBackoffInitial
                peer.nextAttempt = now
            }
        }
        for peer in peers.compactMap({ $0 }) where peer.isMember && peer.member != nil && members[peer.name] == nil {
            logger.warning("cluster: node \(peer.name) left (its lease ended or it stopped)")
            peer.isMember = false
            peer.member = nil
            peer.status = nil
            closeOutbound(peer.slot, why: "left the cluster")
            if let slot = peer.inbound { closeInbound(slot, why: "left the cluster") }
            routing.dropRoutes(of: peer.slot)
        }
    }

    func connectDuePeers(now: UInt64) {
        for peer in peers.compactMap({ $0 }) where peer.isMember && peer.state == .idle && peer.operationsInFlight == 0 {
            guard let member = peer.member, now >= peer.nextAttempt else { continue }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var sndbuf: Int32 = 4 << 20
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, socklen_t(MemoryLayout<Int32>.size))
            peer.address.initialize(to: sockaddr_in())
            peer.address.pointee.sin_family = sa_family_t(AF_INET)
            peer.address.pointee.sin_port = member.linkPort.bigEndian
            guard inet_pton(AF_INET, member.linkHost == "localhost" ? "127.0.0.1" : member.linkHost, &peer.address.pointee.sin_addr) == 1 else {
                close(fd)
                logger.error("cluster: node \(peer.name)'s link address \(member.linkHost) is not an IPv4 address")
                peer.nextAttempt = now + 60_000_000_000
                continue
            }
            peer.fd = fd
            peer.generation = nextGeneration & 0xFF_FFFF
            nextGeneration &+= 1
            peer.state = .connecting
            peer.operationsInFlight += 1
            peer.address.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                ring.prepareConnect(fd: fd, address: $0, length: socklen_t(MemoryLayout<sockaddr_in>.size),
                                    userData: UserData.make(.linkConnect, ConnectionID(slot: Int32(peer.slot), generation: peer.generation)))
            }
        }
    }

    func connected(peer p: Int, generation: UInt32, result: Int32, now: UInt64) {
        guard let peer = peers[p] else { return }
        peer.operationsInFlight -= 1
        guard peer.generation == generation, peer.state == .connecting else { return }
        guard result == 0 else {
            close(peer.fd)
            peer.fd = -1
            peer.state = .idle
            scheduleRetry(peer, now: now)
            return
        }
        peer.state = .up
        peer.upSince = now
        peer.backoff = config.linkBackoffInitial
        peer.wire.clear()
        routing.peerLinkUp(p, hello: hello)
        // Nothing comes back on this connection: a read that ends tells us it closed.
        peer.operationsInFlight += 1
        ring.prepareRecv(fd: peer.fd, buffer: peer.probe, count: 64,
                         userData: UserData.make(.linkProbe, ConnectionID(slot: Int32(p), generation: generation)))
        logger.info("cluster: link to \(peer.name) up")
    }

    func scheduleRetry(_ peer: PeerNode, now: UInt64) {
        peer.nextAttempt = now + UInt64(peer.backoff * 1e9)
        peer.backoff = min(peer.backoff * 2, config.linkBackoffMaximum)
    }

    func probed(peer p: Int, generation: UInt32, result: Int32, now: UInt64) {
        guard let peer = peers[p] else { return }
        peer.operationsInFlight -= 1
        guard peer.generation == generation, peer.state == .up else { return }
        closeOutbound(p, why: result == 0 ? "closed by the peer" : "error \(-result)")
        scheduleRetry(peer, now: now)
    }

    func closeOutbound(_ p: Int, why: String) {
        guard let peer = peers[p], peer.state != .idle else { return }
        if peer.state == .up { logger.info("cluster: link to \(peer.name) down: \(why)") }
        shutdown(peer.fd, Int32(SHUT_RDWR))
        close(peer.fd)
        peer.fd = -1
        peer.state = .idle
        peer.generation = 0xFF_FFFF  // no completion of the old link matches any more
        routing.peerLinkDown(p)
        if !peer.sending { peer.wire.clear() }
    }

    func sendToPeers() {
        for p in routing.peersUp {
            guard let peer = peers[p], peer.state == .up else { continue }
            if peer.wire.readableBytes + routing.peerOutbox[p].readableBytes > config.maxLinkBacklog {
                linkDrops += 1
                closeOutbound(p, why: "more than \(config.maxLinkBacklog) bytes unsent (peer stalled)")
                scheduleRetry(peer, now: now())
                continue
            }
            if peer.sending { continue }
            if peer.wire.isEmpty {
                if routing.peerOutbox[p].isEmpty { continue }
                swap(&peer.wire, &routing.peerOutbox[p])
            }
            startSend(peer)
        }
    }

    func startSend(_ peer: PeerNode) {
        let view = peer.wire.readableView
        peer.sending = true
        peer.operationsInFlight += 1
        ring.prepareSend(fd: peer.fd, bytes: view.baseAddress!, count: view.count,
                         userData: UserData.make(.linkSend, ConnectionID(slot: Int32(peer.slot), generation: peer.generation)))
    }

    func sent(peer p: Int, generation: UInt32, result: Int32, now: UInt64) {
        guard let peer = peers[p] else { return }
        peer.operationsInFlight -= 1
        peer.sending = false
        guard peer.generation == generation, peer.state == .up else { peer.wire.clear(); return }
        guard result > 0 else {
            closeOutbound(p, why: "send error \(-result)")
            scheduleRetry(peer, now: now)
            return
        }
        peer.bytesSent += UInt64(result)
        peer.wire.moveReaderIndex(forwardBy: Int(result))
        if !peer.wire.isEmpty { startSend(peer) }
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
