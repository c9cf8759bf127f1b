// A growable byte buffer with manual memory: the encoder's output and the broker's per-connection
// outbound queue. It is a struct over a raw allocation so that tables of connections can hold it
// without reference counting on the hot path.
//
// Ownership: exactly one owner holds a ByteBuffer; copies alias the same memory. The owner calls
// `deallocate()` once when done. Readable bytes are `[readerIndex, writerIndex)`.

/// A growable byte buffer over manually managed memory (see the file comment for ownership).
public struct ByteBuffer: @unchecked Sendable {
    @usableFromInline var _base: UnsafeMutableRawPointer?
    @usableFromInline var _capacity: Int
    /// The start of the allocation (nil before the first write).
    @inlinable public var base: UnsafeMutableRawPointer? { _base }
    /// Bytes allocated.
    @inlinable public var capacity: Int { _capacity }
    public var readerIndex: Int
    public var writerIndex: Int

    /// An empty buffer that allocates on first write.
    @inlinable public init() { _base = nil; _capacity = 0; readerIndex = 0; writerIndex = 0 }

    /// A buffer with `capacity` bytes allocated up front.
    @inlinable public init(capacity: Int) {
        self.init()
        if capacity > 0 { reserveCapacity(capacity) }
    }

    /// Number of bytes written and not yet consumed.
    @inlinable public var readableBytes: Int { writerIndex - readerIndex }
    @inlinable public var isEmpty: Bool { writerIndex == readerIndex }

    /// The readable bytes. Valid until the next mutating call.
    @inlinable public var readableView: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base.map { $0 + readerIndex }, count: readableBytes)
    }

    /// Frees the memory. The buffer is empty afterwards and may be reused.
    @inlinable public mutating func deallocate() {
        base?.deallocate()
        self = ByteBuffer()
    }

    /// Forgets all bytes, keeping the allocation.
    @inlinable public mutating func clear() { readerIndex = 0; writerIndex = 0 }

    /// Marks `count` readable bytes as consumed.
    @inlinable public mutating func moveReaderIndex(forwardBy count: Int) {
        precondition(count <= readableBytes)
        readerIndex += count
        if readerIndex == writerIndex { readerIndex = 0; writerIndex = 0 }
    }

    /// Ensures `count` more bytes can be written without reallocating; returns the write pointer.
    @inlinable @discardableResult
    public mutating func reserveWritable(_ count: Int) -> UnsafeMutableRawPointer {
        if capacity - writerIndex < count { makeRoom(count) }
        return base.unsafelyUnwrapped + writerIndex
    }

    @usableFromInline @inline(never) mutating func makeRoom(_ count: Int) {
        // Compact first: consumed bytes at the front are reclaimed before growing.
        if readerIndex > 0 {
            let live = readableBytes
            if live > 0 { _base!.copyMemory(from: _base! + readerIndex, byteCount: live) }
            readerIndex = 0
            writerIndex = live
            if capacity - writerIndex >= count { return }
        }
        // The first allocation is small: most connections' first write is a CONNACK, and an idle
        // connection should not hold 256 bytes for it; busy buffers double to their size quickly.
        reserveCapacity(Swift.max(capacity * 2, writerIndex + count, 64))
    }

    /// Grows the allocation to at least `newCapacity` bytes.
    @inlinable public mutating func reserveCapacity(_ newCapacity: Int) {
        guard newCapacity > capacity else { return }
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        if let old = base {
            if writerIndex > readerIndex {
                fresh.copyMemory(from: old + readerIndex, byteCount: writerIndex - readerIndex)
            }
            old.deallocate()
        }
        writerIndex -= readerIndex
        readerIndex = 0
        _base = fresh
        _capacity = newCapacity
    }

    /// Forgets all bytes and leaves `headroom` bytes free before the next write (when the buffer
    /// has the room), so that a header can be put in front of what is written next without
    /// moving it (`prependRoom`).
    @inlinable public mutating func clear(leavingHeadroom headroom: Int) {
        let room = capacity >= 4 * headroom ? headroom : 0
        readerIndex = room
        writerIndex = room
    }

    /// `count` bytes of room just before the readable bytes, which then begin there; returns
    /// them. In place when the buffer has that much headroom (see `clear(leavingHeadroom:)`);
    /// otherwise the readable bytes move up by `count`.
    public mutating func prependRoom(_ count: Int) -> UnsafeMutableRawPointer {
        if readerIndex >= count {
            readerIndex -= count
            return base.unsafelyUnwrapped + readerIndex
        }
        let live = readableBytes
        reserveWritable(count)  // may move the readable bytes to the front
        let start = base.unsafelyUnwrapped + readerIndex
        if live > 0 { (start + count).copyMemory(from: start, byteCount: live) }  // memmove: the ranges overlap
        writerIndex += count
        return start
    }

    /// Records that `count` bytes were written at the pointer `reserveWritable` returned.
    @inlinable public mutating func commitWritten(_ count: Int) {
        precondition(writerIndex + count <= capacity)
        writerIndex += count
    }

    @inlinable public mutating func writeByte(_ value: UInt8) {
        reserveWritable(1).storeBytes(of: value, as: UInt8.self)
        writerIndex += 1
    }

    @inlinable public mutating func writeUInt16(_ value: UInt16) {
        let p = reserveWritable(2)
        p.storeBytes(of: UInt8(truncatingIfNeeded: value >> 8), as: UInt8.self)
        (p + 1).storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        writerIndex += 2
    }

    @inlinable public mutating func writeUInt32(_ value: UInt32) {
        let p = reserveWritable(4)
        p.storeBytes(of: value.bigEndian, as: UInt32.self)
        writerIndex += 4
    }

    /// Writes an MQTT variable byte integer (1-4 bytes, value < 268,435,456).
    @inlinable public mutating func writeVariableByteInteger(_ value: Int) {
        precondition(value >= 0 && value < 268_435_456)
        var v = value
        repeat {
            var byte = UInt8(v & 0x7F)
            v >>= 7
            if v > 0 { byte |= 0x80 }
            writeByte(byte)
        } while v > 0
    }

    @inlinable public mutating func writeBytes(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let p = reserveWritable(bytes.count)
        p.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writerIndex += bytes.count
    }

    @inlinable public mutating func writeBytes(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { writeBytes($0) }
    }

    /// Writes a two-byte length followed by the bytes (MQTT binary data / UTF-8 string).
    @inlinable public mutating func writeLengthPrefixed(_ bytes: UnsafeRawBufferPointer) {
        writeUInt16(UInt16(truncatingIfNeeded: bytes.count))
        writeBytes(bytes)
    }

    @inlinable public mutating func writeString(_ string: String) {
        var s = string
        s.withUTF8 { writeLengthPrefixed(UnsafeRawBufferPointer($0)) }
    }

    /// A copy of the readable bytes as an array (tests and cold paths).
    public func readableArray() -> [UInt8] { Array(readableView) }
}

/// The number of bytes `value` takes as a variable byte integer.
@inlinable public func variableByteIntegerLength(_ value: Int) -> Int {
    value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4
}
