// Base64 against RFC 4648 section 10, round trips, and rejection of malformed input.

import XCTest
import ApusCrypto

final class Base64Tests: XCTestCase {
    func testRFC4648Vectors() {
        let vectors: [(String, String)] = [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
        ]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(utf8(plain)), encoded)
            XCTAssertEqual(Base64.decode(encoded), utf8(plain))
        }
    }

    func testRoundTripsEveryLengthAndByte() {
        for length in 0..<70 {
            let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ length) }
            XCTAssertEqual(Base64.decode(Base64.encode(data)), data, "length \(length)")
        }
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(Base64.decode(Base64.encode(all)), all)
        XCTAssertEqual(Base64.encode([0xfb, 0xff, 0xbf]), "+/+/")
    }

    func testInvalidInputIsRejected() {
        let invalid = [
            "Zg", "Zg=", "Zm9", "Zm9vY",          // length not a multiple of four
            "Zg=a", "Z===", "====", "=Zm9",       // padding in the wrong place or too much
            "Zm9v\n", "Zm 9", "Zm9-", "Zm9_",     // whitespace, URL-safe alphabet
            "Zm9vZg==Zm9v",                       // padding before the end
            "Zh==", "Zm9=",                       // non-zero bits under the padding
            "Zm9\u{e9}",                          // non-ASCII
        ]
        for string in invalid {
            XCTAssertNil(Base64.decode(string), "\(string.debugDescription) should not decode")
        }
    }
}
