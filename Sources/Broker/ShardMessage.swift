// The whole shard-to-shard contract: the messages one shard sends another through the SPSC
// mailboxes, and their byte layout. Records are written into a per-target ByteBuffer by the
// sending shard's core and copied, whole, into the lock-free ring by the runtime.
//
// Record layout (native byte order; both ends are the same process):
//   u32 length of the whole record (including this field)
//   u8  kind (ShardMessageKind)
//   ... kind-specific body
//
//   publish:      u8 flags (bits 0-1 qos, bit 2 retain), u8 origin shard, u16 topic length,
//                 u32 properties length, u32 payload length, u64 origin connection,
//                 topic bytes, v5 property bytes (no Topic Alias), payload bytes
//   routeAdd:     u8 origin shard, u16 filter length, filter bytes, u64 time the change was read
//   routeRemove:  same as routeAdd
//   replayPublish: a publish record (kind 15) followed by u16 filter length, filter
//   barrier:      u8 origin shard, 3 bytes padding, u32 token
//   barrierAck:   same as barrier (origin = the acknowledging shard)
//   retain:       u8 origin shard, u8 qos, u16 topic length, u32 properties length,
//                 u32 payload length, u64 stamp, topic, properties, payload (empty payload = delete)
//   shareCount:   u8 origin shard, u16 filter length, u32 count, u16 group length, 6 bytes
//                 padding, filter, group
//   sharedPublish: a publish record (kind 12) followed by u32 member index, u16 filter length,
//                 u16 group length, filter, group; the publish record's length covers it all
//   throttle, unthrottle: u8 origin shard, u16 padding, u64 publisher connection
//   claim, release, evict, claimed:
//                 u8 origin shard, u16 unused, u64 connection, u64 other connection,
//                 u8 other shard, u8 flags, 6 bytes padding, u64 session (a retained SessionBox
//                 pointer or 0), u64 client id (a retained ClientIDBox pointer: the id's storage
//                 is shared with the sender's, so the home shard's registry entry does not copy it)

import Codec

/// Kinds of shard-to-shard messages.
public enum ShardMessageKind: UInt8, Sendable {
    /// An application message for the target's local subscribers.
    case publish = 1
    /// The origin shard now has at least one subscriber on a filter.
    case routeAdd = 2
    /// The origin shard no longer has any subscriber on a filter.
    case routeRemove = 3
    /// "Acknowledge when you have applied everything I sent before this": the target answers
    /// with barrierAck. A SUBSCRIBE that created new routes is acknowledged (SUBACK) only when
    /// every other shard has acknowledged, so a message published anywhere after SUBACK is routed.
    case barrier = 4
    /// The answer to a barrier.
    case barrierAck = 5
    /// To a client id's home shard: this connection now holds the client id.
    case claim = 6
    /// To a client id's home shard: this connection no longer holds the client id.
    case release = 7
    /// From the home shard: another connection claimed this client id; end this one (takeover)
    /// and hand its session to the claimant (`claimed`).
    case evict = 8
    /// A retained message (or its deletion) for the target's replica of the retained store.
    case retain = 9
    /// To the claimant: the client id is yours; here is the previous session, if it is to be kept.
    case claimed = 10
    /// The origin shard now has `count` members in a shared subscription group.
    case shareCount = 11
    /// An application message for one member of a shared group on the target shard.
    case sharedPublish = 12
    /// Flow control: a subscriber on the origin shard queues this publisher's messages past its
    /// throttle length; hold the publisher's acknowledgements (ShardCore+FlowControl.swift).
    case throttle = 13
    /// The answer to one earlier `throttle`: that subscriber no longer holds the publisher back.
    case unthrottle = 14
    /// A message routed on the origin shard just after the SUBSCRIBE of a route it received late:
    /// for the target's subscribers of exactly the filter that follows it (RecentPublishes.swift).
    case replayPublish = 15
}

/// A decoded view of one mailbox record (pointers into the ring's memory).
public enum ShardMessage {
    case publish(ForwardedPublish)
    case routeAdd(origin: Int, filter: UnsafeRawBufferPointer, time: UInt64)
    case routeRemove(origin: Int, filter: UnsafeRawBufferPointer, time: UInt64)
    case replayPublish(ForwardedPublish, filter: UnsafeRawBufferPointer)
    case barrier(origin: Int, token: UInt32)
    case barrierAck(origin: Int, token: UInt32)
    case client(ClientMessage)
    case shareCount(origin: Int, filter: String, group: String, count: Int)
    case sharedPublish(ForwardedPublish, filter: UnsafeRawBufferPointer, group: UnsafeRawBufferPointer, member: Int)
    case retain(RetainedMessage)
    case throttle(publisher: ConnectionID)
    case unthrottle(publisher: ConnectionID)
}

/// A client-registry message (claim, release, evict, claimed), decoded into owned values.
public struct ClientMessage {
    public var kind: ShardMessageKind
    public var origin: Int
    public var clientID: String
    public var connection: ConnectionID
    public var otherConnection = ConnectionID(slot: 0, generation: 0)
    public var otherShard = 0
    /// claim: bit 0 = clean start. evict: bit 0 = hand the session over.
    public var flags: UInt8 = 0
    /// claimed: the previous session, moved between shards by reference.
    var session: SessionBox? = nil
}

/// A client id on its way to another shard: a reference, so the receiver's copy shares the
/// sender's string storage (a client id is kept once in memory, not once per shard).
final class ClientIDBox: Sendable {
    let id: String
    init(_ id: String) { self.id = id }
}

/// An application message as it travels between shards.
public struct ForwardedPublish {
    public var qos: QoS
    public var retain: Bool
    public var originShard: Int
    public var origin: ConnectionID
    public var topic: UnsafeRawBufferPointer
    /// v5 PUBLISH properties to pass on (empty when the publisher was 3.1.1).
    public var properties: UnsafeRawBufferPointer
    public var payload: UnsafeRawBufferPointer
}

enum ShardMessageCodec {
    static let publishHeader = 4 + 1 + 1 + 1 + 2 + 4 + 4 + 8

    /// Appends a publish record.
    @inline(__always)
    static func appendPublish(
        qos: QoS, retain: Bool, originShard: Int, origin: ConnectionID,
        topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
        to buffer: inout ByteBuffer
    ) {
        let length = publishHeader + topic.count + properties.count + payload.count
        let p = buffer.reserveWritable(length)
        p.storeBytes(of: UInt32(length), as: UInt32.self)
        p.storeBytes(of: ShardMessageKind.publish.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: qos.rawValue | (retain ? 4 : 0), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt8(originShard), toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: UInt16(topic.count), toByteOffset: 7, as: UInt16.self)
        p.storeBytes(of: UInt32(properties.count), toByteOffset: 9, as: UInt32.self)
        p.storeBytes(of: UInt32(payload.count), toByteOffset: 13, as: UInt32.self)
        p.storeBytes(of: origin.packed, toByteOffset: 17, as: UInt64.self)
        var offset = publishHeader
        if topic.count > 0 { (p + offset).copyMemory(from: topic.baseAddress!, byteCount: topic.count); offset += topic.count }
        if properties.count > 0 { (p + offset).copyMemory(from: properties.baseAddress!, byteCount: properties.count); offset += properties.count }
        if payload.count > 0 { (p + offset).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        buffer.commitWritten(length)
    }

    /// Appends a routeAdd or routeRemove record; `time` is when the change was read (the
    /// SUBSCRIBE's input), for replaying messages routed after it (RecentPublishes.swift).
    static func appendRoute(_ kind: ShardMessageKind, originShard: Int, filter: String, time: UInt64, to buffer: inout ByteBuffer) {
        var f = filter
        f.withUTF8 { bytes in
            let length = 4 + 1 + 1 + 2 + bytes.count + 8
            let p = buffer.reserveWritable(length)
            p.storeBytes(of: UInt32(length), as: UInt32.self)
            p.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
            p.storeBytes(of: UInt8(originShard), toByteOffset: 5, as: UInt8.self)
            p.storeBytes(of: UInt16(bytes.count), toByteOffset: 6, as: UInt16.self)
            if bytes.count > 0 { (p + 8).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            (p + 8 + bytes.count).storeBytes(of: time, as: UInt64.self)
            buffer.commitWritten(length)
        }
    }

    /// Appends a replayPublish record: a publish record with the filter appended.
    static func appendReplayPublish(
        qos: QoS, retain: Bool, originShard: Int, origin: ConnectionID, topic: UnsafeRawBufferPointer,
        properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, filter: UnsafeRawBufferPointer, to buffer: inout ByteBuffer
    ) {
        let start = buffer.writerIndex - buffer.readerIndex
        appendPublish(qos: qos, retain: retain, originShard: originShard, origin: origin, topic: topic,
                      properties: properties, payload: payload, to: &buffer)
        let tail = buffer.reserveWritable(2)
        tail.storeBytes(of: UInt16(filter.count), as: UInt16.self)
        buffer.commitWritten(2)
        buffer.writeBytes(filter)
        let p = buffer.base! + buffer.readerIndex + start
        p.storeBytes(of: UInt32(buffer.writerIndex - buffer.readerIndex - start), as: UInt32.self)
        p.storeBytes(of: ShardMessageKind.replayPublish.rawValue, toByteOffset: 4, as: UInt8.self)
    }

    /// Appends a barrier or barrierAck record.
    static func appendBarrier(_ kind: ShardMessageKind, originShard: Int, token: UInt32, to buffer: inout ByteBuffer) {
        let p = buffer.reserveWritable(12)
        p.storeBytes(of: UInt32(12), as: UInt32.self)
        p.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(originShard), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: token, toByteOffset: 8, as: UInt32.self)
        buffer.commitWritten(12)
    }

    /// Appends a throttle or unthrottle record: u8 origin shard, 2 bytes padding, u64 publisher.
    static func appendThrottle(_ kind: ShardMessageKind, originShard: Int, publisher: ConnectionID, to buffer: inout ByteBuffer) {
        let p = buffer.reserveWritable(16)
        p.storeBytes(of: UInt32(16), as: UInt32.self)
        p.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(originShard), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: publisher.packed, toByteOffset: 8, as: UInt64.self)
        buffer.commitWritten(16)
    }

    /// Appends a shareCount record.
    static func appendShareCount(originShard: Int, filter: String, group: String, count: Int, to buffer: inout ByteBuffer) {
        let f = Array(filter.utf8), g = Array(group.utf8)
        let length = 16 + f.count + g.count
        let p = buffer.reserveWritable(length)
        p.storeBytes(of: UInt32(length), as: UInt32.self)
        p.storeBytes(of: ShardMessageKind.shareCount.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(originShard), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(f.count), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: UInt32(count), toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt16(g.count), toByteOffset: 12, as: UInt16.self)
        f.withUnsafeBytes { if $0.count > 0 { (p + 16).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        g.withUnsafeBytes { if $0.count > 0 { (p + 16 + f.count).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        buffer.commitWritten(length)
    }

    /// Appends a sharedPublish record: a publish record with the group member appended.
    static func appendSharedPublish(
        qos: QoS, originShard: Int, origin: ConnectionID, topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer,
        payload: UnsafeRawBufferPointer, filter: String, group: String, member: Int, to buffer: inout ByteBuffer
    ) {
        // Offsets from readerIndex: growing the buffer may compact it and move writerIndex.
        let start = buffer.writerIndex - buffer.readerIndex
        appendPublish(qos: qos, retain: false, originShard: originShard, origin: origin, topic: topic,
                      properties: properties, payload: payload, to: &buffer)
        var f = filter, g = group  // withUTF8 on native strings: no copy, no allocation
        f.withUTF8 { filterBytes in
            g.withUTF8 { groupBytes in
                let tail = buffer.reserveWritable(8)
                tail.storeBytes(of: UInt32(member), as: UInt32.self)  // native byte order, like every record field
                tail.storeBytes(of: UInt16(filterBytes.count), toByteOffset: 4, as: UInt16.self)
                tail.storeBytes(of: UInt16(groupBytes.count), toByteOffset: 6, as: UInt16.self)
                buffer.commitWritten(8)
                buffer.writeBytes(UnsafeRawBufferPointer(filterBytes))
                buffer.writeBytes(UnsafeRawBufferPointer(groupBytes))
            }
        }
        let p = buffer.base! + buffer.readerIndex + start
        p.storeBytes(of: UInt32(buffer.writerIndex - buffer.readerIndex - start), as: UInt32.self)
        p.storeBytes(of: ShardMessageKind.sharedPublish.rawValue, toByteOffset: 4, as: UInt8.self)
    }

    /// Appends a retain record.
    static func appendRetain(_ message: RetainedMessage, originShard: Int, to buffer: inout ByteBuffer) {
        let length = 28 + message.topic.count + message.properties.count + message.payload.count
        let p = buffer.reserveWritable(length)
        p.storeBytes(of: UInt32(length), as: UInt32.self)
        p.storeBytes(of: ShardMessageKind.retain.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(originShard), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: message.qos.rawValue, toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 7, as: UInt8.self)
        p.storeBytes(of: UInt32(message.topic.count), toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(message.properties.count), toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: UInt32(message.payload.count), toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: message.stamp, toByteOffset: 20, as: UInt64.self)
        var offset = 28
        for part in [message.topic, message.properties, message.payload] {
            part.withUnsafeBytes { if $0.count > 0 { (p + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            offset += part.count
        }
        buffer.commitWritten(length)
    }

    static let clientRecordLength = 48

    /// Appends a claim, release, evict or claimed record.
    static func appendClient(_ m: ClientMessage, to buffer: inout ByteBuffer) {
        let p = buffer.reserveWritable(clientRecordLength)
        p.storeBytes(of: UInt32(clientRecordLength), as: UInt32.self)
        p.storeBytes(of: m.kind.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(m.origin), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: m.connection.packed, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: m.otherConnection.packed, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: UInt8(m.otherShard), toByteOffset: 24, as: UInt8.self)
        p.storeBytes(of: m.flags, toByteOffset: 25, as: UInt8.self)
        p.storeBytes(of: m.session.map { UInt64(UInt(bitPattern: Unmanaged.passRetained($0).toOpaque())) } ?? 0,
                     toByteOffset: 32, as: UInt64.self)
        let id = Unmanaged.passRetained(ClientIDBox(m.clientID)).toOpaque()
        p.storeBytes(of: UInt64(UInt(bitPattern: id)), toByteOffset: 40, as: UInt64.self)
        buffer.commitWritten(clientRecordLength)
    }

    /// The total length of the record starting at `p`.
    @inline(__always)
    static func recordLength(_ p: UnsafeRawPointer) -> Int { Int(p.loadUnaligned(as: UInt32.self)) }

    /// Decodes the publish part of a publish or sharedPublish record.
    static func decodePublish(_ p: UnsafeRawPointer) -> ShardMessage? {
        let flags = p.load(fromByteOffset: 5, as: UInt8.self)
        let originShard = Int(p.load(fromByteOffset: 6, as: UInt8.self))
        let topicLength = Int(p.loadUnaligned(fromByteOffset: 7, as: UInt16.self))
        let propertiesLength = Int(p.loadUnaligned(fromByteOffset: 9, as: UInt32.self))
        let payloadLength = Int(p.loadUnaligned(fromByteOffset: 13, as: UInt32.self))
        let origin = ConnectionID(packed: p.loadUnaligned(fromByteOffset: 17, as: UInt64.self))
        let topic = UnsafeRawBufferPointer(start: p + publishHeader, count: topicLength)
        let properties = UnsafeRawBufferPointer(start: p + publishHeader + topicLength, count: propertiesLength)
        let payload = UnsafeRawBufferPointer(start: p + publishHeader + topicLength + propertiesLength, count: payloadLength)
        return .publish(ForwardedPublish(
            qos: QoS(rawValue: flags & 3) ?? .atMostOnce, retain: flags & 4 != 0,
            originShard: originShard, origin: origin, topic: topic, properties: properties, payload: payload))
    }

    /// Decodes the record at `p` (whose length is `recordLength(p)`); nil for an unknown kind.
    static func decode(_ p: UnsafeRawPointer) -> ShardMessage? {
        guard let kind = ShardMessageKind(rawValue: p.load(fromByteOffset: 4, as: UInt8.self)) else { return nil }
        switch kind {
        case .sharedPublish:
            guard case .publish(let message)? = decodePublish(p) else { return nil }
            let end = publishHeader + message.topic.count + message.properties.count + message.payload.count
            let member = Int(p.loadUnaligned(fromByteOffset: end, as: UInt32.self))
            let filterLength = Int(p.loadUnaligned(fromByteOffset: end + 4, as: UInt16.self))
            let groupLength = Int(p.loadUnaligned(fromByteOffset: end + 6, as: UInt16.self))
            let filter = UnsafeRawBufferPointer(start: p + end + 8, count: filterLength)
            let group = UnsafeRawBufferPointer(start: p + end + 8 + filterLength, count: groupLength)
            return .sharedPublish(message, filter: filter, group: group, member: member)
        case .shareCount:
            let filterLength = Int(p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            let groupLength = Int(p.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            return .shareCount(
                origin: Int(p.load(fromByteOffset: 5, as: UInt8.self)),
                filter: String(decoding: UnsafeRawBufferPointer(start: p + 16, count: filterLength), as: UTF8.self),
                group: String(decoding: UnsafeRawBufferPointer(start: p + 16 + filterLength, count: groupLength), as: UTF8.self),
                count: Int(p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        case .publish:
            return decodePublish(p)
        case .throttle, .unthrottle:
            let publisher = ConnectionID(packed: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            return kind == .throttle ? .throttle(publisher: publisher) : .unthrottle(publisher: publisher)
        case .routeAdd, .routeRemove:
            let originShard = Int(p.load(fromByteOffset: 5, as: UInt8.self))
            let length = Int(p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            let filter = UnsafeRawBufferPointer(start: p + 8, count: length)
            let time = p.loadUnaligned(fromByteOffset: 8 + length, as: UInt64.self)
            return kind == .routeAdd ? .routeAdd(origin: originShard, filter: filter, time: time)
                : .routeRemove(origin: originShard, filter: filter, time: time)
        case .replayPublish:
            guard case .publish(let message)? = decodePublish(p) else { return nil }
            let end = publishHeader + message.topic.count + message.properties.count + message.payload.count
            let filterLength = Int(p.loadUnaligned(fromByteOffset: end, as: UInt16.self))
            return .replayPublish(message, filter: UnsafeRawBufferPointer(start: p + end + 2, count: filterLength))
        case .barrier, .barrierAck:
            let originShard = Int(p.load(fromByteOffset: 5, as: UInt8.self))
            let token = p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            return kind == .barrier ? .barrier(origin: originShard, token: token) : .barrierAck(origin: originShard, token: token)
        case .retain:
            let qos = QoS(rawValue: p.load(fromByteOffset: 6, as: UInt8.self)) ?? .atMostOnce
            let topicLength = Int(p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let propertiesLength = Int(p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            let payloadLength = Int(p.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            let stamp = p.loadUnaligned(fromByteOffset: 20, as: UInt64.self)
            let topic = Array(UnsafeRawBufferPointer(start: p + 28, count: topicLength))
            let properties = Array(UnsafeRawBufferPointer(start: p + 28 + topicLength, count: propertiesLength))
            let payload = Array(UnsafeRawBufferPointer(start: p + 28 + topicLength + propertiesLength, count: payloadLength))
            return .retain(RetainedMessage(topic: topic, payload: payload, qos: qos, properties: properties, stamp: stamp))
        case .claim, .release, .evict, .claimed:
            let raw = UInt(p.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
            let session = raw == 0 ? nil : Unmanaged<SessionBox>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeRetainedValue()
            let idBox = UInt(p.loadUnaligned(fromByteOffset: 40, as: UInt64.self))
            let clientID = Unmanaged<ClientIDBox>.fromOpaque(UnsafeRawPointer(bitPattern: idBox)!).takeRetainedValue().id
            return .client(ClientMessage(
                kind: kind, origin: Int(p.load(fromByteOffset: 5, as: UInt8.self)),
                clientID: clientID,
                connection: ConnectionID(packed: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                otherConnection: ConnectionID(packed: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                otherShard: Int(p.load(fromByteOffset: 24, as: UInt8.self)),
                flags: p.load(fromByteOffset: 25, as: UInt8.self), session: session))
        }
    }
}
