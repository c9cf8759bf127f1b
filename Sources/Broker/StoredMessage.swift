// Messages a session keeps: QoS 1/2 deliveries in flight (until PUBACK/PUBCOMP) and the queue
// behind the inflight window. QoS 0 deliveries are never stored.

import Codec
import ShardContract

/// An application message owned by a session: topic, v5 properties and payload in one array,
/// or a large payload held by reference (`sharedPayload`, the same bytes for every session the
/// message goes to) after the topic and properties in the array.
struct StoredMessage {
    var bytes: [UInt8]
    // Lengths and offsets in 32 bits: a queued message costs 56 bytes besides its array, as it
    // did before the shared payload's reference came.
    private var _topicLength: Int32
    private var _propertiesLength: Int32
    var topicLength: Int {
        get { Int(_topicLength) }
        set { _topicLength = Int32(newValue) }
    }
    var propertiesLength: Int {
        get { Int(_propertiesLength) }
        set { _propertiesLength = Int32(newValue) }
    }
    /// A large payload shared with other sessions (never written), from `sharedOffset` to its
    /// end; nil when the payload is the rest of `bytes`.
    var sharedPayload: SharedBytes? = nil
    private var _sharedOffset: Int32 = 0
    var sharedOffset: Int {
        get { Int(_sharedOffset) }
        set { _sharedOffset = Int32(newValue) }
    }
    /// The QoS this session receives it at.
    var qos: QoS
    var retain: Bool
    /// When the v5 Message Expiry Interval runs out (monotonic ns), or 0 for never.
    var expiresAt: UInt64 = 0
    /// Where the 4-byte Message Expiry Interval value sits in `bytes`, or -1.
    private var _expiryOffset: Int32 = -1
    var expiryOffset: Int {
        get { Int(_expiryOffset) }
        set { _expiryOffset = Int32(newValue) }
    }
    /// Its id in the shard's log when its session is stored (ShardCore+SessionStore.swift), or 0.
    var storeID: UInt64 = 0

    /// Copies the message into `reusing` (an array from the shard's `MessageBufferPool`, whose
    /// capacity is kept) or into a new array.
    init(topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, qos: QoS, retain: Bool,
         now: UInt64 = 0, reusing buffer: consuming [UInt8] = []) {
        var bytes = buffer
        bytes.removeAll(keepingCapacity: true)
        bytes.reserveCapacity(topic.count + properties.count + payload.count)
        bytes.append(contentsOf: topic)
        bytes.append(contentsOf: properties)
        bytes.append(contentsOf: payload)
        self.bytes = bytes
        self._topicLength = Int32(topic.count)
        self._propertiesLength = Int32(properties.count)
        self.qos = qos
        self.retain = retain
        if properties.count > 0, let expiry = PropertyBlock.messageExpiry(properties) {
            expiresAt = now + UInt64(expiry.seconds) * 1_000_000_000
            expiryOffset = topic.count + expiry.offset
        }
    }

    /// A message whose payload is `shared.bytes[offset...]`; its topic and properties are copied
    /// into `reusing`. The payload is not copied: every holder of `shared` reads the same bytes.
    init(topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer, sharedPayload shared: SharedBytes, offset: Int,
         qos: QoS, retain: Bool, now: UInt64 = 0, reusing buffer: consuming [UInt8] = []) {
        self.init(topic: topic, properties: properties, payload: UnsafeRawBufferPointer(start: nil, count: 0), qos: qos,
                  retain: retain, now: now, reusing: buffer)
        sharedPayload = shared
        sharedOffset = offset
    }

    /// Payloads at least this large are held once per shard for all the sessions they go to
    /// (a copy each would cost more than the shared allocation and its reference counting).
    static let sharedPayloadMinimum = 16 << 10

    /// A message without bytes (a placeholder for one moved out of a queue).
    static let empty = StoredMessage(bytes: [], topicLength: 0, propertiesLength: 0, qos: .atMostOnce, retain: false)

    private init(bytes: [UInt8], topicLength: Int, propertiesLength: Int, qos: QoS, retain: Bool) {
        self.bytes = bytes; self._topicLength = Int32(topicLength); self._propertiesLength = Int32(propertiesLength)
        self.qos = qos; self.retain = retain
    }

    /// The message in serialised form (SessionSnapshot), its expiry relative to `now`.
    func snapshot(now: UInt64) -> MessageSnapshot {
        withParts { topic, properties, payload in
            MessageSnapshot(qos: qos, retain: retain, topic: Array(topic), properties: Array(properties), payload: Array(payload),
                            // One more than the nanoseconds left, so an expired message says 1, not 0 (none).
                            expiresIn: expiresAt == 0 ? 0 : (expiresAt > now ? expiresAt - now + 1 : 1))
        }
    }

    /// A message from its serialised form, expiring what was left of its expiry after `now`.
    init(snapshot m: MessageSnapshot, now: UInt64) {
        self = m.topic.withUnsafeBytes { topic in
            m.properties.withUnsafeBytes { properties in
                m.payload.withUnsafeBytes { payload in
                    StoredMessage(topic: topic, properties: properties, payload: payload, qos: m.qos, retain: m.retain, now: now)
                }
            }
        }
        expiresAt = m.expiresIn == 0 ? 0 : now + m.expiresIn - 1
    }

    /// Whether the message expired before it could be sent [MQTT-3.3.2-5].
    func isExpired(at now: UInt64) -> Bool { expiresAt != 0 && now >= expiresAt }

    /// Sets the Message Expiry Interval to what is left at `now` [MQTT-3.3.2-6].
    @inline(__always)
    mutating func updateRemainingExpiry(at now: UInt64) {
        guard expiryOffset >= 0, expiresAt > now else { return }
        let remaining = UInt32(min((expiresAt - now + 999_999_999) / 1_000_000_000, UInt64(UInt32.max)))
        let offset = expiryOffset
        bytes.withUnsafeMutableBytes { PropertyBlock.writeUInt32(remaining, at: $0.baseAddress! + offset) }
    }

    /// Calls `body` with the topic's, the properties' and the payload's bytes.
    @inline(__always)
    func withParts<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { all in
            let topic = UnsafeRawBufferPointer(rebasing: all[0..<topicLength])
            let properties = UnsafeRawBufferPointer(rebasing: all[topicLength..<(topicLength + propertiesLength)])
            if let shared = sharedPayload {
                return body(topic, properties, UnsafeRawBufferPointer(start: shared.start + sharedOffset, count: shared.count - sharedOffset))
            }
            return body(topic, properties, UnsafeRawBufferPointer(rebasing: all[(topicLength + propertiesLength)...]))
        }
    }

    /// The payload's size.
    var payloadCount: Int {
        if let shared = sharedPayload { return shared.count - sharedOffset }
        return bytes.count - topicLength - propertiesLength
    }

    /// Calls `body` with the topic name's bytes.
    @inline(__always)
    func withTopic<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<topicLength])) }
    }

    /// Encodes the message as a PUBLISH; with a `topicAlias` (v5), `omitTopic` sends the alias alone.
    func encode(version: ProtocolVersion, packetID: UInt16, dup: Bool, topicAlias: UInt16 = 0, omitTopic: Bool = false,
                payloadFollows: Bool = false, into buffer: inout ByteBuffer) {
        withParts { topic, properties, payload in
            let topic = omitTopic ? UnsafeRawBufferPointer(start: nil, count: 0) : topic
            PublishEncoder.encode(version: version, dup: dup, qos: qos, retain: retain, topic: topic, packetID: packetID,
                                  properties: version == .v5 ? properties : UnsafeRawBufferPointer(start: nil, count: 0),
                                  payload: payload, topicAlias: version == .v5 ? topicAlias : 0, payloadFollows: payloadFollows,
                                  into: &buffer)
        }
    }
}

/// Where an outbound QoS 1/2 message is in its acknowledgement flow. The core's own enum (the
/// contract's `ShardContract.InflightState` is its serialised form): a type of this module keeps
/// `InflightMessage` copies inline on the PUBACK path (measured: value-witness copies otherwise).
enum InflightState: UInt8 {
    /// QoS 1, PUBLISH sent.
    case awaitingPubAck = 0
    /// QoS 2, PUBLISH sent.
    case awaitingPubRec = 1
    /// QoS 2, PUBREC received and PUBREL sent; the message itself is no longer needed.
    case awaitingPubComp = 2
}

/// One outbound message in flight.
struct InflightMessage {
    var packetID: UInt16
    var state: InflightState
    var message: StoredMessage?
    /// The message's id in the shard's log (kept once the message itself is gone at PUBREC), or 0.
    var storeID: UInt64 = 0
}

/// A FIFO of stored messages (an array with a moving head, compacted now and then).
struct MessageQueue {
    private var items: [StoredMessage] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }

    mutating func append(_ message: StoredMessage) { items.append(message) }

    /// Calls `body` on each queued message, oldest first, in place.
    mutating func forEachInPlace(_ body: (inout StoredMessage) -> Void) {
        var i = head
        while i < items.count { body(&items[i]); i += 1 }
    }

    /// The queued messages, oldest first, transformed.
    func map<T>(_ transform: (StoredMessage) -> T) -> [T] { items[head...].map(transform) }

    mutating func popFirst() -> StoredMessage? {
        guard head < items.count else { return nil }
        // Moved out rather than copied, so that the caller holds the only reference to its bytes
        // (updating the expiry in place, or recycling them, must not copy).
        var message = StoredMessage.empty
        swap(&message, &items[head])
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return message
    }
}

/// The byte arrays of QoS 1/2 messages a shard is done with (acknowledged, expired, dropped),
/// kept for the next messages: steady-state QoS 1/2 traffic then copies each message into an
/// array that already has the capacity instead of allocating one per message.
///
/// Any array may come back, also one created on another shard and carried here with a session.
/// An array still shared with a copy is copied on write when reused, so a missed or wrong
/// recycle costs an allocation, never correctness.
struct MessageBufferPool {
    private var free: [[UInt8]] = []
    private var pooledBytes = 0
    /// Most bytes kept (capacity summed), and the largest array worth keeping: beyond these an
    /// array is freed, so a burst of large messages does not pin memory.
    static let maxPooledBytes = 4 << 20
    static let maxBufferCapacity = 64 << 10

    /// Arrays pooled.
    var count: Int { free.count }

    /// An array for the next message (`StoredMessage.init` discards what it held), with
    /// capacity when one is pooled.
    @inline(__always)
    mutating func take() -> [UInt8] {
        guard let bytes = free.popLast() else { return [] }
        pooledBytes -= bytes.capacity
        return bytes
    }

    /// Gives a message's bytes back for reuse.
    @inline(__always)
    mutating func recycle(_ message: consuming StoredMessage) {
        let capacity = message.bytes.capacity
        guard capacity > 0, capacity <= Self.maxBufferCapacity, pooledBytes + capacity <= Self.maxPooledBytes else { return }
        pooledBytes += capacity
        free.append(message.bytes)
    }
}
