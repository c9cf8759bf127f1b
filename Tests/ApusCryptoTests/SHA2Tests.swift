// SHA-256 and SHA-512 against the FIPS 180-4 / NIST examples, plus padding boundaries and
// incremental feeding checked against Python's hashlib.

import XCTest
import ApusCrypto

final class SHA2Tests: XCTestCase {
    static let nist448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    static let nist896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"

    func testSHA256KnownAnswers() {
        XCTAssertEqual(hex(SHA256.hash(utf8(""))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(SHA256.hash(utf8("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(SHA256.hash(utf8(Self.nist448))), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex(SHA256.hash(utf8(Self.nist896))), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testSHA512KnownAnswers() {
        XCTAssertEqual(hex(SHA512.hash(utf8(""))),
                       "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
        XCTAssertEqual(hex(SHA512.hash(utf8("abc"))),
                       "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
        XCTAssertEqual(hex(SHA512.hash(utf8(Self.nist448))),
                       "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445")
        XCTAssertEqual(hex(SHA512.hash(utf8(Self.nist896))),
                       "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")
        XCTAssertEqual(hex(SHA512.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))),
                       "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973ebde0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b")
    }

    /// Lengths either side of where the length field stops fitting in the last block
    /// (55/56 for SHA-256, 111/112 for SHA-512) and of whole blocks. Message byte i is i % 251.
    func testPaddingBoundaries() {
        let expected: [(Int, String, String)] = [
            (55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59",
             "6856647f269c2ee3d8128f0b25427659d880641ef343300dd3cd4679168f58d6527fda70b4ebc854e2065e172b7d58c1536992c0810599259ba84a2b40c65414"),
            (56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562",
             "8b12b2f6fe400a51d29656e2b8c42a1bbfe6fcf3e425da430db05d1a2dda14790dee20fa8b22d8762afffe4988a5c98a4430d22a17e41e23d90fa61ab75671a9"),
            (63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488",
             "9dc9c5598e55dc42955695320839788e353f1d7f6ba74df74c80a8a52f463c0697f57f68835d1418f4ce9b6530cd79bd0f4c6f7e13c93feb1218c0b65c2c0561"),
            (64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108",
             "ee4320ebaf3fdb4f2c832b137200c08e235e0fa7bbd0eb1740c7063ba8a0d151da77e003398e1714a955d475b05e3e950b639503b452ec185de4229bc4873949"),
            (111, "60780e9451bdc43cf4530ffc95cbb0c4eb24dae2c39f55f334d679e076c08065",
             "a1a111449b198d9b1f538bad7f3fc1022b3a5b1a5e90a0bc860de8512746cbc31599e6c834de3a3235327af0b51ff57bf7acf1974a73014d9c3953812edc7c8d"),
            (112, "09373f127d34e61dbbaa8bc4499c87074f2ddb10e1b465f506d7d70a15011979",
             "c5fbd731d19d2ae1180f001be72c2c1aaba1d7b094b3748880e24593b8e117a750e11c1bd867cc2f96dace8c8b74abd2d5c4f236be444e77d30d1916174070b9"),
            (127, "92ca0fa6651ee2f97b884b7246a562fa71250fedefe5ebf270d31c546bfea976",
             "eab89674feaa34e27aebeeff3c0a4d70070bb872d5e9f186cf1dbbdee517b6e35724d629ff025a5b07185e911ada7e3c8acf830aa0e4f71777bd2d44f504f7f0"),
            (128, "471fb943aa23c511f6f72f8d1652d9c880cfa392ad80503120547703e56a2be5",
             "1dffd5e3adb71d45d2245939665521ae001a317a03720a45732ba1900ca3b8351fc5c9b4ca513eba6f80bc7b1d1fdad4abd13491cb824d61b08d8c0e1561b3f7"),
            (129, "5099c6a56203f9687f7d33f4bfdf576d31dc91f6b695ecea38b2770c87631135",
             "1d9da57fbbdab09afb3506ab2d223d06109d65c1c8ad197f50138f714bc4c3f2fe5787922639c680acad1c651f955990425954ce2cba0c5cc83f2667d878eb0f"),
        ]
        for (length, sha256, sha512) in expected {
            let message = (0..<length).map { UInt8($0 % 251) }
            XCTAssertEqual(hex(SHA256.hash(message)), sha256, "SHA-256 of \(length) bytes")
            XCTAssertEqual(hex(SHA512.hash(message)), sha512, "SHA-512 of \(length) bytes")
        }
    }

    /// Any split of the input into update calls gives the one-shot digest.
    func testIncrementalMatchesOneShot() {
        let message = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole256 = SHA256.hash(message)
        let whole512 = SHA512.hash(message)
        for chunk in [1, 3, 55, 63, 64, 65, 127, 128, 129, 500] {
            var h256 = SHA256Hasher()
            var h512 = SHA512Hasher()
            var start = 0
            while start < message.count {
                let piece = message[start..<min(start + chunk, message.count)]
                h256.update(piece)
                h512.update(piece)
                start += chunk
            }
            XCTAssertEqual(h256.finalize(), whole256, "SHA-256 in chunks of \(chunk)")
            XCTAssertEqual(h512.finalize(), whole512, "SHA-512 in chunks of \(chunk)")
        }
    }

    func testFinalizeResetsAndNonContiguousInput() {
        var hasher = SHA256Hasher()
        hasher.update(utf8("junk"))
        _ = hasher.finalize()
        hasher.update(utf8("abc").lazy.map { $0 })
        XCTAssertEqual(hex(hasher.finalize()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.digestSize, 32)
        XCTAssertEqual(SHA256.blockSize, 64)
        XCTAssertEqual(SHA512.digestSize, 64)
        XCTAssertEqual(SHA512.blockSize, 128)
    }
}
