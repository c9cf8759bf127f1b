// MQTT 5 enhanced authentication (the AUTH packet flow, section 4.12): the interface an
// authentication method implements. The broker runs an exchange on the shard that owns the
// connection; methods are looked up by the Authentication Method name in CONNECT.

import Codec

/// What an exchange answers to one message from the client.
public enum AuthenticationStep: Sendable {
    /// Send AUTH 0x18 (Continue authentication) with this data and wait for the client's AUTH.
    case challenge([UInt8])
    /// Authenticated as `identity` (a user name); `data` goes in CONNACK (or AUTH 0x00 after a
    /// re-authentication), e.g. a SCRAM server signature.
    case success(data: [UInt8]?, identity: String?)
    /// Refused with this reason code (0x86 Bad User Name or Password, 0x87 Not authorized, ...).
    case failure(ReasonCode)
}

/// Checks CONNECT user names and passwords (a mosquitto password file, for one).
public protocol PasswordChecker: Sendable {
    /// Whether `password` is right for `user`.
    func check(user: String, password: [UInt8]) -> Bool
}

/// One authentication in progress for one connection. Used by one shard only.
public protocol AuthenticationExchange: AnyObject {
    /// The client's Authentication Data: from CONNECT (or AUTH 0x19) first, then from each AUTH 0x18.
    func step(_ data: [UInt8]?) -> AuthenticationStep
}

/// An authentication method, shared by all shards (immutable, or synchronised by itself).
public protocol EnhancedAuthenticator: Sendable {
    /// The Authentication Method name clients put in CONNECT, e.g. "SCRAM-SHA-256".
    var method: String { get }
    /// A new exchange for a client that connects (or re-authenticates) with this method.
    func makeExchange(clientID: String) -> any AuthenticationExchange
}
