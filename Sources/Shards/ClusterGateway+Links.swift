// The node gateway's links (ClusterGateway.swift): connections peers opened to this node (read:
// hello, then records for GatewayCore) and the one this node opens to each peer (written: hello,
// the snapshot, then what GatewayCore queues), with backoff, a probe read that notices a close,
// and the backlog cap that drops a stalled peer's link.

import ApusBase
import CApusSys
import Cluster
import Codec
import IOUring
import Logging
import ShardContract
@preconcurrency import Glibc

extension ClusterGateway {
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
}
