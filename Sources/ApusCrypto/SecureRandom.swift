// Random bytes for salts and SCRAM server nonces, from the system CSPRNG.

/// Cryptographically secure random bytes from `SystemRandomNumberGenerator` (getrandom on Linux).
public enum SecureRandom {
    /// `count` random bytes.
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "negative byte count")
        var generator = SystemRandomNumberGenerator()
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var i = 0
            while i < count {
                let word = generator.next()
                let take = min(8, count - i)
                withUnsafeBytes(of: word) { bytes in
                    for j in 0..<take { buffer[i + j] = bytes[j] }
                }
                i += take
            }
            initialized = count
        }
    }
}
