// Password files in mosquitto_passwd's format and the SCRAM exchanges, driven by a client written
// from RFC 5802 in the test.

import ApusBase
import ApusCrypto
import Auth
import Broker
import XCTest

// Made by `mosquitto_passwd -c -b pw alice secret` and `mosquitto_passwd -H sha512 -c -b pw6 bob hunter2`.
let mosquittoFile = """
    # users
    alice:$7$101$RFo0e/pqV8fE1RSn$Z014uUjDWDTtD0B9xMP0SMoZB0LE6WO5CL4G7IQSLTxltv55fVZZkp2UVTJwveQxIXuhK3YSfbcEnwbQctu8Mg==
    bob:$6$sTnRIqzLit6Bu89v$DZKXf7yuMIXdB5k0mQuE6q+NhiHfgbmCdFXkyW/4z7hkr38UiOYv/AbHvLjGLTIKw7EP95st+XQhHUHU+Z7DcA==

    """

final class PasswordFileTests: XCTestCase {
    func testMosquittoHashes() throws {
        let file = try PasswordFile(text: mosquittoFile)
        XCTAssertTrue(file.check(user: "alice", password: Array("secret".utf8)))
        XCTAssertFalse(file.check(user: "alice", password: Array("Secret".utf8)))
        XCTAssertTrue(file.check(user: "bob", password: Array("hunter2".utf8)))
        XCTAssertFalse(file.check(user: "bob", password: []))
        XCTAssertFalse(file.check(user: "carol", password: Array("secret".utf8)))
    }

    func testScramEntryRoundTrip() throws {
        let line = PasswordFile.scramSHA256Entry(user: "dave", password: Array("pencil".utf8), iterations: 64)
        XCTAssertTrue(line.hasPrefix("dave:SCRAM-SHA-256$64:"))
        let file = try PasswordFile(text: line)
        XCTAssertTrue(file.check(user: "dave", password: Array("pencil".utf8)))
        XCTAssertFalse(file.check(user: "dave", password: Array("pen".utf8)))
    }

    func testMalformedLineNamesTheLine() {
        XCTAssertThrowsError(try PasswordFile(text: "alice:$7$101$RFo0$\nbob:plain\n")) { error in
            XCTAssertEqual((error as? LineError)?.line, 1)
        }
        XCTAssertThrowsError(try PasswordFile(text: "# ok\nnocolon\n")) { error in
            XCTAssertEqual((error as? LineError)?.line, 2)
        }
    }
}

/// The client side of SCRAM, as RFC 5802 describes it.
struct ScramClient<H: HashFunction> {
    var user: String
    var password: String
    var nonce = "fyko+d2lbbFgONRv9qkxdawL"
    var bare: String { "n=\(user),r=\(nonce)" }
    var first: [UInt8] { Array("n,,\(bare)".utf8) }

    /// client-final for `serverFirst`, and the server signature to expect.
    func final(_ serverFirst: [UInt8], tamper: Bool = false) -> (message: [UInt8], serverSignature: String) {
        let text = String(decoding: serverFirst, as: UTF8.self)
        var attributes: [Character: String] = [:]
        for field in text.split(separator: ",") { attributes[field.first!] = String(field.dropFirst(2)) }
        let salt = Base64.decode(attributes["s"]!)!
        let salted = PBKDF2<H>.derive(password: Array(password.utf8), salt: salt, iterations: Int(attributes["i"]!)!,
                                      keyLength: H.digestSize)
        let withoutProof = "c=biws,r=\(attributes["r"]!)"
        let authMessage = Array("\(bare),\(text),\(withoutProof)".utf8)
        let clientKey = HMAC<H>.authenticate(key: salted, message: Array("Client Key".utf8))
        let signature = HMAC<H>.authenticate(key: H.hash(clientKey), message: authMessage)
        var proof = zip(clientKey, signature).map { $0 ^ $1 }
        if tamper { proof[0] ^= 1 }
        let serverKey = HMAC<H>.authenticate(key: salted, message: Array("Server Key".utf8))
        return (Array("\(withoutProof),p=\(Base64.encode(proof))".utf8),
                "v=" + Base64.encode(HMAC<H>.authenticate(key: serverKey, message: authMessage)))
    }
}

final class ScramTests: XCTestCase {
    func run<H: HashFunction>(_ authenticator: ScramAuthenticator<H>, _ client: ScramClient<H>, tamper: Bool = false) -> (AuthenticationStep, String) {
        let exchange = authenticator.makeExchange(clientID: "c1")
        guard case .challenge(let serverFirst) = exchange.step(client.first) else {
            XCTFail("no server-first")
            return (.failure(.unspecifiedError), "")
        }
        XCTAssertTrue(String(decoding: serverFirst, as: UTF8.self).hasPrefix("r=\(client.nonce)"), "server nonce extends the client's")
        let (final, expected) = client.final(serverFirst, tamper: tamper)
        return (exchange.step(final), expected)
    }

    func testScramSHA256Success() throws {
        let file = try PasswordFile(text: PasswordFile.scramSHA256Entry(user: "user", password: Array("pencil".utf8), iterations: 128))
        let (step, expected) = run(ScramAuthenticator<SHA256>(passwordFile: file), ScramClient<SHA256>(user: "user", password: "pencil"))
        guard case .success(let data, let identity) = step else { return XCTFail("\(step)") }
        XCTAssertEqual(data.map { String(decoding: $0, as: UTF8.self) }, expected)
        XCTAssertEqual(identity, "user")
    }

    func testScramSHA512OverMosquittoPbkdf2Entry() throws {
        let file = try PasswordFile(text: mosquittoFile)
        let authenticator = ScramAuthenticator<SHA512>(passwordFile: file)
        let (step, expected) = run(authenticator, ScramClient<SHA512>(user: "alice", password: "secret"))
        guard case .success(let data, _) = step else { return XCTFail("\(step)") }
        XCTAssertEqual(data.map { String(decoding: $0, as: UTF8.self) }, expected)
        // bob has a $6$ entry only: SCRAM cannot serve him, and he cannot tell that from a wrong password.
        let (bob, _) = run(authenticator, ScramClient<SHA512>(user: "bob", password: "hunter2"))
        guard case .failure(let reason) = bob else { return XCTFail("\(bob)") }
        XCTAssertEqual(reason, .badUserNameOrPassword)
    }

    func testWrongProofRefused() throws {
        let file = try PasswordFile(text: PasswordFile.scramSHA256Entry(user: "user", password: Array("pencil".utf8), iterations: 64))
        let authenticator = ScramAuthenticator<SHA256>(passwordFile: file)
        for client in [ScramClient<SHA256>(user: "user", password: "pencil2"), ScramClient<SHA256>(user: "nobody", password: "pencil")] {
            let (step, _) = run(authenticator, client)
            guard case .failure(let reason) = step else { return XCTFail("\(step)") }
            XCTAssertEqual(reason, .badUserNameOrPassword)
        }
        let (tampered, _) = run(authenticator, ScramClient<SHA256>(user: "user", password: "pencil"), tamper: true)
        guard case .failure = tampered else { return XCTFail("\(tampered)") }
    }

    func testMalformedMessagesRefused() throws {
        let authenticator = ScramAuthenticator<SHA256>(method: "SCRAM-SHA-256", users: [:])
        for first in ["", "p=tls-unique,,n=u,r=x", "n,,r=abc", "n,,n=a=1,r=x", "n,a=other,n=u,r=x"] {
            let step = authenticator.makeExchange(clientID: "c").step(Array(first.utf8))
            guard case .failure = step else { return XCTFail("\(first): \(step)") }
        }
        XCTAssertNotNil(authenticator.makeExchange(clientID: "c").step(nil))
    }
}
