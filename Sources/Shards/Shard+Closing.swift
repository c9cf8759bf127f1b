// Closing a connection on a shard: the core's close queue, the last bytes (and WebSocket's close
// frame, TLS's close_notify) before the FIN, reading until the peer closes or the linger time passes, and the
// deadlines of peers that do not read or do not close.

import Broker
@preconcurrency import Glibc

extension Shard {
    func processCloseQueue(now: UInt64) {
        core.swapCloseQueue(&closeScratch)
        for slot in closeScratch { beginClose(slot: Int(slot), now: now) }
        closeScratch.removeAllKeepingCapacity()
    }

    /// The connection is over (the core ended the session, or an HTTP answer is queued): its last
    /// bytes go out, then FIN.
    func beginClose(slot: Int, now: UInt64) {
        guard sockets[slot].fd >= 0, !sockets[slot].closing else { return }
        sockets[slot].closing = true
        sockets[slot].closeDeadline = now + Shard.closeGraceNanoseconds
        closingSlots.append(Int32(slot))
        let id = ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)
        if !sockets[slot].sendInFlight && !hasUnsentOutput(slot: slot, id: id) {
            finishWriting(slot: slot, now: now)
        } else {
            startSend(slot: slot)  // the last bytes (CONNACK refusal, DISCONNECT, an HTTP answer) go out first
        }
    }

    /// The last bytes are out: `shutdown(SHUT_WR)` sends FIN after them, and the socket stays open
    /// for reading (input is discarded) until the peer closes or the linger time passes. Closing
    /// at once with unread input would make the kernel send a reset, and a peer still writing
    /// would often lose the reason code it was sent (a broken pipe instead of DISCONNECT 0x93).
    func finishWriting(slot: Int, now: UInt64) {
        if sendWebSocketClose(slot: slot) { return }  // a close frame, then close_notify, go out first;
        if sendCloseNotify(slot: slot) { return }     // the send's completion comes back here
        if !sockets[slot].writeShut {
            sockets[slot].writeShut = true
            sockets[slot].closeDeadline = now + Shard.lingerNanoseconds
            Glibc.shutdown(sockets[slot].fd, Int32(SHUT_WR))
        }
        if !sockets[slot].recvArmed && !sockets[slot].readShut { armRecv(slot: slot) }
        finishCloseIfIdle(slot: slot)
    }

    /// Shuts the socket down both ways (the peer is gone, or did not read or close in time); the
    /// multishot recv then ends, and `finishCloseIfIdle` closes it.
    func abortSocket(slot: Int) {
        if !sockets[slot].readShut || !sockets[slot].writeShut {
            sockets[slot].writeShut = true
            sockets[slot].readShut = true
            Glibc.shutdown(sockets[slot].fd, Int32(SHUT_RDWR))
        }
        finishCloseIfIdle(slot: slot)
    }

    /// Closes the descriptor and frees the slot once no operation on it is outstanding.
    func finishCloseIfIdle(slot: Int) {
        let state = sockets[slot]
        guard state.fd >= 0, state.writeShut, !state.recvArmed, !state.sendInFlight else { return }
        Glibc.close(state.fd)
        if state.protocolName == .http { httpExchanges[Int32(slot)] = nil }
        if state.ws != nil { wsConnections -= 1 }
        if state.transport.usesTLS {
            tlsConnections -= 1
            if state.tls?.isEstablished == false { removeHandshaking(slot: slot) }  // the slot may be reused at once
        }
        core.release(ConnectionID(slot: Int32(slot), generation: state.generation))
        sockets[slot].wire.deallocate()
        sockets[slot].transportOut.deallocate()
        sockets[slot] = SocketState()
    }

    func checkClosingDeadlines(now: UInt64) {
        guard !closingSlots.isEmpty else { return }
        var kept = 0
        for i in closingSlots.indices {
            let slot = Int(closingSlots[i])
            guard sockets[slot].fd >= 0 else { continue }
            if sockets[slot].closing && !sockets[slot].readShut && now >= sockets[slot].closeDeadline {
                // A peer that does not read its last bytes, or that neither closes nor stops
                // sending after them.
                abortSocket(slot: slot)
            }
            if sockets[slot].fd >= 0 && sockets[slot].closing { closingSlots[kept] = closingSlots[i]; kept += 1 }
        }
        closingSlots.removeLast(closingSlots.count - kept)
    }
}
