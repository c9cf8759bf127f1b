// Bridges on a shard: each `connection` block is an outbound connection from this shard's ring
// to the remote broker, with a `BridgeSession` (Sources/Bridge) between the socket and the core.
// To the core it is a client with a persistent session, so what the remote should get while the
// bridge is down waits in that session; the runtime only connects, moves bytes, reconnects after
// `restart_timeout` (doubling to its cap) and publishes the state notification here.

import ApusBase
import Bridge
import Broker
import CApusSys
import Codec
import IOUring
import TLS
import Transport
@preconcurrency import Glibc

/// One bridge's runtime state on its shard.
final class BridgeLink {
    let index: Int
    let config: BridgeConfig
    enum State { case idle, connecting, connected }
    var state = State.idle
    var fd: Int32 = -1
    var connection = ConnectionID(slot: -1, generation: 0)
    let address = UnsafeMutablePointer<sockaddr_in>.allocate(capacity: 1)
    var nextAttempt: UInt64 = 0
    var backoff: Double
    var failuresLogged = 0
    var connects = 0
    /// Messages forwarded by the current connection, and by the ones before it.
    var forwardedOut = 0
    var forwardedIn = 0
    var earlierOut = 0
    var earlierIn = 0
    var connectedSince: UInt64 = 0
    /// At start the bridge's session in the core is made (CONNECT, SUBSCRIBE, then released with
    /// no socket: offline), so messages for the remote are kept from the start, before the remote
    /// was ever reached — as mosquitto's bridges do. Then the remote connection starts.
    var bootstrapped = false
    var bootstrap: ConnectionID? = nil
    var bootstrapDecoder = StreamDecoder(version: .v5)

    init(index: Int, config: BridgeConfig) {
        self.index = index
        self.config = config
        backoff = config.restartBase
    }

    deinit { address.deallocate() }
}

extension Shard {
    /// Every tick: start due connections, run keep-alives, notice bridges whose connection ended.
    func tickBridges(now: UInt64) {
        guard !bridges.isEmpty, !group.stopping.load(ordering: .relaxed) else { return }
        defer { reportBridges() }
        for link in bridges {
            if !link.bootstrapped { continue }  // the loop drives it every turn
            switch link.state {
            case .idle:
                if now >= link.nextAttempt { connectBridge(link, now: now) }
            case .connecting:
                break
            case .connected:
                let slot = Int(link.connection.slot)
                guard slot < sockets.count, sockets[slot].fd == link.fd, sockets[slot].generation == link.connection.generation,
                      let session = sockets[slot].bridge else {
                    bridgeDown(link, now: now, why: "connection closed")
                    continue
                }
                link.forwardedOut = session.counters.forwardedOut
                link.forwardedIn = session.counters.forwardedIn
                if sockets[slot].closing { continue }
                let status = session.tick(now: now, wire: &bridgeRemote)
                sealBridge(slot: slot)
                if !sockets[slot].transportOut.isEmpty { startSend(slot: slot) }
                if status != .open { bridgeFailed(slot: slot, link: link, status: status) }
            }
        }
    }

    /// Makes the bridge's offline session in the core (see `BridgeLink.bootstrapped`): CONNECT,
    /// then SUBSCRIBE once CONNACK is queued, then release once SUBACK is.
    func bootstrapBridge(_ link: BridgeLink, now: UInt64) {
        guard let id = link.bootstrap else {
            let id = core.accept(now: now)
            link.bootstrap = id
            // The slot has no socket: an empty entry (fd -1) that the runtime's paths skip.
            while sockets.count <= Int(id.slot) { sockets.append(SocketState()) }
            sockets[Int(id.slot)] = SocketState()
            BridgeSession.coreConnect(link.config, into: &bridgeScratch)
            core.receive(id, bytes: bridgeScratch.readableView, now: now)
            bridgeScratch.clear()
            return
        }
        guard core.hasQueuedOutput(id) else { return }
        core.takeOutbound(id, swappingWith: &bridgeScratch)
        var done = false
        link.bootstrapDecoder.feed(bridgeScratch.readableView)
        while let packet = try? link.bootstrapDecoder.next() {
            switch packet {
            case .connack(let ack) where !ack.reasonCode.isError:
                var subscribe = ByteBuffer()
                BridgeSession.coreSubscribe(link.config, packetID: 1, into: &subscribe)
                if subscribe.isEmpty { done = true } else { core.receive(id, bytes: subscribe.readableView, now: now) }
                subscribe.deallocate()
            case .connack(let ack):
                logger.error("bridge \(link.config.name): its session here was refused: \(ack.reasonCode)")
                done = true
            case .suback:
                done = true
            default:
                break
            }
        }
        bridgeScratch.clear()
        if done {
            core.release(id)
            link.bootstrap = nil
            link.bootstrapped = true
            group.bridgesPending.subtract(1, ordering: .releasing)
        }
    }

    func connectBridge(_ link: BridgeLink, now: UInt64) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        link.address.initialize(to: sockaddr_in())
        link.address.pointee.sin_family = sa_family_t(AF_INET)
        link.address.pointee.sin_port = link.config.port.bigEndian
        let host = link.config.host == "localhost" ? "127.0.0.1" : link.config.host
        guard inet_pton(AF_INET, host, &link.address.pointee.sin_addr) == 1 else {
            Glibc.close(fd)
            logger.error("bridge \(link.config.name): address \(link.config.host) is not an IPv4 address")
            link.nextAttempt = now + 60_000_000_000
            return
        }
        link.fd = fd
        link.state = .connecting
        link.address.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            ring.prepareConnect(fd: fd, address: $0, length: socklen_t(MemoryLayout<sockaddr_in>.size),
                                userData: UserData.make(.bridgeConnect, ConnectionID(slot: Int32(link.index), generation: 0)))
        }
    }

    func bridgeConnected(_ completion: Completion, now: UInt64) {
        let index = Int(UserData.slot(completion.userData))
        guard let link = bridges.first(where: { $0.index == index }), link.state == .connecting else { return }
        guard completion.result == 0, !group.stopping.load(ordering: .relaxed) else {
            Glibc.close(link.fd)
            link.fd = -1
            link.state = .idle
            scheduleBridgeRetry(link, now: now, why: completion.result == 0 ? "stopping" : String(cString: strerror(-completion.result)))
            return
        }
        let id = core.accept(now: now)
        core.markBridge(id)
        let slot = Int(id.slot)
        while sockets.count <= slot { sockets.append(SocketState()) }
        sockets[slot] = SocketState(fd: link.fd, generation: id.generation, listener: 0, transport: .bridge, protocolName: .mqtt)
        let session = BridgeSession(config: link.config)
        sockets[slot].bridge = session
        if let context = group.bridgeTLS[link.index] {
            // TLS to the remote: our ClientHello first; the bridge's CONNECT waits in the TLS
            // layer until the handshake is done.
            guard let tls = try? TLSSession(context: context),
                  link.config.insecure || tls.expectPeer(host: link.config.host) else {
                core.connectionLost(id)
                return
            }
            sockets[slot].tls = tls
            sockets[slot].handshakeDeadline = now + group.config.tlsHandshakeTimeoutNanoseconds
            handshakingSlots.append(Int32(slot))
            _ = tls.start(wire: &sockets[slot].transportOut)
        }
        session.start(now: now, wire: &bridgeRemote)
        sealBridge(slot: slot)
        link.connection = id
        link.state = .connected
        link.connectedSince = now
        armRecv(slot: slot)
        startSend(slot: slot)
    }

    /// The remote broker's bytes.
    func bridgeReceived(slot: Int, id: ConnectionID, bridge: BridgeSession, bytes: UnsafeRawBufferPointer, now: UInt64) {
        let wasReady = bridge.isReady
        let status = bridge.received(bytes, now: now, plaintext: &bridgePlaintext, wire: &bridgeRemote)
        sealBridge(slot: slot)
        if !bridgePlaintext.isEmpty {
            core.receive(id, bytes: bridgePlaintext.readableView, now: now)
            bridgePlaintext.clear()
        }
        if !sockets[slot].transportOut.isEmpty { startSend(slot: slot) }
        if !wasReady && bridge.isReady, let link = bridges.first(where: { $0.connection == id }) {
            link.connects += 1
            link.backoff = link.config.restartBase
            link.failuresLogged = 0
            logger.info("bridge \(link.config.name) connected to \(link.config.host):\(link.config.port)",
                        metadata: ["session_present": "\(bridge.remoteSessionPresent)"])
            if link.config.notifications { notifyBridgeState(link, "1") }
        }
        if status != .open, let link = bridges.first(where: { $0.connection == id }) {
            bridgeFailed(slot: slot, link: link, status: status)
        }
    }

    /// The core's bytes for the bridge: translated for the remote; what the bridge answers the
    /// core with (acknowledgements of messages it had to drop) goes back to the core.
    func bridgeOutbound(slot: Int, id: ConnectionID) {
        guard let bridge = sockets[slot].bridge else { return }
        if core.hasQueuedOutput(id) {
            core.takeOutbound(id, swappingWith: &bridgeScratch)
            bridge.send(&bridgeScratch, wire: &bridgeRemote)
        }
        sealBridge(slot: slot)
        // What waits for the socket (the layer's own bytes first, then the core's) becomes `wire`.
        let pending = sockets[slot].transportOut
        sockets[slot].transportOut = sockets[slot].wire
        sockets[slot].wire = pending
        core.setTransportBacklog(id, bytes: sockets[slot].wire.readableBytes + (sockets[slot].tls?.heldBytes ?? 0))
        if !bridge.coreInput.isEmpty {
            core.receive(id, bytes: bridge.coreInput.readableView, now: now())
            bridge.coreInput.clear()
        }
        if bridge.state == .closed && !sockets[slot].closing {
            // The core ended the bridge's session (shutdown, a takeover): its DISCONNECT is queued.
            core.connectionLost(id)
        }
    }

    /// The bridge's bytes for the remote (in `bridgeRemote`) into the socket's queue: as they are,
    /// or as TLS records.
    func sealBridge(slot: Int) {
        guard !bridgeRemote.isEmpty else { return }
        if let tls = sockets[slot].tls {
            tls.send(&bridgeRemote, wire: &sockets[slot].transportOut)
        } else {
            sockets[slot].transportOut.writeBytes(bridgeRemote.readableView)
        }
        bridgeRemote.clear()
    }

    func bridgeFailed(slot: Int, link: BridgeLink, status: TransportStatus) {
        if case .failed(let reason) = status { logBridge(link, "bridge \(link.config.name): \(reason)") }
        if !sockets[slot].closing { core.connectionLost(sockets[slot].bridgeID(slot: slot)) }
    }

    /// The bridge's connection is gone: notify and reconnect after the restart timeout.
    func bridgeDown(_ link: BridgeLink, now: UInt64, why: String) {
        link.state = .idle
        link.earlierOut += link.forwardedOut
        link.earlierIn += link.forwardedIn
        link.forwardedOut = 0
        link.forwardedIn = 0
        link.fd = -1
        if link.config.notifications && link.connects > 0 { notifyBridgeState(link, "0") }
        scheduleBridgeRetry(link, now: now, why: why)
    }

    func scheduleBridgeRetry(_ link: BridgeLink, now: UInt64, why: String) {
        logBridge(link, "bridge \(link.config.name) to \(link.config.host):\(link.config.port) down (\(why)); retrying in \(link.backoff) s")
        link.nextAttempt = now + UInt64(link.backoff * 1e9)
        link.backoff = min(link.backoff * 2, max(link.config.restartCap, link.config.restartBase))
    }

    /// Logs the first failures of a bridge, then every 100th (a remote down for hours is not a log flood).
    func logBridge(_ link: BridgeLink, _ message: String) {
        link.failuresLogged += 1
        if link.failuresLogged <= 5 || link.failuresLogged % 100 == 0 { logger.warning("\(message)") }
    }

    /// `$SYS/broker/connection/NAME/state` here: "1" connected, "0" not (retained).
    func notifyBridgeState(_ link: BridgeLink, _ value: String) {
        _ = core.publishFromBroker(topic: link.config.stateTopic, payload: Array(value.utf8), qos: .atLeastOnce, retain: true, properties: [])
    }

    /// This shard's bridges' figures into the group's board (every tick).
    func reportBridges() {
        let figures = bridges.map { link in
            BridgeFigures(name: link.config.name,
                          connected: link.state == .connected && (sockets[Int(link.connection.slot)].bridge?.isReady ?? false),
                          messagesOut: link.earlierOut + link.forwardedOut, messagesIn: link.earlierIn + link.forwardedIn,
                          connects: link.connects)
        }
        group.bridgeBoard.withLock { board in
            for (link, f) in zip(bridges, figures) { board[link.index] = f }
        }
    }
}

/// One bridge in /metrics.
struct BridgeFigures: Sendable {
    var name: String
    var connected: Bool
    /// Messages forwarded over the bridge's connections so far (each connection's count adds up).
    var messagesOut: Int
    var messagesIn: Int
    var connects: Int

    static func prometheusText(_ all: [BridgeFigures]) -> String {
        guard !all.isEmpty else { return "" }
        var out = "# HELP apus_bridge_connected 1 while the bridge's connection to its remote broker is up.\n# TYPE apus_bridge_connected gauge\n"
        for f in all { out += "apus_bridge_connected{bridge=\"\(f.name)\"} \(f.connected ? 1 : 0)\n" }
        out += "# HELP apus_bridge_messages_total Messages a bridge forwarded, out to its remote broker and in from it.\n# TYPE apus_bridge_messages_total counter\n"
        for f in all {
            out += "apus_bridge_messages_total{bridge=\"\(f.name)\",direction=\"out\"} \(f.messagesOut)\n"
            out += "apus_bridge_messages_total{bridge=\"\(f.name)\",direction=\"in\"} \(f.messagesIn)\n"
        }
        out += "# HELP apus_bridge_connects_total Times a bridge connected to its remote broker.\n# TYPE apus_bridge_connects_total counter\n"
        for f in all { out += "apus_bridge_connects_total{bridge=\"\(f.name)\"} \(f.connects)\n" }
        return out
    }
}

extension SocketState {
    func bridgeID(slot: Int) -> ConnectionID { ConnectionID(slot: Int32(slot), generation: generation) }
}
