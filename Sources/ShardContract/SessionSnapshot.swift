// A session in serialised form: what moves with a client id that reconnects on another shard
// (a takeover), and the shape a store or another node will carry. Owned values, no pointers;
// times are relative (a message's remaining expiry), so the form means the same elsewhere.
//
// Layout (little-endian): u16 next packet id, u32 subscriptions, u32 packet ids awaiting PUBREL,
// u32 in flight, u32 queued; then each subscription (u16 filter length, filter, u8 options:
// bits 0-1 QoS, 2 no local, 3 retain as published, 4-5 retain handling; u32 subscription
// identifier, 0 = none), each awaiting id (u16), each in-flight entry (u16 packet id, u8 state,
// u8 1 if a message follows, the message), each queued message. A message: u8 flags (bits 0-1
// QoS, 2 retain), u16 topic length, u32 properties length, u32 payload length, u64 one more than
// the nanoseconds of expiry left (0 = none, 1 = expired), topic, properties, payload.

import Codec

/// A stored application message in serialised form.
public struct MessageSnapshot: Sendable, Equatable {
    public var qos: QoS
    public var retain: Bool
    public var topic: [UInt8]
    public var properties: [UInt8]
    public var payload: [UInt8]
    /// One more than the nanoseconds until its v5 Message Expiry Interval runs out (1: expired),
    /// or 0 for never.
    public var expiresIn: UInt64

    public init(qos: QoS, retain: Bool, topic: [UInt8], properties: [UInt8], payload: [UInt8], expiresIn: UInt64 = 0) {
        self.qos = qos; self.retain = retain; self.topic = topic; self.properties = properties
        self.payload = payload; self.expiresIn = expiresIn
    }
}

/// Where an outbound QoS 1/2 message is in its acknowledgement flow (MQTT 4.3.2, 4.3.3).
public enum InflightState: UInt8, Sendable {
    /// QoS 1, PUBLISH sent.
    case awaitingPubAck = 0
    /// QoS 2, PUBLISH sent.
    case awaitingPubRec = 1
    /// QoS 2, PUBREC received and PUBREL sent; the message itself is no longer needed.
    case awaitingPubComp = 2
}

/// A session's state (MQTT 4.1) in serialised form.
public struct SessionSnapshot: Sendable, Equatable {
    public struct Subscription: Sendable, Equatable {
        public var filter: String
        public var options: SubscriptionOptions
        /// The v5 Subscription Identifier, or 0.
        public var identifier: UInt32
        public init(filter: String, options: SubscriptionOptions, identifier: UInt32 = 0) {
            self.filter = filter; self.options = options; self.identifier = identifier
        }
    }

    public struct Inflight: Sendable, Equatable {
        public var packetID: UInt16
        public var state: InflightState
        /// nil once PUBREC arrived (awaitingPubComp).
        public var message: MessageSnapshot?
        public init(packetID: UInt16, state: InflightState, message: MessageSnapshot?) {
            self.packetID = packetID; self.state = state; self.message = message
        }
    }

    public var nextPacketID: UInt16
    public var subscriptions: [Subscription]
    /// Inbound QoS 2 packet ids between PUBREC and PUBREL.
    public var awaitingRelease: [UInt16]
    public var inflight: [Inflight]
    public var queue: [MessageSnapshot]

    public init(nextPacketID: UInt16 = 1, subscriptions: [Subscription] = [], awaitingRelease: [UInt16] = [],
                inflight: [Inflight] = [], queue: [MessageSnapshot] = []) {
        self.nextPacketID = nextPacketID; self.subscriptions = subscriptions; self.awaitingRelease = awaitingRelease
        self.inflight = inflight; self.queue = queue
    }

    // MARK: coding

    /// Appends the serialised form.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeLE(nextPacketID)
        buffer.writeLE(UInt32(subscriptions.count))
        buffer.writeLE(UInt32(awaitingRelease.count))
        buffer.writeLE(UInt32(inflight.count))
        buffer.writeLE(UInt32(queue.count))
        for s in subscriptions {
            let filter = Array(s.filter.utf8)
            buffer.writeLE(UInt16(filter.count))
            buffer.writeBytes(filter)
            let o = s.options
            buffer.writeByte(o.qos.rawValue | (o.noLocal ? 4 : 0) | (o.retainAsPublished ? 8 : 0) | o.retainHandling.rawValue << 4)
            buffer.writeLE(s.identifier)
        }
        for id in awaitingRelease { buffer.writeLE(id) }
        for entry in inflight {
            buffer.writeLE(entry.packetID)
            buffer.writeByte(entry.state.rawValue)
            buffer.writeByte(entry.message == nil ? 0 : 1)
            if let message = entry.message { Self.encode(message, into: &buffer) }
        }
        for message in queue { Self.encode(message, into: &buffer) }
    }

    static func encode(_ m: MessageSnapshot, into buffer: inout ByteBuffer) {
        buffer.writeByte(m.qos.rawValue | (m.retain ? 4 : 0))
        buffer.writeLE(UInt16(m.topic.count))
        buffer.writeLE(UInt32(m.properties.count))
        buffer.writeLE(UInt32(m.payload.count))
        buffer.writeLE(m.expiresIn)
        buffer.writeBytes(m.topic)
        buffer.writeBytes(m.properties)
        buffer.writeBytes(m.payload)
    }

    /// Decodes a serialised session that fills `bytes` exactly.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(ShardRecordError) {
        var r = RecordReader(bytes)
        try self.init(reading: &r)
        guard r.remaining == 0 else { throw ShardRecordError("\(r.remaining) bytes after the session") }
    }

    init(reading r: inout RecordReader) throws(ShardRecordError) {
        nextPacketID = try r.u16()
        let subscriptionCount = Int(try r.u32()), awaitingCount = Int(try r.u32())
        let inflightCount = Int(try r.u32()), queueCount = Int(try r.u32())
        // Each entry takes at least 2 bytes: counts beyond what the record holds are lies.
        for count in [subscriptionCount, awaitingCount, inflightCount, queueCount] where count > r.remaining / 2 {
            throw ShardRecordError("a count of \(count) in \(r.remaining) bytes")
        }
        subscriptions = []
        subscriptions.reserveCapacity(subscriptionCount)
        for _ in 0..<subscriptionCount {
            let filter = try r.string(Int(try r.u16()))
            let o = try r.u8()
            guard let qos = QoS(rawValue: o & 3), let handling = RetainHandling(rawValue: (o >> 4) & 3), o & 0xC0 == 0 else {
                throw ShardRecordError("bad subscription options \(o)")
            }
            let options = SubscriptionOptions(qos: qos, noLocal: o & 4 != 0, retainAsPublished: o & 8 != 0, retainHandling: handling)
            subscriptions.append(Subscription(filter: filter, options: options, identifier: try r.u32()))
        }
        awaitingRelease = []
        awaitingRelease.reserveCapacity(awaitingCount)
        for _ in 0..<awaitingCount { awaitingRelease.append(try r.u16()) }
        inflight = []
        inflight.reserveCapacity(inflightCount)
        for _ in 0..<inflightCount {
            let packetID = try r.u16()
            guard let state = InflightState(rawValue: try r.u8()) else { throw ShardRecordError("bad in-flight state") }
            let hasMessage = try r.u8()
            guard hasMessage <= 1 else { throw ShardRecordError("bad in-flight entry") }
            inflight.append(Inflight(packetID: packetID, state: state, message: hasMessage == 1 ? try Self.message(&r) : nil))
        }
        queue = []
        queue.reserveCapacity(queueCount)
        for _ in 0..<queueCount { queue.append(try Self.message(&r)) }
    }

    static func message(_ r: inout RecordReader) throws(ShardRecordError) -> MessageSnapshot {
        let flags = try r.u8()
        guard let qos = QoS(rawValue: flags & 3), flags & 0xF8 == 0 else { throw ShardRecordError("bad message flags \(flags)") }
        let topicLength = Int(try r.u16()), propertiesLength = Int(try r.u32()), payloadLength = Int(try r.u32())
        let expiresIn = try r.u64()
        return MessageSnapshot(qos: qos, retain: flags & 4 != 0, topic: Array(try r.bytes(topicLength)),
                               properties: Array(try r.bytes(propertiesLength)), payload: Array(try r.bytes(payloadLength)),
                               expiresIn: expiresIn)
    }
}
