// SHA-1 (the WebSocket handshake's hash) against FIPS 180 examples and hashlib at the padding
// boundaries, fed whole and byte by byte.

import XCTest
import ApusCrypto

final class SHA1Tests: XCTestCase {
    func testKnownAnswers() {
        XCTAssertEqual(hex(SHA1.hash(utf8(""))), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(hex(SHA1.hash(utf8("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(hex(SHA1.hash(utf8(SHA2Tests.nist448))), "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(hex(SHA1.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// Message byte i is i % 251 (values from Python's hashlib).
    func testPaddingBoundariesWholeAndByteByByte() {
        let expected: [(Int, String)] = [
            (55, "8ae2d46729cfe68ff927af5eec9c7d1b66d65ac2"), (56, "636e2ec698dac903498e648bd2f3af641d3c88cb"),
            (64, "c6138d514ffa2135bfce0ed0b8fac65669917ec7"), (119, "41c89d06001bab4ab78736b44efe7ce18ce6ae08"),
            (128, "e6434bc401f98603d7eda504790c98c67385d535"),
        ]
        for (n, digest) in expected {
            let message = (0..<n).map { UInt8($0 % 251) }
            XCTAssertEqual(hex(SHA1.hash(message)), digest, "length \(n)")
            var hasher = SHA1Hasher()
            for byte in message { hasher.update([byte]) }
            XCTAssertEqual(hex(hasher.finalize()), digest, "length \(n) byte by byte")
        }
    }
}
