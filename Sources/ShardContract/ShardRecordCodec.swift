// The one codec of the shard contract: a ShardMessage and its origin to a record and back.
//
// Every record (little-endian): u32 length of the whole record, u8 kind (ShardMessageKind),
// u8 origin shard, u16 origin node; then the kind's body:
//   publish        u8 flags (bits 0-1 QoS, 2 retain), u8 0, u16 topic length, u32 properties
//                  length, u32 payload length, u64 publishing connection; topic, properties, payload
//   publishShared  a publish body without the payload, then u64 address of a SharedBytes
//                  (retained once for the record), u64 payload offset in it: a large payload
//                  moves between the shards of one process by reference, not by two copies
//   replayPublish  a publish body, then u16 filter length, filter
//   sharedPublish  a publish body, then u32 member, u16 filter length, u16 group length, filter, group
//   routeAdd/-Remove  u64 time the SUBSCRIBE was read (max: none), u16 filter length, filter
//   barrier/-Ack   u32 token
//   storeBarrier/-Ack  u64 token
//   shareCount     u32 count, u16 filter length, u16 group length, filter, group
//   retain         u8 QoS, u8 stamp's shard, u16 topic length, u32 properties length, u32 payload
//                  length, u64 stamp's time, u16 stamp's node, u16 0; topic, properties, payload
//                  (an empty payload deletes)
//   throttle/un-   u64 publisher connection
//   claim, release, evict, claimed
//                  u64 connection, u64 other connection, u8 other shard, u8 flags, u16 other
//                  node, u16 client id length, u16 0, u32 session length (0: none); client id,
//                  session (SessionSnapshot.swift)
//
// Decoding checks every length against the record's, so a damaged record is refused (and the
// fuzz target feeds it anything); the publish path's encode and decode inline into the core.

import Codec

public enum ShardRecordCodec {
    public static let headerLength = 8
    @usableFromInline static let publishBodyLength = 20

    /// The total length of the record starting at `p` (its first field).
    @inlinable public static func recordLength(_ p: UnsafeRawPointer) -> Int {
        Int(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
    }

    // MARK: encoding

    /// Appends the record of `message` from `origin`.
    @inlinable @inline(__always)
    public static func encode(_ message: ShardMessage, origin: ShardAddress, into buffer: inout ByteBuffer) {
        if case .publish(let p) = message {
            encodePublish(p, origin: origin, into: &buffer)
            return
        }
        // Offsets from the reader index: growing the buffer may compact it.
        let start = buffer.readableBytes
        let kind: ShardMessageKind
        buffer.writeLE(UInt32(0))  // the length, patched below
        buffer.writeByte(0)        // the kind, patched below
        buffer.writeByte(origin.shard)
        buffer.writeLE(origin.node)
        switch message {
        case .publish(let p):
            kind = .publish
            writePublish(p, into: &buffer)
        case .replayPublish(let p, let filter):
            kind = .replayPublish
            writePublish(p, into: &buffer)
            buffer.writeLE(UInt16(filter.count))
            buffer.writeBytes(filter)
        case .sharedPublish(let p, let filter, let group, let member):
            kind = .sharedPublish
            writePublish(p, into: &buffer)
            buffer.writeLE(UInt32(member))
            buffer.writeLE(UInt16(filter.count))
            buffer.writeLE(UInt16(group.count))
            buffer.writeBytes(filter)
            buffer.writeBytes(group)
        case .routeAdd(let filter, let time), .routeRemove(let filter, let time):
            if case .routeAdd = message { kind = .routeAdd } else { kind = .routeRemove }
            buffer.writeLE(time)
            buffer.writeLE(UInt16(filter.count))
            buffer.writeBytes(filter)
        case .barrier(let token), .barrierAck(let token):
            if case .barrier = message { kind = .barrier } else { kind = .barrierAck }
            buffer.writeLE(token)
        case .storeBarrier(let token), .storeBarrierAck(let token):
            if case .storeBarrier = message { kind = .storeBarrier } else { kind = .storeBarrierAck }
            buffer.writeLE(token)
        case .shareCount(let filter, let group, let count):
            kind = .shareCount
            buffer.writeLE(UInt32(count))
            buffer.writeLE(UInt16(filter.count))
            buffer.writeLE(UInt16(group.count))
            buffer.writeBytes(filter)
            buffer.writeBytes(group)
        case .retain(let r):
            kind = .retain
            buffer.writeByte(r.qos.rawValue)
            buffer.writeByte(r.stamp.origin.shard)
            buffer.writeLE(UInt16(r.topic.count))
            buffer.writeLE(UInt32(r.properties.count))
            buffer.writeLE(UInt32(r.payload.count))
            buffer.writeLE(r.stamp.time)
            buffer.writeLE(r.stamp.origin.node)
            buffer.writeLE(UInt16(0))
            buffer.writeBytes(r.topic)
            buffer.writeBytes(r.properties)
            buffer.writeBytes(r.payload)
        case .throttle(let publisher), .unthrottle(let publisher):
            if case .throttle = message { kind = .throttle } else { kind = .unthrottle }
            buffer.writeLE(publisher.packed)
        case .client(let m):
            kind = ShardMessageKind(rawValue: m.kind.rawValue)!
            writeClient(m, into: &buffer)
        }
        let length = buffer.readableBytes - start
        buffer.patchLE(UInt32(length), atReadableOffset: start)
        (buffer.base! + buffer.readerIndex + start + 4).storeBytes(of: kind.rawValue, as: UInt8.self)
    }

    /// The publish record, the data path's: one reservation, the fixed fields stored directly.
    @inlinable @inline(__always)
    public static func encodePublish(_ p: ForwardedPublish, origin: ShardAddress, into buffer: inout ByteBuffer) {
        let length = headerLength + publishBodyLength + p.topic.count + p.properties.count + p.payload.count
        let w = buffer.reserveWritable(length)
        let offset = writePublishHead(p, kind: .publish, length: length, origin: origin, at: w)
        if p.payload.count > 0 { (w + offset).copyMemory(from: p.payload.baseAddress!, byteCount: p.payload.count) }
        buffer.commitWritten(length)
    }

    /// Writes a publish record's header, fixed fields, topic and properties at `w` (room for
    /// `length` bytes); returns the offset after the properties.
    @inlinable @inline(__always)
    static func writePublishHead(_ p: ForwardedPublish, kind: ShardMessageKind, length: Int, origin: ShardAddress,
                                 at w: UnsafeMutableRawPointer) -> Int {
        w.storeBytes(of: UInt32(length).littleEndian, as: UInt32.self)
        w.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        w.storeBytes(of: origin.shard, toByteOffset: 5, as: UInt8.self)
        w.storeBytes(of: origin.node.littleEndian, toByteOffset: 6, as: UInt16.self)
        w.storeBytes(of: p.qos.rawValue | (p.retain ? 4 : 0), toByteOffset: 8, as: UInt8.self)
        w.storeBytes(of: UInt8(0), toByteOffset: 9, as: UInt8.self)
        w.storeBytes(of: UInt16(p.topic.count).littleEndian, toByteOffset: 10, as: UInt16.self)
        w.storeBytes(of: UInt32(p.properties.count).littleEndian, toByteOffset: 12, as: UInt32.self)
        w.storeBytes(of: UInt32(p.payload.count).littleEndian, toByteOffset: 16, as: UInt32.self)
        w.storeBytes(of: p.origin.packed.littleEndian, toByteOffset: 20, as: UInt64.self)
        var offset = headerLength + publishBodyLength
        if p.topic.count > 0 { (w + offset).copyMemory(from: p.topic.baseAddress!, byteCount: p.topic.count); offset += p.topic.count }
        if p.properties.count > 0 { (w + offset).copyMemory(from: p.properties.baseAddress!, byteCount: p.properties.count); offset += p.properties.count }
        return offset
    }

    /// The publish record of a large payload held in `shared` from `offset` to its end: the
    /// record takes one reference (released by `decodePublishShared`), the bytes are not copied.
    /// For the shards of this process only; `p.payload` must be those bytes.
    public static func encodePublishShared(_ p: ForwardedPublish, shared: SharedBytes, offset: Int, origin: ShardAddress,
                                           into buffer: inout ByteBuffer) {
        precondition(offset + p.payload.count == shared.count)
        let length = headerLength + publishBodyLength + p.topic.count + p.properties.count + 16
        let w = buffer.reserveWritable(length)
        let offsetInRecord = writePublishHead(p, kind: .publishShared, length: length, origin: origin, at: w)
        let address = UInt64(UInt(bitPattern: Unmanaged.passRetained(shared).toOpaque()))
        w.storeBytes(of: address.littleEndian, toByteOffset: offsetInRecord, as: UInt64.self)
        w.storeBytes(of: UInt64(offset).littleEndian, toByteOffset: offsetInRecord + 8, as: UInt64.self)
        buffer.commitWritten(length)
    }

    /// Decodes a `publishShared` record: its origin, the message (its payload in `shared`) and
    /// the bytes, whose reference the record held (now the caller's). A record whose fields do not
    /// add up is refused before its address is used (and the reference is then leaked: a bug of
    /// this process, counted by the caller).
    public static func decodePublishShared(_ record: UnsafeRawBufferPointer) throws(ShardRecordError)
        -> (origin: ShardAddress, message: ForwardedPublish, shared: SharedBytes) {
        var r = RecordReader(record)
        let origin = try readHeader(&r, of: record, kind: .publishShared)
        let f = try readPublishFixed(&r)
        let topic = try r.bytes(f.topicLength)
        let properties = try r.bytes(f.propertiesLength)
        let address = try r.u64()
        let offset = Int(try r.u64())
        guard r.remaining == 0, address != 0 else { throw ShardRecordError("bad shared publish body") }
        let shared = Unmanaged<SharedBytes>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(address))!).takeRetainedValue()
        guard offset + f.payloadLength == shared.count else { throw ShardRecordError("shared payload out of its bytes") }
        let payload = UnsafeRawBufferPointer(start: shared.start + offset, count: f.payloadLength)
        return (origin, ForwardedPublish(qos: f.qos, retain: f.retain, origin: f.origin, topic: topic,
                                         properties: properties, payload: payload), shared)
    }

    @inlinable @inline(__always)
    static func writePublish(_ p: ForwardedPublish, into buffer: inout ByteBuffer) {
        buffer.writeByte(p.qos.rawValue | (p.retain ? 4 : 0))
        buffer.writeByte(0)
        buffer.writeLE(UInt16(p.topic.count))
        buffer.writeLE(UInt32(p.properties.count))
        buffer.writeLE(UInt32(p.payload.count))
        buffer.writeLE(p.origin.packed)
        buffer.writeBytes(p.topic)
        buffer.writeBytes(p.properties)
        buffer.writeBytes(p.payload)
    }

    @usableFromInline
    static func writeClient(_ m: ClientMessage, into buffer: inout ByteBuffer) {
        let id = Array(m.clientID.utf8)
        var session = ByteBuffer()
        defer { session.deallocate() }
        m.session?.encode(into: &session)
        buffer.writeLE(m.connection.packed)
        buffer.writeLE(m.otherConnection.packed)
        buffer.writeByte(m.other.shard)
        buffer.writeByte(m.flags)
        buffer.writeLE(m.other.node)
        buffer.writeLE(UInt16(id.count))
        buffer.writeLE(UInt16(0))
        // A session is present (length > 0) even when empty: an empty one still says "resume".
        buffer.writeLE(m.session == nil ? UInt32(0) : UInt32(session.readableBytes))
        buffer.writeBytes(id)
        buffer.writeBytes(session.readableView)
    }

    // MARK: decoding

    /// Decodes the record `record` (exactly one record's bytes).
    @inlinable @inline(__always)
    public static func decode(_ record: UnsafeRawBufferPointer) throws(ShardRecordError) -> ShardRecord {
        var r = RecordReader(record)
        let h = try r.fixed(headerLength)
        guard Int(UInt32(littleEndian: h.loadUnaligned(as: UInt32.self))) == record.count else {
            throw ShardRecordError("length field differs from the record's")
        }
        let kindByte = h.load(fromByteOffset: 4, as: UInt8.self)
        let address = ShardAddress(node: UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 6, as: UInt16.self)),
                                   shard: Int(h.load(fromByteOffset: 5, as: UInt8.self)))
        guard let kind = ShardMessageKind(rawValue: kindByte) else { throw ShardRecordError("unknown kind \(kindByte)") }
        let message: ShardMessage
        switch kind {
        case .publish:
            message = .publish(try readPublish(&r))
        case .replayPublish:
            let p = try readPublish(&r)
            message = .replayPublish(p, filter: try r.bytes(Int(try r.u16())))
        case .sharedPublish:
            let p = try readPublish(&r)
            let member = Int(try r.u32())
            let filterLength = Int(try r.u16()), groupLength = Int(try r.u16())
            message = .sharedPublish(p, filter: try r.bytes(filterLength), group: try r.bytes(groupLength), member: member)
        case .routeAdd, .routeRemove:
            let time = try r.u64()
            let filter = try r.bytes(Int(try r.u16()))
            message = kind == .routeAdd ? .routeAdd(filter: filter, time: time) : .routeRemove(filter: filter, time: time)
        case .barrier, .barrierAck:
            let token = try r.u32()
            message = kind == .barrier ? .barrier(token: token) : .barrierAck(token: token)
        case .storeBarrier, .storeBarrierAck:
            let token = try r.u64()
            message = kind == .storeBarrier ? .storeBarrier(token: token) : .storeBarrierAck(token: token)
        case .shareCount:
            let count = Int(try r.u32())
            let filterLength = Int(try r.u16()), groupLength = Int(try r.u16())
            message = .shareCount(filter: try r.bytes(filterLength), group: try r.bytes(groupLength), count: count)
        case .retain:
            guard let qos = QoS(rawValue: try r.u8()) else { throw ShardRecordError("bad QoS") }
            let stampShard = try r.u8()
            let topicLength = Int(try r.u16()), propertiesLength = Int(try r.u32()), payloadLength = Int(try r.u32())
            let stampTime = try r.u64()
            let stampNode = try r.u16()
            _ = try r.u16()
            let stamp = RetainedStamp(time: stampTime, origin: ShardAddress(node: stampNode, shard: Int(stampShard)))
            message = .retain(RetainedUpdate(qos: qos, stamp: stamp, topic: try r.bytes(topicLength),
                                             properties: try r.bytes(propertiesLength), payload: try r.bytes(payloadLength)))
        case .throttle, .unthrottle:
            let publisher = ConnectionID(packed: try r.u64())
            message = kind == .throttle ? .throttle(publisher: publisher) : .unthrottle(publisher: publisher)
        case .claim, .release, .evict, .claimed:
            message = .client(try readClient(&r, kind: ClientMessageKind(rawValue: kind.rawValue)!))
        case .publishShared:
            // Holds an address: only `decodePublishShared`, on a record from this process, reads it.
            throw ShardRecordError("a shared publish record is not decoded here")
        }
        guard r.remaining == 0 else { throw ShardRecordError("\(r.remaining) bytes after the \(kind) body") }
        return ShardRecord(origin: address, message: message)
    }

    /// The kind of the record (nil: unknown), to take the publish path without building a
    /// `ShardMessage`.
    @inlinable public static func kind(_ record: UnsafeRawBufferPointer) -> ShardMessageKind? {
        record.count >= headerLength ? ShardMessageKind(rawValue: record[4]) : nil
    }

    /// Decodes a publish record (the data path's): its origin shard and the message.
    @inlinable @inline(__always)
    public static func decodePublish(_ record: UnsafeRawBufferPointer) throws(ShardRecordError) -> (origin: ShardAddress, message: ForwardedPublish) {
        var r = RecordReader(record)
        let origin = try readHeader(&r, of: record, kind: .publish)
        let message = try readPublish(&r)
        guard r.remaining == 0 else { throw ShardRecordError("\(r.remaining) bytes after the publish body") }
        return (origin, message)
    }

    @inlinable @inline(__always)
    static func readPublish(_ r: inout RecordReader) throws(ShardRecordError) -> ForwardedPublish {
        // One check for the fixed fields, then one per variable part.
        let f = try readPublishFixed(&r)
        return ForwardedPublish(qos: f.qos, retain: f.retain, origin: f.origin, topic: try r.bytes(f.topicLength),
                                properties: try r.bytes(f.propertiesLength), payload: try r.bytes(f.payloadLength))
    }

    /// Reads the header of `record`, which must be of `kind` and as long as its length field says;
    /// returns its origin.
    @inlinable @inline(__always)
    static func readHeader(_ r: inout RecordReader, of record: UnsafeRawBufferPointer, kind: ShardMessageKind)
        throws(ShardRecordError) -> ShardAddress {
        let h = try r.fixed(headerLength)
        guard Int(UInt32(littleEndian: h.loadUnaligned(as: UInt32.self))) == record.count,
              h.load(fromByteOffset: 4, as: UInt8.self) == kind.rawValue else {
            throw ShardRecordError("not a \(kind) record of this length")
        }
        return ShardAddress(node: UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 6, as: UInt16.self)),
                            shard: Int(h.load(fromByteOffset: 5, as: UInt8.self)))
    }

    /// A publish body's fixed fields.
    @inlinable @inline(__always)
    static func readPublishFixed(_ r: inout RecordReader) throws(ShardRecordError)
        -> (qos: QoS, retain: Bool, topicLength: Int, propertiesLength: Int, payloadLength: Int, origin: ConnectionID) {
        let f = try r.fixed(publishBodyLength)
        let flags = f.load(as: UInt8.self)
        guard let qos = QoS(rawValue: flags & 3), flags & 0xF8 == 0 else { throw ShardRecordError("bad publish flags \(flags)") }
        return (qos, flags & 4 != 0,
                Int(UInt16(littleEndian: f.loadUnaligned(fromByteOffset: 2, as: UInt16.self))),
                Int(UInt32(littleEndian: f.loadUnaligned(fromByteOffset: 4, as: UInt32.self))),
                Int(UInt32(littleEndian: f.loadUnaligned(fromByteOffset: 8, as: UInt32.self))),
                ConnectionID(packed: UInt64(littleEndian: f.loadUnaligned(fromByteOffset: 12, as: UInt64.self))))
    }

    @usableFromInline
    static func readClient(_ r: inout RecordReader, kind: ClientMessageKind) throws(ShardRecordError) -> ClientMessage {
        let connection = ConnectionID(packed: try r.u64())
        let otherConnection = ConnectionID(packed: try r.u64())
        let otherShard = try r.u8()
        let flags = try r.u8()
        let otherNode = try r.u16()
        let idLength = Int(try r.u16())
        _ = try r.u16()
        let sessionLength = Int(try r.u32())
        let clientID = try r.string(idLength)
        let session = sessionLength == 0 ? nil : try SessionSnapshot(decoding: try r.bytes(sessionLength))
        return ClientMessage(kind: kind, clientID: clientID, connection: connection, otherConnection: otherConnection,
                             other: ShardAddress(node: otherNode, shard: Int(otherShard)), flags: flags, session: session)
    }
}
