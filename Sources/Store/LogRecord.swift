// The store's record frame. A shard's log is a sequence of records, each
//
//     u32 body length | u32 CRC-32C of the rest | u8 type | u8 0 | u16 0 | u64 sequence | body
//
// little-endian, 20 bytes of header. The CRC covers type, sequence and body and starts from the
// segment's salt (a random number in its first record, whose own CRC starts from 0), so a record
// that was torn (a short write before a crash), overwritten or bit-rotted is recognised, and a
// frame a client hid in a payload cannot pass for a record when the scan looks for the next one
// after damage. The sequence numbers of one shard's log only grow. Bodies are typed records (StoreRecords.swift); a reader
// skips types it does not know, so a newer writer's additions do not stop an older reader.

import ApusBase

public enum LogRecord {
    public static let headerSize = 20
    /// A body longer than this is taken as a corrupt length (the largest record is one retained
    /// message or one session: far below).
    public static let maximumBodySize = 1 << 28

    /// Appends one record to `buffer`; `body` writes the body and returns nothing.
    @inlinable
    public static func append(type: UInt8, sequence: UInt64, salt: UInt32 = 0, bodySize: Int, into buffer: inout ByteBuffer,
                              body: (UnsafeMutableRawPointer) -> Void) {
        let p = buffer.reserveWritable(headerSize + bodySize)
        p.storeBytes(of: UInt32(bodySize).littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: type, toByteOffset: 8, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 9, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        p.storeBytes(of: sequence.littleEndian, toByteOffset: 12, as: UInt64.self)
        body(p + headerSize)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: p + 8, count: headerSize - 8 + bodySize), continuing: salt)
        p.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.commitWritten(headerSize + bodySize)
    }

    /// The record at `offset` of `bytes` if a whole, intact one is there (its CRC started from
    /// `salt`; with `knownTypes`, only a record of a type this version writes).
    public static func record(in bytes: UnsafeRawBufferPointer, at offset: Int, salt: UInt32 = 0,
                              knownTypes: Bool = false) -> StoredRecord? {
        guard offset >= 0, bytes.count - offset >= headerSize, let base = bytes.baseAddress else { return nil }
        let p = base + offset
        let length = Int(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
        guard length <= maximumBodySize, length <= bytes.count - offset - headerSize,
              p.load(fromByteOffset: 9, as: UInt8.self) == 0,
              p.loadUnaligned(fromByteOffset: 10, as: UInt16.self) == 0 else { return nil }
        if knownTypes && StoreRecordType(rawValue: p.load(fromByteOffset: 8, as: UInt8.self)) == nil { return nil }
        let crc = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(start: p + 8, count: headerSize - 8 + length), continuing: salt) == crc else { return nil }
        return StoredRecord(type: p.load(fromByteOffset: 8, as: UInt8.self),
                            sequence: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt64.self)),
                            offset: offset,
                            body: UnsafeRawBufferPointer(start: p + headerSize, count: length))
    }
}

/// One intact record of a log (its body points into the scanned bytes).
public struct StoredRecord {
    public var type: UInt8
    public var sequence: UInt64
    /// Where its header starts in the scanned bytes.
    public var offset: Int
    public var body: UnsafeRawBufferPointer
    public var size: Int { LogRecord.headerSize + body.count }
}

/// What a scan of one log file found besides its intact records.
public struct LogScan: Equatable, Sendable {
    /// Bytes up to the end of the last intact record: a torn tail after it is cut here.
    public var validEnd: Int
    /// Damaged stretches that intact records follow (start, length): skipped, and logged.
    public var skipped: [Range<Int>]
    /// Intact records whose sequence did not grow (a record written twice, or two logs mixed).
    public var outOfOrder: Int
    public var records: Int

    /// The bytes after `validEnd` (a torn or half-written tail).
    public func tornBytes(fileSize: Int) -> Int { fileSize - validEnd }
}

extension LogRecord {
    /// Walks the records of `bytes` in order, calling `visit` for each intact one; the first
    /// record's CRC starts from 0, the others' from `salt`. A stretch that is not a record is
    /// skipped up to the next intact record of a known type (found by trying each following
    /// offset: the salted CRC makes a false match a 1 in 2³² event); if none follows, it is the
    /// torn tail.
    public static func scan(_ bytes: UnsafeRawBufferPointer, salt: UInt32 = 0, visit: (StoredRecord) -> Void) -> LogScan {
        var result = LogScan(validEnd: 0, skipped: [], outOfOrder: 0, records: 0)
        var offset = 0
        var lastSequence: UInt64? = nil
        while offset < bytes.count {
            if let r = record(in: bytes, at: offset, salt: offset == 0 ? 0 : salt) {
                if let last = lastSequence, r.sequence <= last { result.outOfOrder += 1 }
                lastSequence = r.sequence
                visit(r)
                result.records += 1
                offset += r.size
                result.validEnd = offset
                continue
            }
            var next = offset + 1
            while next + headerSize <= bytes.count && record(in: bytes, at: next, salt: salt, knownTypes: true) == nil { next += 1 }
            guard next + headerSize <= bytes.count else { break }  // nothing intact follows: the tail
            result.skipped.append(offset..<next)
            offset = next
        }
        return result
    }
}
