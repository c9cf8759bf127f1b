// Hex and UTF-8 conversions shared by the crypto known-answer tests.

import ApusCrypto

/// Lower-case hex of `bytes`.
func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xf)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// The bytes of a hex string (even length, valid digits assumed).
func bytes(hex: String) -> [UInt8] {
    let chars = Array(hex.utf8)
    precondition(chars.count % 2 == 0)
    return stride(from: 0, to: chars.count, by: 2).map { UInt8(String(decoding: chars[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
}

func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }
