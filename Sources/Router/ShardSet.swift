// A set of shard indexes as a 64-bit mask: which shards have subscribers on a filter.

/// A set of shard indexes 0..<64.
public struct ShardSet: Hashable, Sendable, Sequence {
    public var rawValue: UInt64

    @inlinable public init(rawValue: UInt64 = 0) { self.rawValue = rawValue }
    @inlinable public static var empty: ShardSet { ShardSet() }
    @inlinable public var isEmpty: Bool { rawValue == 0 }
    @inlinable public var count: Int { rawValue.nonzeroBitCount }
    @inlinable public func contains(_ shard: Int) -> Bool { rawValue & (1 << UInt64(shard)) != 0 }
    @inlinable public mutating func insert(_ shard: Int) {
        precondition(shard >= 0 && shard < 64)
        rawValue |= 1 << UInt64(shard)
    }
    @inlinable public mutating func remove(_ shard: Int) {
        precondition(shard >= 0 && shard < 64)
        rawValue &= ~(1 << UInt64(shard))
    }
    @inlinable public mutating func formUnion(_ other: ShardSet) { rawValue |= other.rawValue }

    /// Yields the shard indexes in ascending order.
    public struct Iterator: IteratorProtocol {
        @usableFromInline var remaining: UInt64
        @inlinable init(_ bits: UInt64) { remaining = bits }
        @inlinable public mutating func next() -> Int? {
            guard remaining != 0 else { return nil }
            let index = remaining.trailingZeroBitCount
            remaining &= remaining - 1
            return index
        }
    }
    @inlinable public func makeIterator() -> Iterator { Iterator(rawValue) }
}
