// What the runtime needs around authentication and authorisation: refused logins kept for its log
// (it knows the peer's address), and new users and ACL installed on SIGHUP.

/// A refused login, for the runtime's log (it knows the peer's address).
public struct AuthenticationFailure: Sendable {
    public var connection: ConnectionID
    public var clientID: String
    public var username: String?
    public var reason: String
}

/// The reloadable security settings (SIGHUP): users, enhanced authentication methods over them, ACL.
public struct SecuritySettings: Sendable {
    public var passwords: (any PasswordChecker)?
    public var authenticators: [String: any EnhancedAuthenticator]
    public var acl: AccessControlList?

    public init(passwords: (any PasswordChecker)?, authenticators: [String: any EnhancedAuthenticator], acl: AccessControlList?) {
        self.passwords = passwords; self.authenticators = authenticators; self.acl = acl
    }
}

extension ShardCore {
    /// Most failures kept between two drains by the runtime; more are counted, not logged.
    static let authenticationFailureLogLimit = 256

    func recordAuthenticationFailure(slot s: Int, username: String?, why: String) {
        counters.authenticationFailures += 1
        guard authenticationFailureLog.count < Self.authenticationFailureLogLimit else { return }
        authenticationFailureLog.append(AuthenticationFailure(
            connection: ConnectionID(slot: Int32(s), generation: connections[s].generation),
            clientID: connections[s].clientID, username: username, reason: why))
    }

    /// The refused logins since the last call (the connection is still open: it closes after the
    /// runtime's close queue is processed).
    public func takeAuthenticationFailures() -> [AuthenticationFailure] {
        guard !authenticationFailureLog.isEmpty else { return [] }
        defer { authenticationFailureLog.removeAll(keepingCapacity: true) }
        return authenticationFailureLog
    }

    /// Installs new users and ACL (mosquitto reloads both on SIGHUP). Connected clients stay: their
    /// logins are not re-checked, but their topic access is recomputed from the new ACL, and every
    /// delivery to them is checked from now on (a subscription granted before may now be denied).
    public func reloadSecurity(_ security: SecuritySettings) {
        config.passwords = security.passwords
        config.authenticators = security.authenticators
        config.acl = security.acl
        for s in connections.indices {
            switch connections[s].phase {
            case .connecting, .connected, .offline: break
            default: continue
            }
            if let acl = security.acl {
                connections[s].access = acl.access(username: connections[s].username, clientID: connections[s].clientID)
                connections[s].accessCheckDeliveries = true
            } else {
                connections[s].access = nil
                connections[s].accessCheckDeliveries = false
            }
        }
    }
}
