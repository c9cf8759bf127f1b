// PBKDF2-HMAC-SHA256 (RFC 7914 section 11) and PBKDF2-HMAC-SHA512; the 4096-iteration and
// mosquitto-style 101-iteration expectations come from Python's hashlib.pbkdf2_hmac.

import XCTest
import ApusCrypto

final class PBKDF2Tests: XCTestCase {
    func testSHA256RFC7914OneIteration() {
        XCTAssertEqual(hex(PBKDF2<SHA256>.derive(password: utf8("passwd"), salt: utf8("salt"), iterations: 1, keyLength: 64)),
                       "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
    }

    func testSHA256FourThousandIterations() {
        XCTAssertEqual(hex(PBKDF2<SHA256>.derive(password: utf8("Password"), salt: utf8("NaCl"), iterations: 4096, keyLength: 64)),
                       "438b6f1df76520b1c9989ddf976545b40f1ab4d9da723a81aa5083108b0da61fe1a2be306bc4e96259eaefdeb066a3bf6ecfa07de966472029831582717d7e6a")
        XCTAssertEqual(hex(PBKDF2<SHA256>.derive(password: utf8("password"), salt: utf8("salt"), iterations: 4096, keyLength: 32)),
                       "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
    }

    func testSHA512() {
        XCTAssertEqual(hex(PBKDF2<SHA512>.derive(password: utf8("password"), salt: utf8("salt"), iterations: 1, keyLength: 64)),
                       "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce")
        XCTAssertEqual(hex(PBKDF2<SHA512>.derive(password: utf8("password"), salt: utf8("salt"), iterations: 4096, keyLength: 64)),
                       "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5")
    }

    /// mosquitto_passwd's parameters: 12-byte salt, 101 iterations, 64-byte key.
    func testSHA512MosquittoParameters() {
        XCTAssertEqual(hex(PBKDF2<SHA512>.derive(password: utf8("secret"), salt: utf8("0123456789ab"), iterations: 101, keyLength: 64)),
                       "10efe52e591e52022205a4bc1bc50ad1930fd6ee74f1303b4e5f80749d5c12c9a56c6c843c011112ba5fabce23d647a9212b3453399c74be2e720676ba87717d")
    }

    /// A key longer than one digest takes a second block, truncated.
    func testSHA512MultipleBlocks() {
        let derived = PBKDF2<SHA512>.derive(password: utf8("passwordPASSWORDpassword"),
                                            salt: utf8("saltSALTsaltSALTsaltSALTsaltSALTsalt"), iterations: 4096, keyLength: 100)
        XCTAssertEqual(hex(derived),
                       "8c0511f4c6e597c6ac6315d8f0362e225f3c501495ba23b868c005174dc4ee71115b59f9e60cd9532fa33e0f75aefe30225c583a186cd82bd4daea9724a3d3b804f75bdd41494fa324cab24bcc680fb3b96a30cf5d21fac3c2875913919f3399b1d9ce7e")
    }

    func testZeroLengthKey() {
        XCTAssertEqual(PBKDF2<SHA256>.derive(password: utf8("p"), salt: utf8("s"), iterations: 1, keyLength: 0), [])
    }
}
