// SHA-1 (FIPS 180-4): only for the WebSocket handshake (RFC 6455's Sec-WebSocket-Accept), where
// it is a fixed part of the protocol, not a security measure. Nothing else in Apus uses it.

/// SHA-1: 64-byte blocks, 20-byte digests.
public enum SHA1: HashFunction {
    public typealias Hasher = SHA1Hasher
}

/// An incremental SHA-1 computation (a value type with no heap storage).
public struct SHA1Hasher: IncrementalHasher {
    public static var blockSize: Int { 64 }
    public static var digestSize: Int { 20 }

    private var engine = MerkleDamgard<SHA1Compression>()

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        engine.update(bytes)
    }

    public mutating func finalize(into digest: UnsafeMutableRawBufferPointer) {
        engine.finalize(into: digest)
    }
}

struct SHA1Compression: BlockCompression {
    static var blockByteCount: Int { 64 }
    static var lengthByteCount: Int { 8 }
    static var digestByteCount: Int { 20 }

    private var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)

    init() {}

    mutating func compress(_ blocks: UnsafeRawBufferPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
            var offset = 0
            while offset < blocks.count {
                for t in 0..<16 {
                    w[t] = UInt32(bigEndian: blocks.loadUnaligned(fromByteOffset: offset + 4 * t, as: UInt32.self))
                }
                for t in 16..<80 { w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1) }
                var (a, b, c, d, e) = h
                for t in 0..<80 {
                    let f: UInt32
                    let k: UInt32
                    switch t {
                    case 0..<20: f = (b & c) | (~b & d); k = 0x5A82_7999
                    case 20..<40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                    case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                    default: f = b ^ c ^ d; k = 0xCA62_C1D6
                    }
                    let temp = rotl(a, 5) &+ f &+ e &+ k &+ w[t]
                    e = d; d = c; c = rotl(b, 30); b = a; a = temp
                }
                h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
                offset += 64
            }
        }
    }

    func writeDigest(to digest: UnsafeMutableRawBufferPointer) {
        withUnsafeBytes(of: h) { words in
            for i in 0..<5 {
                let word = words.load(fromByteOffset: 4 * i, as: UInt32.self)
                digest.storeBytes(of: word.bigEndian, toByteOffset: 4 * i, as: UInt32.self)
            }
        }
    }
}

@inline(__always)
private func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 {
    (x << n) | (x >> (32 - n))
}
