// The two protocols HMAC and PBKDF2 are generic over: a hash function and its incremental hasher.

/// A cryptographic hash function with a fixed block and digest size, such as ``SHA256`` or ``SHA512``.
///
/// HMAC and PBKDF2 take the function as a generic parameter (`HMAC<SHA256>`), so each use is
/// specialized for one concrete hasher rather than going through an existential.
public protocol HashFunction {
    /// The incremental hasher that computes this function.
    associatedtype Hasher: IncrementalHasher
}

extension HashFunction {
    /// The size in bytes of the blocks the compression function consumes (the HMAC key block size).
    @inlinable public static var blockSize: Int { Hasher.blockSize }

    /// The size in bytes of a digest.
    @inlinable public static var digestSize: Int { Hasher.digestSize }

    /// The digest of `data` in one call.
    ///
    /// ```swift
    /// let digest = SHA256.hash(Array("abc".utf8))   // 32 bytes
    /// ```
    @inlinable
    public static func hash<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var hasher = Hasher()
        hasher.update(data)
        return hasher.finalize()
    }
}

/// A hash computed over input fed in pieces: `init()`, any number of `update`, then `finalize`.
///
/// Conforming types are plain values with no heap storage, so copying one (to reuse a state that
/// has already absorbed a prefix, as HMAC does with its padded keys) costs a few dozen bytes.
public protocol IncrementalHasher: Sendable {
    /// The size in bytes of the blocks the compression function consumes.
    static var blockSize: Int { get }

    /// The size in bytes of a digest.
    static var digestSize: Int { get }

    /// An empty hasher.
    init()

    /// Absorbs `bytes`.
    mutating func update(_ bytes: UnsafeRawBufferPointer)

    /// Writes the digest of everything absorbed into the first ``digestSize`` bytes of `digest`
    /// and resets the hasher to empty. `digest` may be memory previously passed to `update`.
    mutating func finalize(into digest: UnsafeMutableRawBufferPointer)
}

extension IncrementalHasher {
    /// Absorbs the bytes of `c`.
    @inlinable
    public mutating func update<C: Collection>(_ c: C) where C.Element == UInt8 {
        let done: Void? = c.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil {
            Array(c).withUnsafeBytes { update($0) }
        }
    }

    /// The digest of everything absorbed; resets the hasher to empty.
    @inlinable
    public mutating func finalize() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.digestSize) { buffer, initialized in
            finalize(into: UnsafeMutableRawBufferPointer(buffer))
            initialized = Self.digestSize
        }
    }
}
