// FNV-1a (64-bit): the one hash Apus uses where it needs a fast, stable, non-cryptographic hash of
// bytes — trie levels, a client id's home shard, hash_clientid shared groups. Stable across runs
// and processes (unlike Swift's seeded Hasher), which the shard placement of client ids relies on.

/// FNV-1a, 64 bits (http://www.isthe.com/chongo/tech/comp/fnv/).
public enum FNV1a {
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// The hash of `bytes[start..<end]`.
    @inlinable public static func hash(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> UInt64 {
        var h = offsetBasis
        var i = start
        while i < end {
            h = (h ^ UInt64(bytes[i])) &* prime
            i += 1
        }
        return h
    }

    /// The hash of a sequence of bytes (a string's UTF-8, an array).
    @inlinable public static func hash<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h = offsetBasis
        for byte in bytes { h = (h ^ UInt64(byte)) &* prime }
        return h
    }
}
