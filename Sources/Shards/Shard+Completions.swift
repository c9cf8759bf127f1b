// Completion dispatch for a shard: accept, multishot recv (provided buffers), send, wake.

import Broker
import Codec
import IOUring
@preconcurrency import Glibc

extension Shard {
    func processCompletions(now: UInt64) {
        while true {
            // Records already in the mailboxes come before the completions harvested after them:
            // a route another shard sent before this shard read a PUBLISH applies to it.
            drainMailboxes()
            let count = ring.harvest(into: completions, capacity: completionCapacity)
            if count == 0 { return }
            for i in 0..<count { handle(completions[i], now: now) }
            if count < completionCapacity { return }
        }
    }

    @inline(__always)
    func handle(_ completion: Completion, now: UInt64) {
        guard let kind = UserData.kind(completion.userData) else { return }
        switch kind {
        case .recv, .recvOnce: received(completion, now: now)
        case .recvDirect: receivedDirect(completion, now: now)
        case .send: sent(completion, now: now)
        case .accept: acceptCompleted(completion, now: now)
        case .wake: break  // the mailboxes are drained every iteration
        case .wakeSent:
            logger.warning("MSG_RING wake failed: \(completion.result)")
        case .cancel: break
        case .storeWrite, .storeSync: storeCompleted(completion, now: now)
        case .linkAccept, .linkRecv, .linkConnect, .linkSend, .linkProbe: break  // the gateway's, never a shard's
        case .bridgeConnect: bridgeConnected(completion, now: now)
        }
    }

    /// The slot a connection completion refers to, if it still belongs to the same socket.
    @inline(__always)
    func slot(of completion: Completion) -> Int? {
        let slot = Int(UserData.slot(completion.userData))
        guard slot >= 0, slot < sockets.count, sockets[slot].fd >= 0,
              sockets[slot].generation & 0xFF_FFFF == UserData.generation24(completion.userData) else { return nil }
        return slot
    }

    func acceptCompleted(_ completion: Completion, now: UInt64) {
        let listener = Int(UserData.slot(completion.userData))
        let http = listener == Int(Shard.httpListenerIndex)
        if completion.result >= 0 {
            if group.stopping.load(ordering: .relaxed) || (http && !acceptsHTTP) {
                Glibc.close(completion.result)  // stopping, or too many HTTP connections: the client sees the connection end
            } else {
                accepted(fd: completion.result, listener: listener, now: now)
            }
        } else if completion.result != -ECANCELED {
            // EMFILE/ENFILE and friends: the listener stays; log and carry on.
            logger.warning("accept failed: \(String(cString: strerror(-completion.result)))", metadata: ["http": "\(http)"])
        }
        if !completion.hasMore && !group.stopping.load(ordering: .relaxed) {
            if http { armHTTPAccept() } else { armAccept(listener) }
        }
    }

    func received(_ completion: Completion, now: UInt64) {
        let bufferID = completion.bufferID
        defer { if let bufferID { buffers.recycle(id: bufferID) } }
        guard let slot = slot(of: completion) else { return }
        let id = ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)
        var result = completion.result
        if !completion.hasMore { sockets[slot].recvArmed = false }
        var bytes = UnsafeRawBufferPointer(start: nil, count: 0)
        if UserData.kind(completion.userData) == .recvOnce {
            // A single recvmsg (a connection receiving large packets), with its receive time.
            if result > 0, let single = sockets[slot].singleReceive {
                bytes = UnsafeRawBufferPointer(start: single.bytes, count: Int(result))
                let realtime = single.realtime
                core.inputArrivedAfter = realtime != 0 ? min(realtime &- realtimeOffset, now) : turnArrival
            }
        } else if result > 0, let bufferID {
            // A recvmsg buffer: header, the receive time, the payload (none: end of stream).
            let message = receiveFormat.parse(buffers.start(id: bufferID), length: Int(result))
            bytes = message.payload
            result = Int32(truncatingIfNeeded: bytes.count)
            if message.realtime != 0 {
                // When the last of these bytes reached the socket, in the loop's clock; no later
                // than now (the clocks' offset is a tick old).
                core.inputArrivedAfter = min(message.realtime &- realtimeOffset, now)
            } else {
                core.inputArrivedAfter = turnArrival
            }
        }
        if result > 0 {
            receives &+= 1
            let mqtt = sockets[slot].protocolName == .mqtt
            if _fastPath(mqtt) { bytesReceived &+= UInt64(result) }  // the MQTT traffic ($SYS, metrics)
            if !sockets[slot].closing {
                if let tls = sockets[slot].tls {
                    tlsReceived(slot: slot, id: id, session: tls, bytes: bytes, now: now)
                    if core.hasUrgentShardRecords { sendOutbox() }
                } else if let ws = sockets[slot].ws {
                    webSocketReceived(slot: slot, id: id, ws: ws, bytes: bytes, now: now)
                    if core.hasUrgentShardRecords { sendOutbox() }
                } else if let bridge = sockets[slot].bridge {
                    bridgeReceived(slot: slot, id: id, bridge: bridge, bytes: bytes, now: now)
                    if core.hasUrgentShardRecords { sendOutbox() }
                } else if _fastPath(mqtt) {
                    core.receive(id, bytes: bytes, now: now)
                    // Route records leave at once: a subscription takes effect on the other shards
                    // as soon as they can apply it, not after the rest of this batch.
                    if core.hasUrgentShardRecords { sendOutbox() }
                    if sockets[slot].transport == .plain {
                        // Large packets: single recvs, the rest of each straight into its storage
                        // (armRecv); back to the multishot recv when a single one ends between
                        // packets or in a small one.
                        let large = core.isReceivingLargePacket(id, minimum: Shard.directReceiveMinimum)
                        if large && completion.hasMore && !sockets[slot].directSwitch {
                            // The multishot recv ends; its last completion (-ECANCELED) re-arms.
                            ring.prepareCancel(userData: UserData.make(.recv, id), userData: UserData.make(.cancel, id))
                            sockets[slot].directSwitch = true
                            sockets[slot].largeInput = true
                        } else if !completion.hasMore && !large {
                            sockets[slot].largeInput = false
                            sockets[slot].singleReceive = nil
                        }
                    }
                } else {
                    httpReceived(slot: slot, bytes: bytes, now: now)
                }
            }
            // Closing sockets keep reading (and discarding) until the peer's EOF.
            if !sockets[slot].recvArmed && !sockets[slot].readShut && !core.isInputPaused(id) { armRecv(slot: slot) }
            return
        }
        if result == -ECANCELED && !sockets[slot].readShut {
            // Flow control paused this connection's input (or resumed it before the cancel landed).
            if !sockets[slot].recvArmed && !core.isInputPaused(id) { armRecv(slot: slot) }
            return
        }
        if result == -ENOBUFS {
            // The provided buffers ran out: provide more (up to the configured count), re-arm.
            if buffers.grow() {
                logger.debug("receive buffers grown", metadata: ["provided": "\(buffers.provided)"])
            }
            if !sockets[slot].recvArmed && !sockets[slot].readShut && !core.isInputPaused(id) {
                buffers.publishReturns()
                armRecv(slot: slot)
            }
            return
        }
        // EOF or an error: the peer is gone (or we shut the socket down).
        guard !sockets[slot].recvArmed else { return }
        sockets[slot].readShut = true
        if !sockets[slot].closing {
            if sockets[slot].protocolName == .mqtt {
                core.connectionLost(id)
            } else {
                abortSocket(slot: slot)  // the HTTP client went away before its request was complete
            }
        } else {
            finishCloseIfIdle(slot: slot)
        }
    }

    /// The recv straight into a large packet's storage completed (`armRecv`).
    func receivedDirect(_ completion: Completion, now: UInt64) {
        guard let slot = slot(of: completion) else { return }
        let id = ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)
        sockets[slot].recvArmed = false
        let allocation = sockets[slot].directAllocation
        sockets[slot].directAllocation = nil
        let result = completion.result
        let count = result > 0 ? Int(result) : 0
        if count > 0 {
            receives &+= 1
            bytesReceived &+= UInt64(count)
            core.inputArrivedAfter = turnArrival
        }
        // The core forgot the storage (it cut the connection off meanwhile): it is freed here.
        if !core.directReceived(id, count: count, now: now) { allocation?.deallocate() }
        if count > 0 {
            if core.hasUrgentShardRecords { sendOutbox() }
            if !sockets[slot].recvArmed && !sockets[slot].readShut && !core.isInputPaused(id) { armRecv(slot: slot) }
            return
        }
        // EOF or an error: the peer is gone (or we shut the socket down).
        sockets[slot].readShut = true
        if !sockets[slot].closing {
            core.connectionLost(id)
        } else {
            finishCloseIfIdle(slot: slot)
        }
    }

    func sent(_ completion: Completion, now: UInt64) {
        guard let slot = slot(of: completion) else { return }
        let id = ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)
        sockets[slot].sendInFlight = false
        if completion.result > 0 {
            if _fastPath(sockets[slot].protocolName == .mqtt) { bytesSent &+= UInt64(completion.result) }
            if let gather = sockets[slot].gather, gather.isActive {
                // A gathered send: the wire's bytes stay where they are until all went out.
                if gather.advance(by: Int(completion.result)) { sockets[slot].wire.clear() }
            } else {
                sockets[slot].wire.moveReaderIndex(forwardBy: Int(completion.result))
            }
            core.setTransportBacklog(id, bytes: unsentBytes(slot: slot))
        } else if completion.result < 0 {
            // EPIPE / ECONNRESET: nothing more can reach this peer.
            if !sockets[slot].closing { core.connectionLost(id) }
            abortSocket(slot: slot)
            return
        }
        if hasUnsentOutput(slot: slot, id: id) && !sockets[slot].writeShut {
            startSend(slot: slot)
        } else if sockets[slot].closing {
            finishWriting(slot: slot, now: now)
        }
    }
}
