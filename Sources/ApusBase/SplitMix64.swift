// A small, fast, seedable random number generator (SplitMix64, Steele, Lea and Flood 2014): the
// core draws its randomness (random shared-group members, nonces of assigned client ids) from one
// it is handed, so that a test can seed it and get the same run twice. Not for secrets: those
// come from ApusCrypto's SecureRandom.

/// SplitMix64: a 64-bit state, one add and three xor-shift-multiplies per number.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// Seeded from the system's generator (a different sequence each run).
    public static func seededBySystem() -> SplitMix64 {
        var system = SystemRandomNumberGenerator()
        return SplitMix64(seed: system.next())
    }

    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
