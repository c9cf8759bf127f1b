// constantTimeEquals and SecureRandom.

import XCTest
import ApusCrypto

final class ConstantTimeTests: XCTestCase {
    func testConstantTimeEquals() {
        XCTAssertTrue(constantTimeEquals([], []))
        XCTAssertTrue(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(constantTimeEquals([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(constantTimeEquals([0, 2, 3], [1, 2, 3]))
        XCTAssertFalse(constantTimeEquals([1, 2, 3], [1, 2]))
        XCTAssertFalse(constantTimeEquals([], [0]))
    }

    func testSecureRandomBytes() {
        XCTAssertEqual(SecureRandom.bytes(0), [])
        for count in [1, 7, 8, 9, 16, 33] {
            XCTAssertEqual(SecureRandom.bytes(count).count, count)
        }
        // 32 random bytes repeating, or all zero, would mean the generator is not being used.
        let a = SecureRandom.bytes(32)
        XCTAssertNotEqual(a, SecureRandom.bytes(32))
        XCTAssertNotEqual(a, [UInt8](repeating: 0, count: 32))
    }
}
