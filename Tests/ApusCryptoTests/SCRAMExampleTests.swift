// The SCRAM-SHA-256 exchange of RFC 7677 section 3, recomputed from the primitives the broker
// will use for it.

import XCTest
import ApusCrypto

final class SCRAMExampleTests: XCTestCase {
    func testRFC7677Example() throws {
        let salt = try XCTUnwrap(Base64.decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
        let authMessage = utf8("n=user,r=rOprNGfwEbeRWgbNEkqO,"
            + "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
            + "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")

        let saltedPassword = PBKDF2<SHA256>.derive(password: utf8("pencil"), salt: salt, iterations: 4096, keyLength: 32)
        let clientKey = HMAC<SHA256>.authenticate(key: saltedPassword, message: utf8("Client Key"))
        let storedKey = SHA256.hash(clientKey)
        let clientSignature = HMAC<SHA256>.authenticate(key: storedKey, message: authMessage)
        let clientProof = zip(clientKey, clientSignature).map { $0 ^ $1 }
        XCTAssertEqual(Base64.encode(clientProof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")

        let serverKey = HMAC<SHA256>.authenticate(key: saltedPassword, message: utf8("Server Key"))
        let serverSignature = HMAC<SHA256>.authenticate(key: serverKey, message: authMessage)
        XCTAssertEqual(Base64.encode(serverSignature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")

        // The server's check: recover ClientKey from the proof and compare its hash to StoredKey.
        let recoveredKey = zip(clientProof, clientSignature).map { $0 ^ $1 }
        XCTAssertTrue(constantTimeEquals(SHA256.hash(recoveredKey), storedKey))
    }
}
