// Base64 (RFC 4648 section 4): the encoding of salts and hashes in mosquitto password files and
// of every binary field in SCRAM messages.

/// Base64 with the standard alphabet and `=` padding.
///
/// ```swift
/// Base64.encode(Array("foo".utf8))   // "Zm9v"
/// Base64.decode("Zm9v")              // [0x66, 0x6f, 0x6f]
/// Base64.decode("Zm9")               // nil
/// ```
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let pad = UInt8(ascii: "=")

    /// `bytes` as padded Base64.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18)])
            out.append(alphabet[Int(n >> 12 & 0x3f)])
            out.append(alphabet[Int(n >> 6 & 0x3f)])
            out.append(alphabet[Int(n & 0x3f)])
            i += 3
        }
        switch bytes.count - i {
        case 1:
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18)])
            out.append(alphabet[Int(n >> 12 & 0x3f)])
            out.append(pad)
            out.append(pad)
        case 2:
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18)])
            out.append(alphabet[Int(n >> 12 & 0x3f)])
            out.append(alphabet[Int(n >> 6 & 0x3f)])
            out.append(pad)
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes `string` encodes, or nil unless it is canonical padded Base64: length a multiple
    /// of four, only alphabet characters, `=` only as the last one or two, and zero bits in the
    /// part of the last character that padding discards. Whitespace is not accepted.
    public static func decode(_ string: String) -> [UInt8]? {
        let input = Array(string.utf8)
        guard input.count % 4 == 0 else { return nil }
        guard !input.isEmpty else { return [] }
        let padding = input[input.count - 1] != pad ? 0 : input[input.count - 2] != pad ? 1 : 2

        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3 - padding)
        var i = 0
        while i < input.count {
            let isLast = i + 4 == input.count
            let used = isLast ? 4 - padding : 4
            var n: UInt32 = 0
            for j in 0..<4 {
                n <<= 6
                guard j < used else { continue }
                guard let value = sextet(input[i + j]) else { return nil }
                n |= value
            }
            out.append(UInt8(truncatingIfNeeded: n >> 16))
            if used >= 3 { out.append(UInt8(truncatingIfNeeded: n >> 8)) }
            if used == 4 { out.append(UInt8(truncatingIfNeeded: n)) }
            // Bits that would fall into the dropped bytes must be zero, so each byte string has one encoding.
            if used == 3, n & 0xff != 0 { return nil }
            if used == 2, n & 0xffff != 0 { return nil }
            i += 4
        }
        return out
    }

    private static func sextet(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(c - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}
