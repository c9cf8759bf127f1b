// SCRAM (RFC 5802) as MQTT 5 enhanced authentication methods: SCRAM-SHA-256 (RFC 7677) over
// RFC 5803 verifiers, and SCRAM-SHA-512 over mosquitto_passwd `$7$` entries (whose PBKDF2-SHA512
// hash is exactly SCRAM-SHA-512's SaltedPassword). No channel binding ("n" / "y" only).

import ApusCrypto
import Broker

/// What the server keeps for one SCRAM user.
public struct ScramVerifier: Sendable, Equatable {
    public var iterations: Int
    public var salt: [UInt8]
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    public init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations; self.salt = salt; self.storedKey = storedKey; self.serverKey = serverKey
    }

    /// The verifier for a SaltedPassword (PBKDF2 output) under hash `H`.
    public init<H: HashFunction>(_: H.Type, saltedPassword: [UInt8], iterations: Int, salt: [UInt8]) {
        let clientKey = HMAC<H>.authenticate(key: saltedPassword, message: Array("Client Key".utf8))
        self.init(iterations: iterations, salt: salt, storedKey: H.hash(clientKey),
                  serverKey: HMAC<H>.authenticate(key: saltedPassword, message: Array("Server Key".utf8)))
    }
}

/// A SCRAM method with hash `H` and its users.
public struct ScramAuthenticator<H: HashFunction>: EnhancedAuthenticator {
    public let method: String
    let users: [String: ScramVerifier]
    /// Makes the salts of unknown users stable and unguessable, so that a client cannot tell an
    /// unknown user from a wrong password (RFC 5802 section 9).
    let secret: [UInt8]

    public init(method: String, users: [String: ScramVerifier]) {
        self.method = method
        self.users = users
        self.secret = SecureRandom.bytes(32)
    }

    public func makeExchange(clientID: String) -> any AuthenticationExchange {
        ScramExchange<H>(authenticator: self)
    }
}

extension ScramAuthenticator where H == SHA256 {
    /// SCRAM-SHA-256 for the password file's RFC 5803 entries.
    public init(passwordFile: PasswordFile) {
        var users: [String: ScramVerifier] = [:]
        for (user, credentials) in passwordFile.users {
            for case .scramSHA256(let iterations, let salt, let storedKey, let serverKey) in credentials {
                users[user] = ScramVerifier(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
            }
        }
        self.init(method: "SCRAM-SHA-256", users: users)
    }
}

extension ScramAuthenticator where H == SHA512 {
    /// SCRAM-SHA-512 for the password file's mosquitto `$7$` entries.
    public init(passwordFile: PasswordFile) {
        var users: [String: ScramVerifier] = [:]
        for (user, credentials) in passwordFile.users {
            for case .pbkdf2SHA512(let iterations, let salt, let hash) in credentials {
                users[user] = ScramVerifier(SHA512.self, saltedPassword: hash, iterations: iterations, salt: salt)
            }
        }
        self.init(method: "SCRAM-SHA-512", users: users)
    }
}

/// One SCRAM conversation: client-first → server-first, client-final → server-final.
final class ScramExchange<H: HashFunction>: AuthenticationExchange {
    private let authenticator: ScramAuthenticator<H>
    private var expecting = Expecting.clientFirst

    private enum Expecting {
        case clientFirst
        case clientFinal(gs2Header: String, clientFirstBare: String, serverFirst: String, nonce: String,
                         user: String, verifier: ScramVerifier?)
        case nothing
    }

    init(authenticator: ScramAuthenticator<H>) { self.authenticator = authenticator }

    func step(_ data: [UInt8]?) -> AuthenticationStep {
        let state = expecting
        expecting = .nothing
        guard let data, let message = String(validating: data, as: UTF8.self) else { return .failure(.notAuthorized) }
        switch state {
        case .clientFirst:
            return clientFirst(message)
        case .clientFinal(let gs2Header, let bare, let serverFirst, let nonce, let user, let verifier):
            return clientFinal(message, gs2Header: gs2Header, clientFirstBare: bare, serverFirst: serverFirst,
                               nonce: nonce, user: user, verifier: verifier)
        case .nothing:
            return .failure(.protocolError)
        }
    }

    private func clientFirst(_ message: String) -> AuthenticationStep {
        // gs2-header = ("n" | "y") "," [authzid] "," ; then client-first-message-bare.
        let fields = message.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, fields[0] == "n" || fields[0] == "y", fields[1].isEmpty else { return .failure(.notAuthorized) }
        let bare = String(fields[2])
        let attributes = Self.attributes(bare)
        guard let encodedUser = attributes["n"], let clientNonce = attributes["r"], !clientNonce.isEmpty,
              let user = Self.decodeName(encodedUser) else { return .failure(.notAuthorized) }
        let nonce = clientNonce + Base64.encode(SecureRandom.bytes(18))
        let verifier = authenticator.users[user]
        let salt = verifier?.salt ?? Array(HMAC<H>.authenticate(key: authenticator.secret, message: Array(user.utf8)).prefix(16))
        let iterations = verifier?.iterations ?? 4096
        let serverFirst = "r=\(nonce),s=\(Base64.encode(salt)),i=\(iterations)"
        expecting = .clientFinal(gs2Header: "\(fields[0]),,", clientFirstBare: bare, serverFirst: serverFirst,
                                 nonce: nonce, user: user, verifier: verifier)
        return .challenge(Array(serverFirst.utf8))
    }

    private func clientFinal(_ message: String, gs2Header: String, clientFirstBare: String, serverFirst: String,
                             nonce: String, user: String, verifier: ScramVerifier?) -> AuthenticationStep {
        guard let proofStart = message.firstRange(of: ",p=") else { return .failure(.notAuthorized) }
        let withoutProof = String(message[..<proofStart.lowerBound])
        let attributes = Self.attributes(withoutProof)
        guard attributes["c"] == Base64.encode(Array(gs2Header.utf8)), attributes["r"] == nonce,
              let proof = Base64.decode(String(message[proofStart.upperBound...])), proof.count == H.digestSize else {
            return .failure(.notAuthorized)
        }
        guard let verifier else { return .failure(.badUserNameOrPassword) }
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let clientSignature = HMAC<H>.authenticate(key: verifier.storedKey, message: authMessage)
        var clientKey = proof
        for i in clientKey.indices { clientKey[i] ^= clientSignature[i] }
        guard constantTimeEquals(H.hash(clientKey), verifier.storedKey) else { return .failure(.badUserNameOrPassword) }
        let serverSignature = HMAC<H>.authenticate(key: verifier.serverKey, message: authMessage)
        return .success(data: Array("v=\(Base64.encode(serverSignature))".utf8), identity: user)
    }

    /// `a=value` pairs of a SCRAM message (the first occurrence of each attribute).
    static func attributes(_ message: String) -> [Character: String] {
        var result: [Character: String] = [:]
        for field in message.split(separator: ",") {
            guard field.count >= 2, let name = field.first, field[field.index(after: field.startIndex)] == "=" else { continue }
            if result[name] == nil { result[name] = String(field.dropFirst(2)) }
        }
        return result
    }

    /// A saslname: "=2C" is ",", "=3D" is "=", any other "=" is invalid.
    static func decodeName(_ name: String) -> String? {
        guard name.contains("=") else { return name }
        var result = ""
        var rest = Substring(name)
        while let eq = rest.firstIndex(of: "=") {
            result += rest[..<eq]
            let code = rest[eq...].prefix(3)
            if code == "=2C" { result += "," } else if code == "=3D" { result += "=" } else { return nil }
            rest = rest[rest.index(eq, offsetBy: 3)...]
        }
        return result + rest
    }
}
