// API keys for the HTTP API (`http_api_key KEY:SECRET`), presented as EMQX's are: HTTP Basic
// authentication with the key as user name and the secret as password.

import ApusCrypto

public struct HTTPCredentials: Sendable, Equatable {
    public var key: String
    public var secret: String

    public init(key: String, secret: String) { self.key = key; self.secret = secret }

    /// `KEY:SECRET`, both non-empty; nil otherwise.
    public init?(parsing text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let key = String(text[..<colon]), secret = String(text[text.index(after: colon)...])
        guard !key.isEmpty, !secret.isEmpty else { return nil }
        self.init(key: key, secret: secret)
    }

    /// Whether the request's `Authorization: Basic …` header carries this key and secret (both
    /// compared in constant time).
    public func authorizes(_ request: HTTPRequest) -> Bool {
        guard let header = request.header("Authorization") else { return false }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let decoded = Base64.decode(String(parts[1]).trimmingSpaces()),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return false }
        let keyMatches = constantTimeEquals(Array(decoded[..<colon]), Array(key.utf8))
        let secretMatches = constantTimeEquals(Array(decoded[(colon + 1)...]), Array(secret.utf8))
        return keyMatches && secretMatches
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
