// The MQTT session of a client (MQTT 5.0 §4.1: its subscriptions, the QoS 1/2 messages in flight
// and queued for it, the QoS 2 ids received and not yet released, its expiry and its will), apart
// from the connection that carries it (decoder, outbound bytes, aliases, keep alive: ClientConnection).
//
// Every field is `private(set)`: the methods below are the only place a session changes, so they
// are where a store records a session (issue 15) and where a node link will move one. The core
// reads the fields directly and calls these methods to change them; the compiler enforces it.

import Codec
import ShardContract

/// A will, out of line: most sessions have none, and a slot then holds 8 bytes, not 40. With
/// `dueAt` set, it is a v5 delayed will waiting for its Will Delay Interval while the session is
/// offline [MQTT-3.1.3-9].
final class WillBox {
    let will: Will
    /// When the delayed will is due (monotonic ns), or 0 while its connection is up.
    let dueAt: UInt64
    init(_ will: Will, dueAt: UInt64 = 0) { self.will = will; self.dueAt = dueAt }
}

struct Session {
    /// Seconds the session outlives its connection: 0 = ends with it, UInt32.max = never expires.
    private(set) var expiry: UInt32 = 0
    /// The next packet id to try for an outbound QoS 1/2 message.
    private(set) var nextPacketID: UInt16 = 1
    /// Filter → options (to answer UNSUBSCRIBE and clean up). The trie holds the routes.
    private(set) var subscriptions: [String: SubscriptionOptions] = [:]
    /// v5 Subscription Identifiers of those subscriptions that have one.
    private(set) var subscriptionIdentifiers: [String: UInt32] = [:]
    /// Inbound QoS 2 packet ids between PUBREC and PUBREL (exactly-once delivery).
    private(set) var awaitingRelease: Set<UInt16> = []
    /// Outbound QoS 1/2 messages sent and not yet acknowledged, in send order.
    private(set) var inflight: [InflightMessage] = []
    /// Outbound QoS 1/2 messages waiting for room in the inflight window, in order.
    private(set) var queue = MessageQueue()
    private var willBox: WillBox? = nil
    /// The session's key in the shard's log while it is stored there, or 0
    /// (ShardCore+SessionStore.swift).
    private(set) var storeKey: UInt64 = 0
    /// When this copy of the session began to be stored (wall ns): of two copies a crash left in
    /// two shards' logs, the later one is the session.
    private(set) var storeStamp: UInt64 = 0

    /// Whether the session survives the end of its connection.
    @inline(__always) var isPersistent: Bool { expiry > 0 }

    /// The will published when the connection ends without DISCONNECT 0x00.
    var will: Will? { willBox.flatMap { $0.dueAt == 0 ? $0.will : nil } }
    /// A v5 will waiting for its Will Delay Interval while the session is offline, and when it is due.
    var delayedWill: (will: Will, dueAt: UInt64)? { willBox.flatMap { $0.dueAt != 0 ? ($0.will, $0.dueAt) : nil } }

    // MARK: changes

    mutating func setExpiry(_ seconds: UInt32) { expiry = seconds }

    /// Adds or replaces a subscription; returns whether the filter was subscribed already.
    @discardableResult
    mutating func subscribe(_ filter: String, options: SubscriptionOptions, identifier: UInt32) -> Bool {
        let existed = subscriptions.updateValue(options, forKey: filter) != nil
        if identifier == 0 { subscriptionIdentifiers.removeValue(forKey: filter) } else { subscriptionIdentifiers[filter] = identifier }
        return existed
    }

    /// Removes a subscription; false when there was none.
    mutating func unsubscribe(_ filter: String) -> Bool {
        guard subscriptions.removeValue(forKey: filter) != nil else { return false }
        subscriptionIdentifiers.removeValue(forKey: filter)
        return true
    }

    /// An inbound QoS 2 PUBLISH was received (PUBREC sent): its id is held until PUBREL.
    @inline(__always)
    mutating func awaitRelease(_ packetID: UInt16) { awaitingRelease.insert(packetID) }

    /// PUBREL: whether the id was held.
    @inline(__always)
    mutating func release(_ packetID: UInt16) -> Bool { awaitingRelease.remove(packetID) != nil }

    /// Queues a message behind the inflight window.
    @inline(__always)
    mutating func enqueue(_ message: consuming StoredMessage) { queue.append(message) }

    /// The oldest queued message, moved out.
    @inline(__always)
    mutating func dequeue() -> StoredMessage? { queue.popFirst() }

    /// A packet id for the next outbound QoS 1/2 message: the next one not in flight.
    @inline(__always)
    mutating func allocatePacketID() -> UInt16 {
        var id: UInt16
        repeat {
            id = nextPacketID
            nextPacketID = nextPacketID == .max ? 1 : nextPacketID + 1
        } while !inflight.isEmpty && inflight.contains(where: { $0.packetID == id })
        return id
    }

    /// Records `message` in flight under `packetID` (from `allocatePacketID`), once encoded: it
    /// is moved in, not copied.
    @inline(__always)
    mutating func addInflight(_ message: consuming StoredMessage, packetID: UInt16, state: InflightState) {
        let id = message.storeID
        inflight.append(InflightMessage(packetID: packetID, state: state, message: message, storeID: id))
    }

    /// Ends the delivery in flight under `packetID` in `state` (PUBACK, PUBCOMP) and returns it
    /// (its message's bytes go back to the pool), or nil when there is none.
    @inline(__always)
    mutating func removeInflight(_ packetID: UInt16, state: InflightState) -> InflightMessage? {
        guard let i = inflightIndex(packetID, where: { $0 == state }) else { return nil }
        return inflight.remove(at: i)
    }

    /// The index of the QoS 2 delivery in flight under `packetID` (waiting for PUBREC or PUBCOMP).
    func qos2InflightIndex(_ packetID: UInt16) -> Int? {
        inflightIndex(packetID, where: { $0 != .awaitingPubAck })
    }

    /// The index of the delivery under `packetID` whose state passes `accepts`. An index loop reads
    /// the two fields in place (`firstIndex(where:)` copied each entry: +416 instructions per
    /// message on fan-out QoS 1).
    @inline(__always)
    private func inflightIndex(_ packetID: UInt16, where accepts: (InflightState) -> Bool) -> Int? {
        var i = 0
        while i < inflight.count {
            if inflight[i].packetID == packetID && accepts(inflight[i].state) { return i }
            i += 1
        }
        return nil
    }

    /// Ends the delivery at `index` (an error PUBREC) and returns it.
    mutating func removeInflight(at index: Int) -> InflightMessage { inflight.remove(at: index) }

    /// PUBREC: the QoS 2 delivery at `index` waits for PUBCOMP; its message is no longer needed
    /// and is returned (for the buffer pool).
    @inline(__always)
    mutating func awaitPubComp(at index: Int) -> StoredMessage? {
        inflight[index].state = .awaitingPubComp
        return inflight[index].message.take()
    }

    /// CONNECT's will (or none).
    mutating func setWill(_ will: Will?) { willBox = will.map { WillBox($0) } }

    /// Takes the will of the connection that is ending (a delayed one stays).
    mutating func takeWill() -> Will? {
        guard let will else { return nil }
        willBox = nil
        return will
    }

    /// Keeps `will` until `dueAt`, offline.
    mutating func delayWill(_ will: Will, until dueAt: UInt64) { willBox = WillBox(will, dueAt: dueAt) }

    /// Takes the delayed will (due, or the session ended), or cancels it when the result is unused
    /// (the client came back in time).
    @discardableResult
    mutating func takeDelayedWill() -> Will? {
        guard let (will, _) = delayedWill else { return nil }
        willBox = nil
        return will
    }

    /// Drops what the session holds (its message bytes are freed, not pooled).
    mutating func clear() { self = Session() }

    // MARK: the store

    /// The session is stored under `key` (0: no longer).
    mutating func setStoreKey(_ key: UInt64, stamp: UInt64 = 0) { storeKey = key; storeStamp = stamp }

    /// Gives every message in flight and queued an id in the log, from `next` on (a session that
    /// is stored whole: new in this log).
    mutating func assignStoreIDs(from next: inout UInt64) {
        for i in inflight.indices {
            next += 1
            inflight[i].storeID = next
            inflight[i].message?.storeID = next
        }
        queue.forEachInPlace { next += 1; $0.storeID = next }
    }

    /// Installs a session loaded from the store (the caller adds its subscriptions, which also
    /// enter the trie).
    mutating func restore(expiry: UInt32, nextPacketID: UInt16, awaitingRelease: [UInt16], inflight: [InflightMessage],
                          queue: [StoredMessage], storeKey: UInt64, storeStamp: UInt64) {
        self.expiry = expiry
        self.nextPacketID = nextPacketID
        self.awaitingRelease = Set(awaitingRelease)
        self.inflight = inflight
        var restored = MessageQueue()
        for message in queue { restored.append(message) }
        self.queue = restored
        self.storeKey = storeKey
        self.storeStamp = storeStamp
    }

    // MARK: serialised form (ShardContract.SessionSnapshot)

    /// The session as it moves between shards (times relative to `now`). The will and the expiry
    /// belong to the connection that brings the session back, so they do not move.
    func snapshot(now: UInt64) -> SessionSnapshot {
        SessionSnapshot(
            nextPacketID: nextPacketID,
            subscriptions: subscriptions.map { SessionSnapshot.Subscription(filter: $0.key, options: $0.value,
                                                                            identifier: subscriptionIdentifiers[$0.key] ?? 0) },
            awaitingRelease: Array(awaitingRelease),
            inflight: inflight.map {
                SessionSnapshot.Inflight(packetID: $0.packetID, state: ShardContract.InflightState(rawValue: $0.state.rawValue)!,
                                         message: $0.message?.snapshot(now: now))
            },
            queue: queue.map { $0.snapshot(now: now) })
    }

    /// Takes over the messages and ids of a session that moved here (the caller adds its
    /// subscriptions, which also enter the trie).
    mutating func restoreMessages(from snapshot: SessionSnapshot, now: UInt64) {
        inflight = snapshot.inflight.map {
            InflightMessage(packetID: $0.packetID, state: InflightState(rawValue: $0.state.rawValue)!,
                            message: $0.message.map { StoredMessage(snapshot: $0, now: now) })
        }
        var restored = MessageQueue()
        for message in snapshot.queue { restored.append(StoredMessage(snapshot: message, now: now)) }
        queue = restored
        awaitingRelease = Set(snapshot.awaitingRelease)
        nextPacketID = snapshot.nextPacketID
    }
}
