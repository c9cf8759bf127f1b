// TLS listeners on a shard: each connection's `TLSSession` sits between the ring and the core.
// Ciphertext from the socket goes in, its plaintext to the core; the core's queued bytes go in
// once per send, records to the socket. The core never learns that a connection is encrypted,
// except for the user name a verified client certificate gives (use_identity_as_username).
// Records made while a send is in flight wait in `transportOut` (the send reads from `wire`, which
// must not move). A handshake has a deadline, and a shard runs at most `maxTLSHandshakes` at
// once: a flood of handshakes is closed at the door, established clients keep their share.

import Broker
import Transport
import TLS
import WebSocket
@preconcurrency import Glibc

extension Shard {
    /// A session for a connection on TLS listener `listener`, or nil when the shard has its
    /// maximum of handshakes running (or the listener has no context): the connection is closed.
    func newTLSSession(listener: Int) -> TLSSession? {
        guard handshakingSlots.count < group.config.maxTLSHandshakes else {
            tlsHandshakesRefused += 1
            if tlsHandshakesRefused & (tlsHandshakesRefused - 1) == 0 {  // 1, 2, 4, 8, …: a flood is not a log flood
                logger.warning("TLS handshake refused: too many handshakes running", metadata: [
                    "running": "\(handshakingSlots.count)", "refused_total": "\(tlsHandshakesRefused)"])
            }
            return nil
        }
        guard listener < tlsContexts.count, let context = tlsContexts[listener] else { return nil }
        return try? TLSSession(context: context)
    }

    func startTLS(slot: Int, session: TLSSession, now: UInt64) {
        sockets[slot].tls = session
        sockets[slot].handshakeDeadline = now + group.config.tlsHandshakeTimeoutNanoseconds
        handshakingSlots.append(Int32(slot))
        tlsConnections += 1
    }

    /// Ciphertext arrived on a TLS connection.
    func tlsReceived(slot: Int, id: ConnectionID, session: TLSSession, bytes: UnsafeRawBufferPointer, now: UInt64) {
        let wasEstablished = session.isEstablished
        let status = session.received(bytes, plaintext: &tlsPlaintext, wire: &sockets[slot].transportOut)
        if !wasEstablished && session.isEstablished { handshakeFinished(slot: slot, id: id, session: session) }
        if !tlsPlaintext.isEmpty {
            if let ws = sockets[slot].ws {
                // wss: the plaintext is the WebSocket stream; what that layer answers is encrypted.
                let upgraded = ws.isEstablished
                let wsStatus = ws.received(tlsPlaintext.readableView, plaintext: &wsPlaintext, wire: &wsControl)
                if !upgraded && ws.isEstablished && wsStatus == .open { wsUpgrades += 1 }
                tlsPlaintext.clear()
                if !wsControl.isEmpty {
                    session.send(&wsControl, wire: &sockets[slot].transportOut)
                    wsControl.clear()
                }
                if !wsPlaintext.isEmpty {
                    if !sockets[slot].closing { core.receive(id, bytes: wsPlaintext.readableView, now: now) }
                    wsPlaintext.clear()
                }
                if wsStatus != .open {
                    if !sockets[slot].transportOut.isEmpty { startSend(slot: slot) }
                    webSocketEnded(slot: slot, id: id, ws: ws, status: wsStatus)
                    return
                }
            } else if let bridge = sockets[slot].bridge {
                // A bridge over TLS: the plaintext is the remote broker's MQTT.
                if !sockets[slot].closing { bridgeReceived(slot: slot, id: id, bridge: bridge, bytes: tlsPlaintext.readableView, now: now) }
                tlsPlaintext.clear()
            } else {
                if !sockets[slot].closing { core.receive(id, bytes: tlsPlaintext.readableView, now: now) }
                tlsPlaintext.clear()
            }
        }
        if !sockets[slot].transportOut.isEmpty { startSend(slot: slot) }
        switch status {
        case .open:
            break
        case .closed:
            // close_notify: the client is done, as with a FIN.
            if !sockets[slot].closing { core.connectionLost(id) }
        case .failed(let reason):
            if !wasEstablished { handshakeFailed(slot: slot, reason: reason) } else {
                logger.info("TLS connection failed", metadata: ["reason": "\(reason)"])
            }
            if !sockets[slot].closing { core.connectionLost(id) }
        }
    }

    func handshakeFinished(slot: Int, id: ConnectionID, session: TLSSession) {
        tlsHandshakes += 1
        removeHandshaking(slot: slot)
        guard sockets[slot].bridge == nil else { return }  // a bridge's own handshake, as a client
        let settings = group.config.listeners[Int(sockets[slot].listener)].tls
        if settings.useIdentityAsUsername || settings.useSubjectAsUsername,
           let name = session.peerIdentity(subject: settings.useSubjectAsUsername) {
            core.setCertificateUsername(id, name)
        }
    }

    func handshakeFailed(slot: Int, reason: String) {
        tlsHandshakeFailures += 1
        removeHandshaking(slot: slot)
        // Every failure is counted; the log gets the first ones and then every 1000th.
        if tlsHandshakeFailures <= 20 || tlsHandshakeFailures % 1000 == 0 {
            logger.info("TLS handshake failed", metadata: [
                "listener": "\(sockets[slot].bridge != nil ? "bridge" : group.boundListeners[Int(sockets[slot].listener)].address)", "reason": "\(reason)",
                "failures_total": "\(tlsHandshakeFailures)"])
        }
    }

    func removeHandshaking(slot: Int) {
        if let i = handshakingSlots.firstIndex(of: Int32(slot)) { handshakingSlots.remove(at: i) }
    }

    /// Handshakes past their deadline: counted as failed, the connection closed.
    func checkHandshakeDeadlines(now: UInt64) {
        guard !handshakingSlots.isEmpty else { return }
        var i = 0
        while i < handshakingSlots.count {
            let slot = Int(handshakingSlots[i])
            guard slot < sockets.count, sockets[slot].fd >= 0, let tls = sockets[slot].tls, !tls.isEstablished else {
                handshakingSlots.remove(at: i)
                continue
            }
            if now >= sockets[slot].handshakeDeadline {
                let id = ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)
                handshakeFailed(slot: slot, reason: "handshake timed out")  // removes it from the list
                if !sockets[slot].closing { core.connectionLost(id) }
                abortSocket(slot: slot)
                continue
            }
            i += 1
        }
    }

    /// The core's queued bytes, encrypted into `wire` (which is empty, no send in flight), with
    /// any records already waiting first. Under wss they are one WebSocket frame first, its
    /// header written in the room the core's buffer was given (`frameOutbound`).
    func encryptOutbound(slot: Int, id: ConnectionID) {
        if let tls = sockets[slot].tls {
            if core.hasQueuedOutput(id) {
                if let ws = sockets[slot].ws {
                    tlsOutbound.clear(leavingHeadroom: WebSocketFrame.maxServerHeaderLength)  // the core's next buffer
                    core.takeOutbound(id, swappingWith: &tlsOutbound)
                    ws.send(&tlsOutbound, wire: &wsFramed)
                    tls.send(&wsFramed, wire: &sockets[slot].transportOut)
                    wsFramed.clear()
                } else {
                    core.takeOutbound(id, swappingWith: &tlsOutbound)
                    tls.send(&tlsOutbound, wire: &sockets[slot].transportOut)
                }
                tlsOutbound.clear()
            }
            let records = sockets[slot].transportOut
            sockets[slot].transportOut = sockets[slot].wire
            sockets[slot].wire = records
            core.setTransportBacklog(id, bytes: sockets[slot].wire.readableBytes + tls.heldBytes)
        }
    }

    /// A TLS connection the broker ends gets close_notify before its FIN; true if it was queued
    /// (the caller waits for the send).
    func sendCloseNotify(slot: Int) -> Bool {
        guard let tls = sockets[slot].tls, !sockets[slot].closeNotifySent, !sockets[slot].writeShut, tls.isEstablished else { return false }
        sockets[slot].closeNotifySent = true
        tls.close(wire: &sockets[slot].transportOut)
        guard !sockets[slot].transportOut.isEmpty else { return false }
        startSend(slot: slot)
        return sockets[slot].sendInFlight
    }

    /// Takes the TLS contexts the group last built (SIGHUP); new connections use them.
    func reloadTLS() {
        (tlsGeneration, tlsContexts) = group.currentTLSContexts()
    }
}
