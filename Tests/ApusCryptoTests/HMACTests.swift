// HMAC-SHA-256 and HMAC-SHA-512 against RFC 4231 test cases 1, 2 and 6.

import XCTest
import ApusCrypto

final class HMACTests: XCTestCase {
    func testRFC4231Case1() {
        let key = [UInt8](repeating: 0x0b, count: 20)
        let message = utf8("Hi There")
        XCTAssertEqual(hex(HMAC<SHA256>.authenticate(key: key, message: message)),
                       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        XCTAssertEqual(hex(HMAC<SHA512>.authenticate(key: key, message: message)),
                       "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")
    }

    func testRFC4231Case2() {
        let key = utf8("Jefe")
        let message = utf8("what do ya want for nothing?")
        XCTAssertEqual(hex(HMAC<SHA256>.authenticate(key: key, message: message)),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        XCTAssertEqual(hex(HMAC<SHA512>.authenticate(key: key, message: message)),
                       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737")
    }

    /// A 131-byte key, longer than either block size, is hashed before use.
    func testRFC4231Case6KeyLongerThanBlock() {
        let key = [UInt8](repeating: 0xaa, count: 131)
        let message = utf8("Test Using Larger Than Block-Size Key - Hash Key First")
        XCTAssertEqual(hex(HMAC<SHA256>.authenticate(key: key, message: message)),
                       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        XCTAssertEqual(hex(HMAC<SHA512>.authenticate(key: key, message: message)),
                       "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598")
    }
}
