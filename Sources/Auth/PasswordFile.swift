// Password files in mosquitto_passwd's format (`user:$6$salt$hash` SHA-512, `user:$7$iter$salt$hash`
// PBKDF2-SHA512), plus RFC 5803 SCRAM-SHA-256 entries (`user:SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`)
// for the SCRAM-SHA-256 method, which mosquitto's hashes cannot serve.

import ApusBase
import ApusCrypto
import Broker

/// One user's stored credential.
public enum StoredCredential: Sendable, Equatable {
    /// mosquitto `$6$`: SHA-512(password ‖ salt).
    case sha512(salt: [UInt8], hash: [UInt8])
    /// mosquitto `$7$`: PBKDF2-HMAC-SHA512(password, salt, iterations, 64). This is also SCRAM-SHA-512's
    /// SaltedPassword, so these users can log in with SCRAM-SHA-512 too.
    case pbkdf2SHA512(iterations: Int, salt: [UInt8], hash: [UInt8])
    /// RFC 5803 SCRAM-SHA-256 verifier.
    case scramSHA256(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8])

    /// Checks a plain password (CONNECT user name and password). Constant time in the comparison.
    public func matches(password: [UInt8]) -> Bool {
        switch self {
        case .sha512(let salt, let hash):
            return constantTimeEquals(SHA512.hash(password + salt), hash)
        case .pbkdf2SHA512(let iterations, let salt, let hash):
            return constantTimeEquals(PBKDF2<SHA512>.derive(password: password, salt: salt, iterations: iterations, keyLength: 64), hash)
        case .scramSHA256(let iterations, let salt, let storedKey, _):
            let salted = PBKDF2<SHA256>.derive(password: password, salt: salt, iterations: iterations, keyLength: 32)
            let clientKey = HMAC<SHA256>.authenticate(key: salted, message: Array("Client Key".utf8))
            return constantTimeEquals(SHA256.hash(clientKey), storedKey)
        }
    }
}

/// A parsed password file: user name → credentials (a user on several lines may log in with any of them).
public struct PasswordFile: PasswordChecker {
    public private(set) var users: [String: [StoredCredential]] = [:]

    public init() {}

    /// Parses the file's text. Blank lines and `#` comments are skipped; anything else that is not
    /// a known entry is an error naming the line.
    public init(text: String) throws(LineError) {
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.isEmpty || line.first == "#" { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw LineError(line: lineNumber, message: "expected user:hash")
            }
            let user = String(line[..<colon])
            let entry = line[line.index(after: colon)...]
            guard let credential = Self.parse(entry) else {
                throw LineError(line: lineNumber, message: "unsupported or malformed hash for user '\(user)' (expected $6$, $7$ or SCRAM-SHA-256$)")
            }
            users[user, default: []].append(credential)
        }
    }

    static func parse(_ entry: Substring) -> StoredCredential? {
        if entry.hasPrefix("SCRAM-SHA-256$") {
            // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
            let parts = entry.dropFirst("SCRAM-SHA-256$".count).split(separator: "$", omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            let first = parts[0].split(separator: ":"), second = parts[1].split(separator: ":")
            guard first.count == 2, second.count == 2, let iterations = Int(first[0]), iterations > 0,
                  let salt = Base64.decode(String(first[1])), let stored = Base64.decode(String(second[0])),
                  let server = Base64.decode(String(second[1])), stored.count == 32, server.count == 32 else { return nil }
            return .scramSHA256(iterations: iterations, salt: salt, storedKey: stored, serverKey: server)
        }
        let parts = entry.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].isEmpty else { return nil }
        switch parts[1] {
        case "6" where parts.count == 4:
            guard let salt = Base64.decode(String(parts[2])), let hash = Base64.decode(String(parts[3])), hash.count == 64 else { return nil }
            return .sha512(salt: salt, hash: hash)
        case "7" where parts.count == 5:
            guard let iterations = Int(parts[2]), iterations > 0, let salt = Base64.decode(String(parts[3])),
                  let hash = Base64.decode(String(parts[4])), hash.count == 64 else { return nil }
            return .pbkdf2SHA512(iterations: iterations, salt: salt, hash: hash)
        default:
            return nil
        }
    }

    /// Whether `password` is right for `user`.
    public func check(user: String, password: [UInt8]) -> Bool {
        guard let credentials = users[user] else { return false }
        return credentials.contains { $0.matches(password: password) }
    }

    /// A SCRAM-SHA-256 verifier line for the file (what `apus --scram-sha-256-entry USER` prints).
    public static func scramSHA256Entry(user: String, password: [UInt8], iterations: Int = 4096, salt: [UInt8] = SecureRandom.bytes(16)) -> String {
        let salted = PBKDF2<SHA256>.derive(password: password, salt: salt, iterations: iterations, keyLength: 32)
        let clientKey = HMAC<SHA256>.authenticate(key: salted, message: Array("Client Key".utf8))
        let serverKey = HMAC<SHA256>.authenticate(key: salted, message: Array("Server Key".utf8))
        return "\(user):SCRAM-SHA-256$\(iterations):\(Base64.encode(salt))$\(Base64.encode(SHA256.hash(clientKey))):\(Base64.encode(serverKey))"
    }
}
