// An immutable, reference-counted run of bytes: a large message's payload held once by every
// session it goes to (and by the decoder's frame it arrived in), instead of one copy each.

/// Immutable bytes shared by reference. Written once when made (a copy, or an allocation
/// adopted from a ByteBuffer), never after: any thread may read them while it holds a reference.
public final class SharedBytes: @unchecked Sendable {
    /// The start of the allocation this object frees.
    @usableFromInline let allocation: UnsafeMutableRawPointer
    /// The bytes: `count` of them from `start`, inside the allocation.
    public let start: UnsafeRawPointer
    public let count: Int

    /// A copy of `bytes`.
    public init(copying bytes: UnsafeRawBufferPointer) {
        allocation = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(bytes.count, 1), alignment: 16)
        if let b = bytes.baseAddress { allocation.copyMemory(from: b, byteCount: bytes.count) }
        start = UnsafeRawPointer(allocation)
        count = bytes.count
    }

    /// Takes over a buffer's allocation (the caller forgets it): its readable bytes are the bytes.
    public init(adopting buffer: ByteBuffer) {
        allocation = buffer.base!
        start = UnsafeRawPointer(allocation + buffer.readerIndex)
        count = buffer.readableBytes
    }

    deinit { allocation.deallocate() }

    @inlinable public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: start, count: count) }

    /// Whether `pointer` points into these bytes (a payload decoded from them).
    @inlinable public func contains(_ part: UnsafeRawBufferPointer) -> Bool {
        guard let p = part.baseAddress else { return false }
        return p >= start && p + part.count <= start + count
    }
}
