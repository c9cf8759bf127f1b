// PBKDF2 (RFC 8018) with HMAC as the PRF: mosquitto_passwd hashes (SHA-512, 101 iterations)
// and SCRAM salted passwords (SHA-256, 4096 iterations).

/// PBKDF2 with HMAC over `H` as the pseudorandom function.
///
/// ```swift
/// let key = PBKDF2<SHA512>.derive(password: Array("secret".utf8), salt: salt, iterations: 101, keyLength: 64)
/// ```
public enum PBKDF2<H: HashFunction> {
    /// Derives `keyLength` bytes from `password` and `salt` with `iterations` rounds (at least 1).
    @inlinable
    public static func derive(password: [UInt8], salt: [UInt8], iterations: Int, keyLength: Int) -> [UInt8] {
        precondition(iterations >= 1, "PBKDF2 needs at least one iteration")
        precondition(keyLength >= 0, "PBKDF2 key length must not be negative")
        let prf = HMACKey<H>(key: password)
        let digestSize = H.digestSize
        var derived: [UInt8] = []
        derived.reserveCapacity(keyLength)
        var u = [UInt8](repeating: 0, count: digestSize)
        var t = u
        var blockIndex: UInt32 = 1

        while derived.count < keyLength {
            // U_1 = PRF(P, S || INT(i)); the rest chain each U through the PRF in place.
            let first = salt + [UInt8(truncatingIfNeeded: blockIndex >> 24), UInt8(truncatingIfNeeded: blockIndex >> 16),
                                UInt8(truncatingIfNeeded: blockIndex >> 8), UInt8(truncatingIfNeeded: blockIndex)]
            u.withUnsafeMutableBytes { u in
                t.withUnsafeMutableBytes { t in
                    first.withUnsafeBytes { prf.authenticate($0, into: u) }
                    t.copyMemory(from: UnsafeRawBufferPointer(u))
                    for _ in 1..<iterations {
                        prf.authenticate(UnsafeRawBufferPointer(u), into: u)
                        for j in 0..<digestSize { t[j] ^= u[j] }
                    }
                }
            }
            derived.append(contentsOf: t.prefix(keyLength - derived.count))
            blockIndex &+= 1
        }
        return derived
    }
}
