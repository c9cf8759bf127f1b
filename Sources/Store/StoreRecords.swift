// The typed records of a shard's log. Each is one frame (LogRecord.swift); bodies are little-endian
// with explicit widths. A segment starts with `segmentStart` and a snapshot of the shard's state
// (the records its state is made of), closed by `snapshotEnd`; what the shard changes afterwards is
// appended. Recovery takes the newest segment whose snapshot is complete and what follows it.

import ApusBase

public enum StoreRecordType: UInt8, Sendable {
    /// u16 format version, u16 shard, u16 shard count, u16 0, u64 segment number, u64 wall time,
    /// u32 salt (what the CRCs of the segment's other records start from), u32 0. Its own CRC
    /// starts from 0.
    case segmentStart = 1
    /// u64 number of records in the snapshot.
    case snapshotEnd = 2
    /// u64 wall time (ns since the epoch), u16 origin node, u8 origin shard, u8 QoS, u32 topic
    /// length, u32 properties length, u32 payload length; topic, properties, payload.
    case retainedSet = 16
    /// u64 wall time, u16 origin node, u8 origin shard, u8 0, u32 topic length; topic.
    case retainedDelete = 17
    /// Persistent sessions (SessionRecords.swift).
    case sessionImage = 32
    case sessionState = 33
    case sessionEnd = 34
    case qos2Received = 35
    case messageAdd = 36
    case messageState = 37
    case messageDone = 38
}

public enum StoreFormat {
    public static let version: UInt16 = 1
}

/// A segment's first record.
public struct SegmentStart: Equatable, Sendable {
    public var shard: UInt16
    public var shardCount: UInt16
    public var segment: UInt64
    public var wallTime: UInt64
    public var salt: UInt32

    public init(shard: UInt16, shardCount: UInt16, segment: UInt64, wallTime: UInt64, salt: UInt32) {
        self.shard = shard; self.shardCount = shardCount; self.segment = segment; self.wallTime = wallTime; self.salt = salt
    }

    public func append(sequence: UInt64, into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.segmentStart.rawValue, sequence: sequence, bodySize: 32, into: &buffer) { p in
            p.storeBytes(of: StoreFormat.version.littleEndian, toByteOffset: 0, as: UInt16.self)
            p.storeBytes(of: shard.littleEndian, toByteOffset: 2, as: UInt16.self)
            p.storeBytes(of: shardCount.littleEndian, toByteOffset: 4, as: UInt16.self)
            p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
            p.storeBytes(of: segment.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: wallTime.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: salt.littleEndian, toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: UInt32(0), toByteOffset: 28, as: UInt32.self)
        }
    }

    public init?(_ record: StoredRecord) {
        guard record.type == StoreRecordType.segmentStart.rawValue, record.body.count >= 32 else { return nil }
        var r = BodyReader(record.body)
        guard r.u16() == StoreFormat.version else { return nil }
        shard = r.u16(); shardCount = r.u16(); _ = r.u16()
        segment = r.u64(); wallTime = r.u64(); salt = r.u32()
    }
}

public enum SnapshotEnd {
    public static func append(records: UInt64, sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.snapshotEnd.rawValue, sequence: sequence, salt: salt, bodySize: 8, into: &buffer) { p in
            p.storeBytes(of: records.littleEndian, toByteOffset: 0, as: UInt64.self)
        }
    }
}

/// A retained message or its deletion, as stored: owned bytes, the wall-clock stamp of when and
/// where it was published (later stamps win, as between the shards' replicas).
public struct RetainedRecord: Equatable, Sendable {
    public var wallTime: UInt64
    public var node: UInt16
    public var shard: UInt8
    public var qos: UInt8
    public var topic: [UInt8]
    public var properties: [UInt8]
    /// Empty: a deletion.
    public var payload: [UInt8]

    public init(wallTime: UInt64, node: UInt16, shard: UInt8, qos: UInt8, topic: [UInt8], properties: [UInt8], payload: [UInt8]) {
        self.wallTime = wallTime; self.node = node; self.shard = shard; self.qos = qos
        self.topic = topic; self.properties = properties; self.payload = payload
    }

    public var isDeletion: Bool { payload.isEmpty }

    /// Whether this record's stamp is later than `other`'s (time, then node, then shard).
    public func isNewer(than other: RetainedRecord) -> Bool {
        (wallTime, node, shard) > (other.wallTime, other.node, other.shard)
    }

    /// Appends a set (payload non-empty) or delete record from borrowed bytes.
    public static func append(wallTime: UInt64, node: UInt16, shard: UInt8, qos: UInt8, topic: UnsafeRawBufferPointer,
                              properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                              sequence: UInt64, salt: UInt32 = 0, into buffer: inout ByteBuffer) {
        if payload.isEmpty {
            LogRecord.append(type: StoreRecordType.retainedDelete.rawValue, sequence: sequence, salt: salt, bodySize: 16 + topic.count, into: &buffer) { p in
                p.storeBytes(of: wallTime.littleEndian, toByteOffset: 0, as: UInt64.self)
                p.storeBytes(of: node.littleEndian, toByteOffset: 8, as: UInt16.self)
                p.storeBytes(of: shard, toByteOffset: 10, as: UInt8.self)
                p.storeBytes(of: 0, toByteOffset: 11, as: UInt8.self)
                p.storeBytes(of: UInt32(topic.count).littleEndian, toByteOffset: 12, as: UInt32.self)
                if let t = topic.baseAddress { (p + 16).copyMemory(from: t, byteCount: topic.count) }
            }
            return
        }
        let size = 24 + topic.count + properties.count + payload.count
        LogRecord.append(type: StoreRecordType.retainedSet.rawValue, sequence: sequence, salt: salt, bodySize: size, into: &buffer) { p in
            p.storeBytes(of: wallTime.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: node.littleEndian, toByteOffset: 8, as: UInt16.self)
            p.storeBytes(of: shard, toByteOffset: 10, as: UInt8.self)
            p.storeBytes(of: qos, toByteOffset: 11, as: UInt8.self)
            p.storeBytes(of: UInt32(topic.count).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: UInt32(properties.count).littleEndian, toByteOffset: 16, as: UInt32.self)
            p.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 20, as: UInt32.self)
            if let b = topic.baseAddress { (p + 24).copyMemory(from: b, byteCount: topic.count) }
            if let b = properties.baseAddress { (p + 24 + topic.count).copyMemory(from: b, byteCount: properties.count) }
            if let b = payload.baseAddress { (p + 24 + topic.count + properties.count).copyMemory(from: b, byteCount: payload.count) }
        }
    }

    public func append(sequence: UInt64, salt: UInt32 = 0, into buffer: inout ByteBuffer) {
        topic.withUnsafeBytes { t in
            properties.withUnsafeBytes { pr in
                payload.withUnsafeBytes { pl in
                    Self.append(wallTime: wallTime, node: node, shard: shard, qos: qos, topic: t, properties: pr, payload: pl,
                                sequence: sequence, salt: salt, into: &buffer)
                }
            }
        }
    }

    /// Decodes a retainedSet / retainedDelete record; nil for another type or a body that lies
    /// about its lengths.
    public init?(_ record: StoredRecord) {
        var r = BodyReader(record.body)
        switch record.type {
        case StoreRecordType.retainedSet.rawValue:
            guard record.body.count >= 24 else { return nil }
            wallTime = r.u64(); node = r.u16(); shard = r.u8(); qos = r.u8()
            let t = Int(r.u32()), pr = Int(r.u32()), pl = Int(r.u32())
            guard t + pr + pl == record.body.count - 24, pl > 0 else { return nil }
            topic = r.bytes(t); properties = r.bytes(pr); payload = r.bytes(pl)
        case StoreRecordType.retainedDelete.rawValue:
            guard record.body.count >= 16 else { return nil }
            wallTime = r.u64(); node = r.u16(); shard = r.u8(); _ = r.u8()
            let t = Int(r.u32())
            guard t == record.body.count - 16 else { return nil }
            qos = 0; topic = r.bytes(t); properties = []; payload = []
        default:
            return nil
        }
    }
}

/// Reads little-endian fields of a body whose size the caller checked.
struct BodyReader {
    let body: UnsafeRawBufferPointer
    var offset = 0
    init(_ body: UnsafeRawBufferPointer) { self.body = body }
    mutating func u8() -> UInt8 { defer { offset += 1 }; return body.load(fromByteOffset: offset, as: UInt8.self) }
    mutating func u16() -> UInt16 { defer { offset += 2 }; return UInt16(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    mutating func u32() -> UInt32 { defer { offset += 4 }; return UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    mutating func u64() -> UInt64 { defer { offset += 8 }; return UInt64(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    mutating func bytes(_ n: Int) -> [UInt8] { defer { offset += n }; return Array(body[offset..<offset + n]) }
}
