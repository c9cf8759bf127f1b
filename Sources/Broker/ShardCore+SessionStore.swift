// Persistent sessions in the store. The shard that holds a persistent session logs it: whole once
// (`sessionImage`: when it starts, resumes or arrives from another shard, and in every snapshot),
// then each change — subscriptions, online/offline, will (`sessionState`), every QoS 1/2 message
// it queues or sends, each step and the end of one, the QoS 2 ids it awaits PUBREL for. A clean
// session logs nothing.
//
// Acknowledged means stored: a QoS 1/2 PUBLISH's PUBACK / PUBREC waits until the records it caused
// are durable — here (a local persistent subscriber's messageAdd, the publisher's own QoS 2 id),
// and on every other shard it went to: at the end of the loop turn the shard sends those shards a
// `storeBarrier` with the turn's ticket; each answers once its own log is durable up to the
// records it appended before reading the barrier (which include the messages it queued for its
// persistent sessions: its mailbox is in order). SUBACK / UNSUBACK and PUBCOMP of a stored session
// wait for its records too, and so does the CONNACK of a session that is stored.
//
// A session that moves to another shard (a takeover) stops being stored here only when that
// shard stored it (the ticket again); until then a crash leaves two copies, and recovery keeps
// the later (its stamp).

import Codec
import ShardContract
import Router
import Store

/// A point in the store an answer waits for: this shard's log durable up to `sequence`, and store
/// ticket `ticket` (0: none) answered by the shards it went to.
public struct StoreWait: Sendable {
    public var sequence: UInt64
    public var ticket: UInt64
}

extension ShardCore {
    /// Whether persistent sessions are stored.
    @inline(__always) var storesSessions: Bool { config.persistence }

    // MARK: whole sessions

    /// Slot `s`'s session, as stored. `messages`: with its messages and QoS 2 ids (an image).
    func sessionRecord(slot s: Int, messages: Bool) -> SessionRecord {
        let session = connections[s].session
        var subscriptions: [StoredSubscription] = []
        subscriptions.reserveCapacity(session.subscriptions.count)
        for (filter, o) in session.subscriptions {
            let options = o.qos.rawValue | (o.noLocal ? 4 : 0) | (o.retainAsPublished ? 8 : 0) | o.retainHandling.rawValue << 4
            subscriptions.append(StoredSubscription(filter: Array(filter.utf8), options: options,
                                                    identifier: session.subscriptionIdentifiers[filter] ?? 0))
        }
        var stored: StoredWill? = nil
        if let will = session.will ?? session.delayedWill?.will {
            var properties = ByteBuffer()
            defer { properties.deallocate() }
            if !will.properties.isEmpty { will.properties.encode(into: &properties) }
            stored = StoredWill(qos: will.qos.rawValue, retain: will.retain, delay: will.properties.willDelayInterval ?? 0,
                                topic: Array(will.topic.utf8), properties: properties.readableArray(), payload: will.payload)
        }
        var record = SessionRecord(
            key: session.storeKey, stamp: session.storeStamp,
            offlineSince: connections[s].phase == .offline ? connections[s].offlineSince &+ wallClockOffset : 0,
            expiry: session.expiry, nextPacketID: session.nextPacketID, version: connections[s].version.rawValue,
            clientID: Array(connections[s].clientID.utf8), subscriptions: subscriptions, will: stored)
        guard messages else { return record }
        record.awaitingRelease = Array(session.awaitingRelease)
        record.messages.reserveCapacity(session.inflight.count + session.queue.count)
        for entry in session.inflight {
            let state: StoredMessageState = switch entry.state {
            case .awaitingPubAck: .awaitingPubAck
            case .awaitingPubRec: .awaitingPubRec
            case .awaitingPubComp: .awaitingPubComp
            }
            if let message = entry.message {
                record.messages.append(storedMessage(message, id: entry.storeID, packetID: entry.packetID, state: state))
            } else {
                record.messages.append(StoredSessionMessage(id: entry.storeID, packetID: entry.packetID, state: state, qos: 2,
                                                            retain: false, expiresAt: 0, topic: [], properties: [], payload: []))
            }
        }
        for message in session.queue.map({ $0 }) {
            record.messages.append(storedMessage(message, id: message.storeID, packetID: 0, state: .queued))
        }
        return record
    }

    func storedMessage(_ m: StoredMessage, id: UInt64, packetID: UInt16, state: StoredMessageState) -> StoredSessionMessage {
        m.withParts { topic, properties, payload in
            StoredSessionMessage(id: id, packetID: packetID, state: state, qos: m.qos.rawValue, retain: m.retain,
                                 expiresAt: m.expiresAt == 0 ? 0 : m.expiresAt &+ wallClockOffset,
                                 topic: Array(topic), properties: Array(properties), payload: Array(payload))
        }
    }

    /// Slot `s`'s persistent session begins to be stored here (new, resumed or moved in): the
    /// whole of it under a new key. A session stored already gets its state instead.
    func storeSessionImage(slot s: Int) {
        guard storesSessions, connections[s].session.isPersistent else { return }
        guard connections[s].session.storeKey == 0 else { return storeSessionState(slot: s) }
        storeSessionKeys += 1
        connections[s].session.setStoreKey(storeSessionKeys, stamp: currentTime &+ wallClockOffset)
        connections[s].session.assignStoreIDs(from: &storeMessageIDs)
        sessionRecord(slot: s, messages: true).appendImage(sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
    }

    /// Slot `s`'s stored session changed (subscriptions, online or offline, will, expiry).
    func storeSessionState(slot s: Int) {
        guard connections[s].session.storeKey != 0 else { return }
        sessionRecord(slot: s, messages: false).appendState(sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
    }

    /// Slot `s`'s session is not stored any more (it ended, or stopped being persistent).
    func storeSessionEnd(slot s: Int) {
        let key = connections[s].session.storeKey
        guard key != 0 else { return }
        connections[s].session.setStoreKey(0)
        SessionLog.appendEnd(key: key, sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
    }

    /// Slot `s`'s session moves to shard `target` (a takeover): its record here ends once the
    /// target stored it.
    func storeSessionMoved(slot s: Int, to target: Int) {
        let key = connections[s].session.storeKey
        guard key != 0 else { return }
        connections[s].session.setStoreKey(0)
        if target >= shardCount {
            // To another node (through the gateway): the session ends in this node's store.
            SessionLog.appendEnd(key: key, sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
        } else if target == shardIndex {
            localMovedSessionEnds.append(key)  // after this turn's records: after its new image
        } else if config.durability == .none {
            SessionLog.appendEnd(key: key, sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
        } else {
            storeTicketTargets.insert(target)
            movedSessionEnds.append((openStoreTicket, key))
        }
    }

    // MARK: messages

    /// A message for stored session `s` is queued (`packetID` 0) or sent: it gets its id and its record.
    @inline(__always)
    func storeMessageAdded(slot s: Int, message: inout StoredMessage, packetID: UInt16, state: StoredMessageState) {
        storeMessageIDs += 1
        message.storeID = storeMessageIDs
        let key = connections[s].session.storeKey
        let expiresAt = message.expiresAt == 0 ? 0 : message.expiresAt &+ wallClockOffset
        let (topicLength, propertiesLength, qos, retain) = (message.topicLength, message.propertiesLength, message.qos.rawValue, message.retain)
        let shared = message.sharedPayload
        let sharedPayload = shared.map { UnsafeRawBufferPointer(start: $0.start + message.sharedOffset, count: $0.count - message.sharedOffset) }
        message.bytes.withUnsafeBytes { bytes in
            SessionLog.appendMessage(key: key, id: storeMessageIDs, packetID: packetID, state: state, qos: qos, retain: retain,
                                     expiresAt: expiresAt, topicLength: topicLength, propertiesLength: propertiesLength, bytes: bytes,
                                     payload: sharedPayload ?? UnsafeRawBufferPointer(start: nil, count: 0),
                                     sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
        }
        withExtendedLifetime(shared) {}
    }

    /// A stored message of session `s` was sent (from the queue) or got its PUBREC.
    @inline(__always)
    func storeMessageStep(slot s: Int, id: UInt64, packetID: UInt16, state: StoredMessageState) {
        let key = connections[s].session.storeKey
        guard key != 0, id != 0 else { return }
        SessionLog.appendState(key: key, id: id, packetID: packetID, state: state, sequence: nextStoreSequence(), salt: storeSalt,
                               into: &storeRecords)
    }

    /// A stored message of session `s` is done (acknowledged, refused or expired).
    @inline(__always)
    func storeMessageDone(slot s: Int, id: UInt64) {
        let key = connections[s].session.storeKey
        guard key != 0, id != 0 else { return }
        SessionLog.appendDone(key: key, id: id, sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
    }

    /// Stored session `s` received a QoS 2 PUBLISH (PUBREC follows) or its PUBREL.
    func storeQoS2(slot s: Int, packetID: UInt16, received: Bool) {
        let key = connections[s].session.storeKey
        guard key != 0 else { return }
        SessionLog.appendQoS2(key: key, packetID: packetID, received: received, sequence: nextStoreSequence(), salt: storeSalt,
                              into: &storeRecords)
        awaitStore(slot: s)
    }

    // MARK: acknowledgements after the store

    /// The runtime (the HTTP API's answer): what the last API publish waits for, taken.
    public func takeAPIStoreWait() -> StoreWait? {
        defer { apiStoreWait = nil }
        return apiStoreWait
    }

    /// Whether everything `wait` names is durable, here and on the other shards.
    public func isDurable(_ wait: StoreWait) -> Bool {
        wait.sequence <= storeDurableSequence && wait.ticket <= remoteStoreDone
    }

    /// An acknowledgement that must not overtake the records before it (SUBACK, UNSUBACK, PUBCOMP
    /// of a stored session): held with the PUBACKs while they wait for the store.
    func queueAckAfterStore(_ packet: Packet, slot s: Int) {
        guard connections[s].flow & FlowFlag.acksAwaitStore != 0, let e = connections[s].extras else {
            queueAck(packet, slot: s)
            return
        }
        packet.encode(version: connections[s].version, into: &e.heldAcks)
    }

    /// Bytes of a SUBACK (and the retained messages after it), held the same way.
    func writeAckBytesAfterStore(_ bytes: UnsafeRawBufferPointer, slot s: Int) {
        if connections[s].flow & FlowFlag.acksAwaitStore != 0, let e = connections[s].extras {
            e.heldAcks.writeBytes(bytes)
        } else {
            connections[s].outbound.writeBytes(bytes)
            markFlush(s)
        }
    }

    // MARK: store tickets

    /// The runtime, at the end of each loop turn (before it sends the outbox and writes the log):
    /// the ends of sessions that moved within this shard, and this turn's store ticket to the
    /// shards it waits for.
    public func storeEndOfTurn() {
        if !localMovedSessionEnds.isEmpty {
            for key in localMovedSessionEnds {
                SessionLog.appendEnd(key: key, sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
            }
            localMovedSessionEnds.removeAll()
        }
        guard !storeTicketTargets.isEmpty else { return }
        for target in storeTicketTargets { send(.storeBarrier(token: openStoreTicket), to: target) }
        pendingStoreTickets.append((openStoreTicket, storeTicketTargets.count))
        storeTicketTargets = ShardSet()
        openStoreTicket += 1
    }

    /// Another shard's store barrier: answered once this shard's log is durable as far as it is now.
    func receiveStoreBarrier(_ token: UInt64, from origin: Int) {
        if storeSequence <= storeDurableSequence || config.durability == .none {
            send(.storeBarrierAck(token: token), to: origin)
        } else {
            storeBarrierWaiters.append((origin, token, storeSequence))
        }
    }

    /// One shard answered ticket `token`; once all its shards did (and all earlier tickets), the
    /// acknowledgements and session ends that waited for it go.
    func storeBarrierAcknowledged(_ token: UInt64) {
        guard let i = pendingStoreTickets.firstIndex(where: { $0.ticket == token }) else { return }
        pendingStoreTickets[i].remaining -= 1
        var advanced = false
        while let first = pendingStoreTickets.first, first.remaining <= 0 {
            remoteStoreDone = first.ticket
            pendingStoreTickets.removeFirst()
            advanced = true
        }
        guard advanced else { return }
        releaseStoreWaiters()
        if !movedSessionEnds.isEmpty {
            var done = 0
            while done < movedSessionEnds.count && movedSessionEnds[done].ticket <= remoteStoreDone {
                SessionLog.appendEnd(key: movedSessionEnds[done].key, sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
                done += 1
            }
            if done > 0 { movedSessionEnds.removeFirst(done) }
        }
    }

    // MARK: snapshot and start

    /// Appends the image of every stored session (a snapshot's part); returns how many.
    func appendSessionSnapshot(into buffer: inout ByteBuffer) -> UInt64 {
        var count: UInt64 = 0
        for s in connections.indices where connections[s].session.storeKey != 0 {
            switch connections[s].phase {
            case .connecting, .connected, .offline:
                sessionRecord(slot: s, messages: true).appendImage(sequence: nextStoreSequence(), salt: storeSalt, into: &buffer)
                count += 1
            default:
                continue
            }
        }
        return count
    }

    /// At start (`now`), before any client: the persistent sessions recovered for this shard (the
    /// home shard of their client ids), offline, as stored. The runtime wrote their images in
    /// this shard's new segment under the same keys and ids. A session that was online when the
    /// broker stopped went offline then, as far as its clients can tell: it went offline now, and
    /// its will is due (after its delay) as for any connection that ended without DISCONNECT.
    public func loadSessions(_ records: [SessionRecord], now: UInt64) {
        currentTime = now
        let wallNow = now &+ wallClockOffset
        func monotonic(_ wall: UInt64) -> UInt64 { wall >= wallNow ? now &+ (wall - wallNow) : now &- min(wallNow - wall, now) }
        for r in records {
            let slot = Int(acceptExternal().slot)
            let clientID = String(decoding: r.clientID, as: UTF8.self)
            connections[slot].phase = .offline
            connections[slot].socketAttached = false
            connections[slot].clientID = clientID
            connections[slot].cleanStart = false
            connections[slot].version = ProtocolVersion(rawValue: r.version) ?? .v3_1_1
            connections[slot].offlineSince = r.offlineSince == 0 ? now : monotonic(r.offlineSince)
            var inflight: [InflightMessage] = []
            var queue: [StoredMessage] = []
            for m in r.messages {
                storeMessageIDs = max(storeMessageIDs, m.id)
                var message: StoredMessage? = nil
                if m.state != .awaitingPubComp {
                    var stored = m.topic.withUnsafeBytes { topic in
                        m.properties.withUnsafeBytes { properties in
                            m.payload.withUnsafeBytes { payload in
                                StoredMessage(topic: topic, properties: properties, payload: payload, qos: QoS(rawValue: m.qos) ?? .atLeastOnce,
                                              retain: m.retain, now: now)
                            }
                        }
                    }
                    stored.expiresAt = m.expiresAt == 0 ? 0 : max(1, monotonic(m.expiresAt))
                    stored.storeID = m.id
                    message = stored
                }
                switch m.state {
                case .queued: if let message { queue.append(message) }
                case .awaitingPubAck: inflight.append(InflightMessage(packetID: m.packetID, state: .awaitingPubAck, message: message, storeID: m.id))
                case .awaitingPubRec: inflight.append(InflightMessage(packetID: m.packetID, state: .awaitingPubRec, message: message, storeID: m.id))
                case .awaitingPubComp: inflight.append(InflightMessage(packetID: m.packetID, state: .awaitingPubComp, message: nil, storeID: m.id))
                }
            }
            connections[slot].session.restore(expiry: r.expiry, nextPacketID: r.nextPacketID, awaitingRelease: r.awaitingRelease,
                                              inflight: inflight, queue: queue, storeKey: r.key, storeStamp: r.stamp)
            storeSessionKeys = max(storeSessionKeys, r.key)
            for subscription in r.subscriptions {
                let o = subscription.options
                let options = SubscriptionOptions(qos: QoS(rawValue: o & 3) ?? .atMostOnce, noLocal: o & 4 != 0, retainAsPublished: o & 8 != 0,
                                                  retainHandling: RetainHandling(rawValue: (o >> 4) & 3) ?? .sendOnSubscribe)
                addSubscription(slot: slot, filter: String(decoding: subscription.filter, as: UTF8.self), options: options,
                                identifier: subscription.identifier)
            }
            if let w = r.will {
                let properties = w.properties.isEmpty ? Properties()
                    : (w.properties.withUnsafeBytes { try? Properties(decodingBlock: $0, context: .will) } ?? Properties())
                let will = Will(topic: String(decoding: w.topic, as: UTF8.self), payload: w.payload, qos: QoS(rawValue: w.qos) ?? .atMostOnce,
                                retain: w.retain, properties: properties)
                let delay = UInt64(w.delay) * 1_000_000_000
                let due = r.offlineSince == 0 ? now &+ delay : monotonic(r.offlineSince &+ delay)
                connections[slot].session.delayWill(will, until: max(due, 1))
            }
            registry[clientID] = ClientHolder(shard: shardIndex, connection: ConnectionID(slot: Int32(slot), generation: connections[slot].generation))
            counters.sessionsPersisted += 1
        }
    }
}
