// End-to-end flow control: a QoS 1/2 message the broker acknowledged reaches every connected
// subscriber of it. Instead of dropping at a connected subscriber's full queue, the broker slows the
// publishers whose messages wait there (HiveMQ's overload protection is the anchor; mosquitto and
// EMQX drop at max_queued_messages).
//
// - A subscriber's queue past half of max_queued_messages *throttles* each publisher whose message
//   it queues: one `throttle` to the publisher's shard per publisher (a one-way record; on the same
//   shard, a direct call). A throttled publisher's PUBACK / PUBREC are held back, in order, so a
//   client that waits for its acknowledgements (any client with an inflight window) stops sending.
// - A publisher with more than `heldAckLimit` acknowledgements held (a client that does not wait
//   for them) is not read any more: its input is kept, the runtime cancels its receive, and TCP
//   pushes back to it.
// - When the subscriber's queue is down to a quarter of max_queued_messages, or its connection
//   ends, it sends `unthrottle` for every publisher it throttled; a publisher's held
//   acknowledgements go out once no subscriber throttles it any more.
// - A subscriber that throttles publishers and acknowledges nothing for subscriber_stall_timeout
//   seconds is disconnected (v5: DISCONNECT 0x97); its persistent session keeps what was queued,
//   and from then on queues within max_queued_messages as any offline session (drops counted).
//
// The state lives in the connection's extras (allocated on demand) and one byte of flags in the
// slot, so the publish path pays one byte test per delivery and per acknowledgement.

import Codec
import ShardContract

/// Bits of `ClientConnection.flow`.
enum FlowFlag {
    /// Some subscriber throttles this publisher: its PUBACK / PUBREC are held.
    static let acksHeld: UInt8 = 1
    /// Too many acknowledgements are held: the connection's input is not read.
    static let inputPaused: UInt8 = 2
    /// This subscriber throttles publishers (its extras list them).
    static let throttling: UInt8 = 4
    /// A record this connection's next acknowledgement depends on is not durable yet: its
    /// PUBACK / PUBREC are held (ShardCore+Store.swift).
    static let acksAwaitStore: UInt8 = 8
    static let acksHeldAny: UInt8 = acksHeld | acksAwaitStore
    /// Not flow control: the connection is a bridge (ClientConnection.isBridge), kept in a spare bit.
    static let bridge: UInt8 = 128
    /// Not flow control: the runtime sends this connection's output gathered, so large payloads
    /// are spliced into it rather than copied (ShardCore+Outbound.swift).
    static let gatheredOutput: UInt8 = 64
}

/// A publisher as a subscriber's shard names it: its shard and its connection there.
struct PublisherKey: Hashable {
    var shard: UInt8
    var connection: UInt64
}

extension ShardCore {
    /// Queue length from which a connected subscriber throttles its publishers.
    @inline(__always) var throttleQueueLength: Int { max(1, config.maxQueuedMessages / 2) }
    /// Queue length at which it lets them go again.
    @inline(__always) var releaseQueueLength: Int { config.maxQueuedMessages / 4 }
    /// Acknowledgements held for one publisher beyond which its input is not read any more.
    @inline(__always) var heldAckLimit: Int { max(256, config.maxInflightMessages) }

    // MARK: the subscriber's side

    /// A message from `publisher` (on `publisherShard`) was queued for the connected subscriber `s`
    /// past the throttle length: the publisher is throttled, once per congestion.
    func throttle(publisherShard: Int, publisher: ConnectionID, subscriber s: Int) {
        guard publisher.slot >= 0 else { return }  // the broker's own messages ($SYS, HTTP API, wills of the gone)
        let key = PublisherKey(shard: UInt8(publisherShard), connection: publisher.packed)
        let e = connections[s].materializeExtras()
        if connections[s].flow & FlowFlag.throttling == 0 {
            connections[s].flow |= FlowFlag.throttling
            e.lastProgress = currentTime
        }
        guard e.throttling.insert(key).inserted else { return }
        if publisherShard == shardIndex {
            changeThrottle(publisher, by: 1)
        } else {
            send(.throttle(publisher: publisher), to: publisherShard)
        }
    }

    /// Subscriber `s` no longer holds its publishers back (its queue drained, or it is gone).
    func releaseThrottles(subscriber s: Int) {
        guard connections[s].flow & FlowFlag.throttling != 0 else { return }
        connections[s].flow &= ~FlowFlag.throttling
        guard let e = connections[s].extras else { return }
        let keys = e.throttling
        e.throttling = []
        for key in keys {
            let publisher = ConnectionID(packed: key.connection)
            if Int(key.shard) == shardIndex {
                changeThrottle(publisher, by: -1)
            } else {
                send(.unthrottle(publisher: publisher), to: Int(key.shard))
            }
        }
        connections[s].dropUnusedExtras()
    }

    /// After the subscriber acknowledged something: progress (for the stall timeout), and the
    /// publishers go once the queue is short again.
    @inline(__always)
    func noteSubscriberProgress(_ s: Int) {
        guard connections[s].flow & FlowFlag.throttling != 0 else { return }
        connections[s].extras?.lastProgress = currentTime
        if connections[s].session.queue.count <= releaseQueueLength { releaseThrottles(subscriber: s) }
    }

    /// At the tick: a throttling subscriber that acknowledged nothing for the stall timeout.
    func isStalled(_ s: Int, now: UInt64) -> Bool {
        guard connections[s].flow & FlowFlag.throttling != 0, let e = connections[s].extras,
              config.subscriberStallTimeoutSeconds > 0 else { return false }
        return now &- e.lastProgress > UInt64(config.subscriberStallTimeoutSeconds * 1e9)
    }

    // MARK: the publisher's side

    /// A `throttle` (+1) or `unthrottle` (-1) for a local publisher.
    func changeThrottle(_ publisher: ConnectionID, by delta: Int) {
        guard isCurrent(publisher) else { return }
        let p = Int(publisher.slot)
        guard connections[p].phase == .connected else { return }
        let e = connections[p].materializeExtras()
        let before = e.throttledBy
        e.throttledBy = max(0, before + delta)
        if before == 0 && e.throttledBy > 0 {
            connections[p].flow |= FlowFlag.acksHeld
            e.throttledSince = currentTime
            counters.publishersThrottled += 1
        } else if before > 0 && e.throttledBy == 0 {
            releaseHeldAcks(p)
        }
    }

    /// No subscriber throttles publisher `p` any more: its held acknowledgements go out, in order,
    /// and its input is read again.
    func releaseHeldAcks(_ p: Int) {
        connections[p].flow &= ~FlowFlag.acksHeld
        guard let e = connections[p].extras else { return }
        counters.throttledNanoseconds &+= currentTime &- e.throttledSince
        sendHeldAcks(p)
    }

    /// The held acknowledgements go out, in order, once nothing holds them any more (flow control
    /// or the store), and the connection's input is read again.
    func sendHeldAcks(_ p: Int) {
        guard connections[p].flow & FlowFlag.acksHeldAny == 0, let e = connections[p].extras else { return }
        if !e.heldAcks.isEmpty {
            connections[p].outbound.writeBytes(e.heldAcks.readableView)
            markFlush(p)
        }
        e.heldAcks.deallocate()
        e.heldAckCount = 0
        if connections[p].flow & FlowFlag.inputPaused != 0 { resumeInput(p) }
        connections[p].dropUnusedExtras()
    }

    /// PUBACK or PUBREC for an inbound PUBLISH: held while the publisher is throttled.
    @inline(__always)
    func queuePublishAck(_ packet: Packet, slot s: Int) {
        guard connections[s].flow & FlowFlag.acksHeldAny != 0, let e = connections[s].extras else {
            queueAck(packet, slot: s)
            return
        }
        packet.encode(version: connections[s].version, into: &e.heldAcks)
        e.heldAckCount += 1
        if connections[s].version == .v5 && e.heldAckCount > Int(config.receiveMaximum) {
            // [MQTT-3.3.4-8]: more unacknowledged QoS 1/2 PUBLISHes than the Receive Maximum.
            protocolError(slot: s, reason: .receiveMaximumExceeded, decodeError: nil,
                          why: "more unacknowledged QoS 1/2 PUBLISHes than the Receive Maximum")
            return
        }
        if e.heldAckCount >= heldAckLimit && connections[s].flow & FlowFlag.inputPaused == 0 {
            // The client does not wait for its acknowledgements: stop reading it.
            connections[s].flow |= FlowFlag.inputPaused
            inputPauseChanges.append(Int32(s))
            counters.publishersPaused += 1
        }
    }

    /// Reads a paused connection again: first the input kept while it was paused.
    func resumeInput(_ p: Int) {
        connections[p].flow &= ~FlowFlag.inputPaused
        connections[p].lastReceived = currentTime  // keep alive counts from here
        inputPauseChanges.append(Int32(p))
        guard let e = connections[p].extras, !e.held.isEmpty else { return }
        var held = e.held
        e.held = ByteBuffer()
        receive(ConnectionID(slot: Int32(p), generation: connections[p].generation), bytes: held.readableView, now: currentTime)
        held.deallocate()
    }

    /// The connection on slot `s` ends: as a subscriber it lets its publishers go; as a publisher
    /// its held acknowledgements are moot (the client re-sends those messages, QoS 1 duplicates).
    func endFlowControl(slot s: Int) {
        releaseThrottles(subscriber: s)
        guard connections[s].flow != 0 || connections[s].extras?.throttledBy ?? 0 > 0 else { return }
        if let e = connections[s].extras {
            if e.throttledBy > 0 { counters.throttledNanoseconds &+= currentTime &- e.throttledSince }
            e.throttledBy = 0
            e.heldAcks.deallocate()
            e.heldAckCount = 0
        }
        connections[s].flow = 0
    }

    /// Whether the runtime should not read connection `id` (see `inputPauseChanges`).
    public func isInputPaused(_ id: ConnectionID) -> Bool {
        isCurrent(id) && connections[Int(id.slot)].flow & FlowFlag.inputPaused != 0
    }

    /// Hands the runtime the slots whose input was paused or resumed since it last looked.
    public func swapInputPauseChanges(_ other: inout [Int32]) { swap(&inputPauseChanges, &other) }
}
