// WebSocket listeners on a shard (`protocol websockets`): each connection's `WebSocketSession`
// sits between the ring (or TLS, for wss) and the core. The upgrade request is answered by the
// layer; then the binary frames' payload is the core's input, and what the core queued in a
// loop turn leaves as one binary frame whose header is written into room left in front of the
// core's buffer — the bytes are not copied. The upgrade has no deadline of its own: it is part of
// the connection's CONNECT timeout (`connect_timeout`), as the bytes before CONNECT always are.

import ApusBase
import Broker
import Transport
import WebSocket

extension Shard {
    func startWebSocket(slot: Int, listener: Int) {
        sockets[slot].ws = WebSocketSession(settings: group.config.listeners[listener].webSocket)
        wsConnections += 1
    }

    /// Bytes arrived on a ws (not wss) connection.
    func webSocketReceived(slot: Int, id: ConnectionID, ws: WebSocketSession, bytes: UnsafeRawBufferPointer, now: UInt64) {
        let wasEstablished = ws.isEstablished
        let status = ws.received(bytes, plaintext: &wsPlaintext, wire: &sockets[slot].transportOut)
        if !wasEstablished && ws.isEstablished && status == .open { wsUpgrades += 1 }
        if !wsPlaintext.isEmpty {
            if !sockets[slot].closing { core.receive(id, bytes: wsPlaintext.readableView, now: now) }
            wsPlaintext.clear()
        }
        if !sockets[slot].transportOut.isEmpty { startSend(slot: slot) }
        if status != .open { webSocketEnded(slot: slot, id: id, ws: ws, status: status) }
    }

    /// The peer closed the WebSocket (its close frame is answered) or broke it (the close frame
    /// or the HTTP refusal is queued): the session ends as if the connection dropped (a will is
    /// published: MQTT's DISCONNECT, not a close frame, is the clean end).
    func webSocketEnded(slot: Int, id: ConnectionID, ws: WebSocketSession, status: TransportStatus) {
        if case .failed(let reason) = status {
            if ws.refusalStatus != nil { wsUpgradesRefused += 1 } else { wsProtocolErrors += 1 }
            let failures = wsUpgradesRefused + wsProtocolErrors
            if failures <= 20 || failures % 1000 == 0 {  // a flood is not a log flood
                logger.info("WebSocket connection refused or broken", metadata: [
                    "address": "\(peerAddress(slot: slot))", "reason": "\(reason)", "failures_total": "\(failures)"])
            }
        }
        if !sockets[slot].closing { core.connectionLost(id) }
    }

    /// The core's queued bytes as one frame in `wire` (empty, no send in flight), after what the
    /// layer queued on its own. The core is handed the old `wire` with headroom for the next
    /// frame's header.
    func frameOutbound(slot: Int, id: ConnectionID) {
        guard let ws = sockets[slot].ws else { return }
        if !sockets[slot].transportOut.isEmpty {
            let own = sockets[slot].transportOut
            sockets[slot].transportOut = sockets[slot].wire
            sockets[slot].wire = own
        }
        if core.hasQueuedOutput(id) {
            if sockets[slot].wire.isEmpty {
                sockets[slot].wire.clear(leavingHeadroom: WebSocketFrame.maxServerHeaderLength)
                core.takeOutbound(id, swappingWith: &sockets[slot].wire)
                var payload = sockets[slot].wire
                var framed = ByteBuffer()
                ws.send(&payload, wire: &framed)
                sockets[slot].wire = framed
                payload.deallocate()  // empty after the layer's swap; the dropped bytes' buffer after a close
            } else {
                core.takeOutbound(id, swappingWith: &wsFramed)
                ws.send(&wsFramed, wire: &sockets[slot].wire)  // after the layer's own frames: copied
                wsFramed.clear()
            }
        }
        core.setTransportBacklog(id, bytes: sockets[slot].wire.readableBytes)
    }

    /// A WebSocket connection the broker ends gets a close frame (1000) before close_notify and
    /// FIN; true if it was queued (the caller waits for the send).
    func sendWebSocketClose(slot: Int) -> Bool {
        guard let ws = sockets[slot].ws, !sockets[slot].writeShut, ws.isEstablished, !ws.isClosing else { return false }
        if let tls = sockets[slot].tls {
            guard ws.close(wire: &wsControl) else { return false }
            tls.send(&wsControl, wire: &sockets[slot].transportOut)
            wsControl.clear()
        } else {
            guard ws.close(wire: &sockets[slot].transportOut) else { return false }
        }
        startSend(slot: slot)
        return sockets[slot].sendInFlight
    }

    /// The peer's address for logs: a trusted proxy's X-Forwarded-For, else the socket's.
    func peerAddress(slot: Int) -> String {
        if let forwarded = sockets[slot].ws?.forwardedFor { return forwarded }
        return Listener.peerAddress(sockets[slot].fd)
    }
}
