// What the core gives the durable store: records for its shard's log, acknowledgements held until
// the runtime says those records are durable, a snapshot of what this shard owns, and the state
// loaded at start. The core never touches a file; the runtime writes `storeRecords` (one write
// per loop turn) and calls `storeDurable(through:)` (docs/architecture.md, "The store").
//
// Retained messages: the shard that a retained PUBLISH (or its deletion) arrived on stores it,
// before it acknowledges it; each shard's log holds the retained messages it owns (the ones whose
// stamp names it), so a snapshot is what its replica holds with its own stamp. A replacement or
// deletion outlives what it replaced in another shard's log: that shard, applying the update of
// a message it owned, stores the update too, and the deleting shard repeats its deletions in its
// next two snapshots.

import Codec
import ShardContract
import Router
import Store

extension ShardCore {
    /// Whether retained messages on `topic` are stored ($SYS topics are the broker's own, made
    /// again after a start, as mosquitto does).
    @inline(__always) func storesRetained(topic: UnsafeRawBufferPointer) -> Bool {
        config.persistence && !(topic.count >= 4 && topic[0] == 0x24 && topic[1] == 0x53 && topic[2] == 0x59 && topic[3] == 0x53)
    }

    /// The next record's sequence number (the runtime's segment records take theirs here too).
    @inline(__always) public func nextStoreSequence() -> UInt64 {
        storeSequence &+= 1
        return storeSequence
    }

    /// Appends a retained set (non-empty payload) or deletion record.
    func storeRetained(topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, qos: QoS,
                       properties: UnsafeRawBufferPointer, stamp: RetainedStamp) {
        RetainedRecord.append(wallTime: stamp.time &+ wallClockOffset, node: stamp.origin.node, shard: stamp.origin.shard,
                              qos: qos.rawValue, topic: topic, properties: properties, payload: payload,
                              sequence: nextStoreSequence(), salt: storeSalt, into: &storeRecords)
    }

    /// Holds connection `s`'s acknowledgements from now until the last record appended is durable,
    /// and, with `remote`, until those shards answered this turn's store ticket.
    func awaitStore(slot s: Int, remote: ShardSet = ShardSet()) {
        guard let wait = storeWait(remote: remote) else { return }
        let e = connections[s].materializeExtras()
        storeWaitSerial &+= 1
        e.storeWait = storeWaitSerial
        connections[s].flow |= FlowFlag.acksAwaitStore
        storeWaiters.append((ConnectionID(slot: Int32(s), generation: connections[s].generation), wait.sequence, wait.ticket, storeWaitSerial))
    }

    /// What an answer given now waits for: the records appended so far and, with `remote`, this
    /// turn's store ticket to those shards (which it joins); nil when nothing is pending.
    func storeWait(remote: ShardSet) -> StoreWait? {
        guard config.durability != .none else { return nil }
        var ticket: UInt64 = 0
        if !remote.isEmpty {
            storeTicketTargets.formUnion(remote)
            ticket = openStoreTicket
        } else if storeSequence <= storeDurableSequence {
            return nil
        }
        return StoreWait(sequence: storeSequence, ticket: ticket)
    }

    /// The runtime: every record up to `sequence` is durable (written, or synced, as configured).
    /// The acknowledgements, CONNACKs and other shards' store barriers that waited for them go out.
    public func storeDurable(through sequence: UInt64) {
        storeDurableSequence = max(storeDurableSequence, sequence)
        releaseStoreWaiters()
        if !storeBarrierWaiters.isEmpty {
            var done = 0
            while done < storeBarrierWaiters.count && storeBarrierWaiters[done].sequence <= sequence {
                send(.storeBarrierAck(token: storeBarrierWaiters[done].token), to: storeBarrierWaiters[done].origin)
                done += 1
            }
            if done > 0 { storeBarrierWaiters.removeFirst(done) }
        }
        if !connectWaiters.isEmpty {
            var done = 0
            while done < connectWaiters.count && connectWaiters[done].sequence <= sequence {
                let waiter = connectWaiters[done]
                done += 1
                guard isCurrent(waiter.connection), connections[Int(waiter.connection.slot)].phase == .connecting else { continue }
                finishConnect(slot: Int(waiter.connection.slot), sessionPresent: waiter.sessionPresent)
            }
            if done > 0 { connectWaiters.removeFirst(done) }
        }
    }

    /// Sends the held acknowledgements of the waiters whose records are durable, in order.
    func releaseStoreWaiters() {
        var done = 0
        while done < storeWaiters.count && storeWaiters[done].sequence <= storeDurableSequence
                && storeWaiters[done].ticket <= remoteStoreDone {
            let waiter = storeWaiters[done]
            done += 1
            guard isCurrent(waiter.connection) else { continue }
            let s = Int(waiter.connection.slot)
            guard let e = connections[s].extras, e.storeWait == waiter.serial else { continue }  // a later wait
            e.storeWait = 0
            connections[s].flow &= ~FlowFlag.acksAwaitStore
            sendHeldAcks(s)
            if connections[s].flow & FlowFlag.acksHeldAny == 0 { connections[s].dropUnusedExtras() }
        }
        if done > 0 { storeWaiters.removeFirst(done) }
    }

    /// Connections waiting for the store (a gauge; nonzero for long: the disk does not keep up
    /// or fails).
    public var storeWaitingConnections: Int { storeWaiters.count }

    /// Appends this shard's snapshot: the retained messages it owns, its recent deletions and its
    /// stored sessions.
    /// Returns the number of records.
    @discardableResult
    public func appendStoreSnapshot(into buffer: inout ByteBuffer) -> UInt64 {
        var count: UInt64 = 0
        retained.forEachValue { message in
            guard message.stamp.origin == address else { return }
            message.topic.withUnsafeBytes { topic in
                guard storesRetained(topic: topic) else { return }
                message.properties.withUnsafeBytes { properties in
                    message.payload.withUnsafeBytes { payload in
                        RetainedRecord.append(wallTime: message.stamp.time &+ wallClockOffset, node: message.stamp.origin.node,
                                              shard: message.stamp.origin.shard, qos: message.qos.rawValue, topic: topic,
                                              properties: properties, payload: payload, sequence: nextStoreSequence(),
                                              salt: storeSalt, into: &buffer)
                        count += 1
                    }
                }
            }
        }
        var deletions = deletionsBeforeSnapshot
        deletions.merge(deletionsSinceSnapshot) { _, new in new }
        for (topic, stamp) in deletions {
            topic.withUnsafeBytes { t in
                RetainedRecord.append(wallTime: stamp.time &+ wallClockOffset, node: stamp.origin.node, shard: stamp.origin.shard,
                                      qos: 0, topic: t, properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                      payload: UnsafeRawBufferPointer(start: nil, count: 0), sequence: nextStoreSequence(),
                                      salt: storeSalt, into: &buffer)
            }
            count += 1
        }
        deletionsBeforeSnapshot = deletionsSinceSnapshot
        deletionsSinceSnapshot = [:]
        count += appendSessionSnapshot(into: &buffer)
        return count
    }

    /// At start (`now`), before any client: the retained messages recovered from every shard's
    /// log. A message's owner is the shard its stamp names (modulo the shard count, which may have
    /// changed since). Its time becomes `now` (a stamp from before this boot, or from a wall clock
    /// since stepped back, means nothing to this process's clock; the merge already ordered them),
    /// and a Message Expiry Interval becomes what is left of it by the wall clock; an expired
    /// message is dropped [MQTT-3.3.2-5].
    /// Room for `count` more retained messages (a load at start, before `loadRetained`).
    public func reserveRetained(_ count: Int) { retained.reserveCapacity(count) }

    public func loadRetained(_ records: [RetainedRecord], now: UInt64) {
        let wallNow = now &+ wallClockOffset
        for i in records.indices where !records[i].payload.isEmpty {
            let record = records[i]
            var properties = record.properties
            if let expiry = properties.withUnsafeBytes({ PropertyBlock.messageExpiry($0) }) {
                let elapsed = wallNow > record.wallTime ? (wallNow - record.wallTime) / 1_000_000_000 : 0
                guard elapsed < UInt64(expiry.seconds) else { continue }
                properties.withUnsafeMutableBytes {
                    PropertyBlock.writeUInt32(expiry.seconds - UInt32(elapsed), at: $0.baseAddress! + expiry.offset)
                }
            }
            let origin = ShardAddress(node: record.node, shard: Int(record.shard) % shardCount)
            let message = RetainedMessage(topic: record.topic, payload: record.payload, qos: QoS(rawValue: record.qos) ?? .atMostOnce,
                                          properties: properties, stamp: RetainedStamp(time: now, origin: origin))
            applyRetained(message, remote: false)
        }
    }
}
