// The outbound QoS 1/2 flow of a session: the inflight window (max_inflight_messages, and the
// v5 client's Receive Maximum), the bounded queue behind it (max_queued_messages), and the
// PUBACK / PUBREC / PUBREL / PUBCOMP handling that frees the window.

import Codec
import Store

extension ShardCore {
    /// How many QoS 1/2 messages may be unacknowledged towards this client.
    func inflightWindow(_ s: Int) -> Int {
        // A bridge carries many publishers' messages, each acknowledged only once the broker at
        // its other end acknowledged it: a window of a client's size would bound it to one
        // round trip per 20 messages.
        min(connections[s].isBridge ? max(config.maxInflightMessages, config.bridgeInflightMessages) : config.maxInflightMessages,
            Int(connections[s].clientReceiveMaximum))
    }

    /// Delivers a QoS 1/2 message: sends it if the window has room and nothing is queued ahead of
    /// it (order), else queues it; beyond max_queued_messages it is dropped and counted.
    func deliverReliable(_ s: Int, topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer,
                         payload: UnsafeRawBufferPointer, qos: QoS, retain: Bool, publisherShard: Int, publisher: ConnectionID) {
        let message = storedMessage(topic: topic, properties: properties, payload: payload, qos: qos, retain: retain)
        if connections[s].phase == .connected && connections[s].session.queue.isEmpty
            && connections[s].session.inflight.count < inflightWindow(s) {
            var out = takeOutbound(s)
            // Moved, not copied: `send` updates the expiry in the bytes, which must not be shared.
            send(consume message, slot: s, into: &out)
            connections[s].outbound = out
            markFlush(s)
        } else {
            enqueue(consume message, slot: s, publisherShard: publisherShard, publisher: publisher)
        }
    }

    /// A message for a session to keep: its bytes copied into a pooled array, or a large payload
    /// shared (`sharedPayload(for:)`).
    @inline(__always)
    func storedMessage(topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                       qos: QoS, retain: Bool) -> StoredMessage {
        if payload.count >= StoredMessage.sharedPayloadMinimum {
            let (shared, offset) = sharedPayload(for: payload)
            return StoredMessage(topic: topic, properties: properties, sharedPayload: shared, offset: offset, qos: qos,
                                 retain: retain, now: currentTime, reusing: messageBuffers.take())
        }
        return StoredMessage(topic: topic, properties: properties, payload: payload, qos: qos, retain: retain,
                             now: currentTime, reusing: messageBuffers.take())
    }

    /// A large payload held once for every session it goes to: the frame it arrived in, or a copy
    /// made at its first delivery in this route and reused by the next ones (never outside a
    /// route: another message may sit at the same address later).
    func sharedPayload(for payload: UnsafeRawBufferPointer) -> (SharedBytes, Int) {
        let start = payload.baseAddress!
        if let frame = currentFrame, frame.contains(payload), start + payload.count == frame.start + frame.count {
            return (frame, start - frame.start)
        }
        if let shared = routePayload, routePayloadSource == start, shared.count == payload.count { return (shared, 0) }
        let shared = SharedBytes(copying: payload)
        if routing > 0 { (routePayload, routePayloadSource) = (shared, start) }
        return (shared, 0)
    }

    /// Queues a message for session `s`. A connected subscriber's queue is never cut: past half of
    /// max_queued_messages it throttles the publisher instead (ShardCore+FlowControl.swift). A
    /// session without a connection drops at max_queued_messages, counted.
    func enqueue(_ message: consuming StoredMessage, slot s: Int, publisherShard: Int = -1,
                 publisher: ConnectionID = ConnectionID(slot: -1, generation: 0)) {
        let count = connections[s].session.queue.count
        if connections[s].phase == .connected {
            if count >= throttleQueueLength && publisherShard >= 0 {
                throttle(publisherShard: publisherShard, publisher: publisher, subscriber: s)
            }
        } else if count >= config.maxQueuedMessages {
            counters.droppedQueueFull += 1
            if config.eventKinds & BrokerEvent.Kind.dropped.rawValue != 0 {
                message.withParts { topic, _, payload in
                    messageEvent(.dropped, slot: s, topic: topic, payload: payload, qos: message.qos, retain: message.retain, reason: "queue_full")
                }
            }
            messageBuffers.recycle(consume message)
            return
        }
        if connections[s].session.storeKey != 0 && message.storeID == 0 {
            storeMessageAdded(slot: s, message: &message, packetID: 0, state: .queued)
        }
        connections[s].session.enqueue(message)
    }

    /// Moves the outbound buffer out of the table so that it can be written while the session
    /// state is changed (exclusive access); the caller puts it back.
    @inline(__always)
    func takeOutbound(_ s: Int) -> ByteBuffer {
        let out = connections[s].outbound
        connections[s].outbound = ByteBuffer()
        return out
    }

    /// Encodes the message under a new packet id and records it in flight, with the Message
    /// Expiry Interval reduced by the time it waited. `buffer` must reach the client in order with
    /// the connection's outbound bytes unless `useAliases` is false.
    /// `message` is consumed: when its bytes are not shared, the expiry is updated in place.
    func send(_ message: consuming StoredMessage, slot s: Int, into buffer: inout ByteBuffer, useAliases: Bool = true) {
        message.updateRemainingExpiry(at: currentTime)
        let packetID = connections[s].session.allocatePacketID()
        // `buffer` is the connection's outbound queue unless `useAliases` is false: a shared payload
        // is then spliced in, not copied, when the runtime sends this connection's output gathered.
        let splice = useAliases && message.sharedPayload != nil && connections[s].flow & FlowFlag.gatheredOutput != 0
        if useAliases, connections[s].outboundAliases.maximum > 0,
           let (alias, known) = message.withTopic({ connections[s].outboundAliases.alias(for: $0) }) {
            message.encode(version: connections[s].version, packetID: packetID, dup: false, topicAlias: alias, omitTopic: known,
                           payloadFollows: splice, into: &buffer)
        } else {
            message.encode(version: connections[s].version, packetID: packetID, dup: false, payloadFollows: splice, into: &buffer)
        }
        if splice, let shared = message.sharedPayload {
            spliceOutbound(slot: s, at: buffer.readableBytes, bytes: shared, offset: message.sharedOffset)
        }
        let state: InflightState = message.qos == .exactlyOnce ? .awaitingPubRec : .awaitingPubAck
        if connections[s].session.storeKey != 0 {
            let stored: StoredMessageState = state == .awaitingPubRec ? .awaitingPubRec : .awaitingPubAck
            if message.storeID == 0 {
                storeMessageAdded(slot: s, message: &message, packetID: packetID, state: stored)
            } else {
                storeMessageStep(slot: s, id: message.storeID, packetID: packetID, state: stored)
            }
        }
        connections[s].session.addInflight(message, packetID: packetID, state: state)
        counters.publishesDelivered += 1
    }

    /// Sends queued messages while the window has room.
    func pumpQueue(_ s: Int) {
        defer { noteSubscriberProgress(s) }
        guard connections[s].phase == .connected, !connections[s].session.queue.isEmpty else { return }
        var out = takeOutbound(s)
        while connections[s].session.inflight.count < inflightWindow(s), let message = connections[s].session.dequeue() {
            if message.isExpired(at: currentTime) {
                counters.droppedExpired += 1  // expired while queued: deleted, not sent [MQTT-3.3.2-5]
                storeMessageDone(slot: s, id: message.storeID)
                messageBuffers.recycle(consume message)
                continue
            }
            send(message, slot: s, into: &out)
        }
        connections[s].outbound = out
        markFlush(s)
    }

    /// Returns the bytes of a finished in-flight message to the pool.
    @inline(__always)
    func recycle(_ entry: consuming InflightMessage) {
        if let message = entry.message.take() { messageBuffers.recycle(consume message) }
    }

    /// PUBACK: QoS 1 delivery done.
    func handlePubAck(_ ack: PublishAck, slot s: Int) {
        if let entry = connections[s].session.removeInflight(ack.packetID, state: .awaitingPubAck) {
            storeMessageDone(slot: s, id: entry.storeID)
            recycle(consume entry)
            pumpQueue(s)
        }
    }

    /// PUBREC: the client has the QoS 2 message; answer PUBREL (or drop it on a v5 error code).
    func handlePubRec(_ ack: PublishAck, slot s: Int) {
        let index = connections[s].session.qos2InflightIndex(ack.packetID)
        if ack.reasonCode.isError {
            if let i = index {
                let entry = connections[s].session.removeInflight(at: i)
                storeMessageDone(slot: s, id: entry.storeID)
                recycle(consume entry)
                pumpQueue(s)
            }
            return
        }
        if let i = index {
            if connections[s].session.storeKey != 0 {
                // PUBREL once the step is stored: after a restart the session sends PUBREL again,
                // not the PUBLISH the client already passed on [MQTT-4.4.0-1].
                storeMessageStep(slot: s, id: connections[s].session.inflight[i].storeID, packetID: ack.packetID, state: .awaitingPubComp)
                awaitStore(slot: s)
            }
            if let message = connections[s].session.awaitPubComp(at: i) { messageBuffers.recycle(consume message) }
            queueAckAfterStore(.pubrel(PublishAck(packetID: ack.packetID)), slot: s)
        } else {
            queueAck(.pubrel(PublishAck(packetID: ack.packetID, reasonCode: connections[s].version == .v5 ? .packetIdentifierNotFound : .success)), slot: s)
        }
    }

    /// PUBCOMP: QoS 2 delivery done.
    func handlePubComp(_ ack: PublishAck, slot s: Int) {
        if let entry = connections[s].session.removeInflight(ack.packetID, state: .awaitingPubComp) {
            storeMessageDone(slot: s, id: entry.storeID)
            pumpQueue(s)
        }
    }

    /// After a reconnect: re-sends every message in flight with DUP set (and PUBREL for QoS 2 past
    /// PUBREC) in the original order [MQTT-4.4.0-1], then fills the window from the queue.
    func resendInflight(_ s: Int) {
        var out = takeOutbound(s)
        let version = connections[s].version
        for entry in connections[s].session.inflight {
            switch entry.state {
            case .awaitingPubAck, .awaitingPubRec:
                // A new connection: aliases start again, so a resend may assign one.
                guard let message = entry.message else { continue }
                if connections[s].outboundAliases.maximum > 0,
                   let (alias, known) = message.withTopic({ connections[s].outboundAliases.alias(for: $0) }) {
                    message.encode(version: version, packetID: entry.packetID, dup: true, topicAlias: alias, omitTopic: known, into: &out)
                } else {
                    message.encode(version: version, packetID: entry.packetID, dup: true, into: &out)
                }
            case .awaitingPubComp:
                Packet.pubrel(PublishAck(packetID: entry.packetID)).encode(version: version, into: &out)
            }
        }
        connections[s].outbound = out
        markFlush(s)
        pumpQueue(s)
    }
}
