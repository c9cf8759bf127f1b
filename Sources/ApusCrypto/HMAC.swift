// HMAC (RFC 2104): the keyed hash behind SCRAM and PBKDF2.

/// HMAC over the hash function `H`.
///
/// ```swift
/// let mac = HMAC<SHA256>.authenticate(key: saltedPassword, message: Array("Client Key".utf8))
/// ```
public enum HMAC<H: HashFunction> {
    /// The HMAC of `message` under `key`; `H.digestSize` bytes. Keys longer than a block are hashed first.
    @inlinable
    public static func authenticate(key: [UInt8], message: [UInt8]) -> [UInt8] {
        let prf = HMACKey<H>(key: key)
        return message.withUnsafeBytes { message in
            [UInt8](unsafeUninitializedCapacity: H.digestSize) { buffer, initialized in
                prf.authenticate(message, into: UnsafeMutableRawBufferPointer(buffer))
                initialized = H.digestSize
            }
        }
    }
}

/// A key prepared for HMAC: the hasher states after absorbing the inner and outer padded key
/// blocks. Computing a MAC copies both and absorbs only the message and the inner digest, which
/// is what keeps PBKDF2 at two compressions of message data per iteration instead of four.
@usableFromInline
struct HMACKey<H: HashFunction> {
    @usableFromInline let inner: H.Hasher
    @usableFromInline let outer: H.Hasher

    @inlinable
    init(key: [UInt8]) {
        var block = key.count > H.blockSize ? H.hash(key) : key
        block.append(contentsOf: repeatElement(0, count: H.blockSize - block.count))
        var inner = H.Hasher()
        inner.update(block.map { $0 ^ 0x36 })
        var outer = H.Hasher()
        outer.update(block.map { $0 ^ 0x5c })
        self.inner = inner
        self.outer = outer
    }

    /// Writes the MAC of `message` into the first `H.digestSize` bytes of `digest`.
    /// `message` and `digest` may be the same memory.
    @inlinable
    func authenticate(_ message: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer) {
        var hasher = inner
        hasher.update(message)
        hasher.finalize(into: digest)
        let innerDigest = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(digest)[0..<H.digestSize])
        hasher = outer
        hasher.update(innerDigest)
        hasher.finalize(into: digest)
    }
}
