// Bounds-checked reading and little-endian writing of shard records. Every field of the contract
// has an explicit width and byte order, so a record means the same in another process or on
// another node; a record that lies about its lengths is refused, never read past its end.

import ApusBase

/// A record that does not decode (truncated, a length past its end, an unknown kind).
public struct ShardRecordError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "shard record: \(message)" }
}

/// Reads fields of one record, checking each against the record's end.
@usableFromInline
struct RecordReader {
    @usableFromInline let base: UnsafeRawPointer
    @usableFromInline let end: Int
    @usableFromInline var offset: Int

    @inlinable init(_ record: UnsafeRawBufferPointer, at offset: Int = 0) {
        base = record.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
        end = record.count
        self.offset = offset
    }

    @inlinable var remaining: Int { end - offset }

    /// Inlined on the data path: the error, which builds a String, is made out of line.
    @inlinable @inline(__always) func need(_ count: Int) throws(ShardRecordError) {
        guard _fastPath(count >= 0 && count <= end - offset) else { throw truncated() }
    }

    @usableFromInline @inline(never) func truncated() -> ShardRecordError {
        ShardRecordError("truncated at byte \(offset)")
    }

    @inlinable @inline(__always) mutating func u8() throws(ShardRecordError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return base.load(fromByteOffset: offset, as: UInt8.self)
    }

    @inlinable @inline(__always) mutating func u16() throws(ShardRecordError) -> UInt16 {
        try need(2)
        defer { offset += 2 }
        return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always) mutating func u32() throws(ShardRecordError) -> UInt32 {
        try need(4)
        defer { offset += 4 }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable @inline(__always) mutating func u64() throws(ShardRecordError) -> UInt64 {
        try need(8)
        defer { offset += 8 }
        return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The start of the next `count` bytes (fixed fields the caller loads itself), checked once.
    @inlinable @inline(__always) mutating func fixed(_ count: Int) throws(ShardRecordError) -> UnsafeRawPointer {
        try need(count)
        defer { offset += count }
        return base + offset
    }

    /// The next `count` bytes, as a view into the record.
    @inlinable @inline(__always) mutating func bytes(_ count: Int) throws(ShardRecordError) -> UnsafeRawBufferPointer {
        try need(count)
        defer { offset += count }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// The next `count` bytes as UTF-8 text (client ids and filters were valid UTF-8 when they
    /// were read from a client: anything else is a damaged record).
    @inlinable mutating func string(_ count: Int) throws(ShardRecordError) -> String {
        guard let text = String(validating: try bytes(count), as: UTF8.self) else { throw ShardRecordError("text is not UTF-8") }
        return text
    }
}

extension ByteBuffer {
    @inlinable mutating func writeLE(_ value: UInt16) {
        reserveWritable(2).storeBytes(of: value.littleEndian, as: UInt16.self)
        commitWritten(2)
    }

    @inlinable mutating func writeLE(_ value: UInt32) {
        reserveWritable(4).storeBytes(of: value.littleEndian, as: UInt32.self)
        commitWritten(4)
    }

    @inlinable mutating func writeLE(_ value: UInt64) {
        reserveWritable(8).storeBytes(of: value.littleEndian, as: UInt64.self)
        commitWritten(8)
    }

    /// Overwrites 4 bytes at `offset` from the reader index (a record's length, once known).
    @inlinable mutating func patchLE(_ value: UInt32, atReadableOffset offset: Int) {
        (base! + readerIndex + offset).storeBytes(of: value.littleEndian, as: UInt32.self)
    }
}
