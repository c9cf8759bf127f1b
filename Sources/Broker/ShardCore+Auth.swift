// The v5 AUTH packet flow: continuing an enhanced authentication started by CONNECT, and
// re-authentication on a connected session (section 4.12).

import Codec

extension ShardCore {
    /// An AUTH packet from the client.
    func handleAuth(_ auth: Auth, slot s: Int) {
        guard connections[s].version == .v5, let method = connections[s].authMethod,
              auth.properties.authenticationMethod == method else {
            // [MQTT-4.12.0-7]: no method in CONNECT, no AUTH; [MQTT-4.12.1-1]: the same method.
            protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "AUTH without the CONNECT's Authentication Method")
            return
        }
        switch auth.reasonCode {
        case .continueAuthentication where connections[s].authExchange != nil:
            authenticationStep(slot: s, data: auth.properties.authenticationData)
        case .reAuthenticate where connections[s].phase == .connected && connections[s].authExchange == nil:
            guard let authenticator = config.authenticators[method] else {
                protocolError(slot: s, reason: .badAuthenticationMethod, decodeError: nil)
                return
            }
            connections[s].authExchange = authenticator.makeExchange(clientID: connections[s].clientID)
            authenticationStep(slot: s, data: auth.properties.authenticationData)
        default:
            protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "unexpected AUTH reason code \(auth.reasonCode)")
        }
    }

    /// Gives the client's Authentication Data to the exchange and acts on its answer: AUTH 0x18,
    /// CONNACK (or AUTH 0x00 after re-authentication), or a refusal.
    func authenticationStep(slot s: Int, data: [UInt8]?) {
        guard let exchange = connections[s].authExchange else { return }
        switch exchange.step(data) {
        case .challenge(let challenge):
            var properties = Properties()
            properties.authenticationMethod = connections[s].authMethod
            properties.authenticationData = challenge
            queueAck(.auth(Auth(reasonCode: .continueAuthentication, properties: properties)), slot: s)
        case .success(let serverData, let identity):
            connections[s].authExchange = nil
            if let identity { connections[s].username = identity }
            if let pending = connections[s].pendingConnect {
                connections[s].pendingConnect = nil
                acceptConnect(pending.connect, assignedID: pending.assignedID, slot: s, authenticationData: serverData)
            } else {
                var properties = Properties()
                properties.authenticationMethod = connections[s].authMethod
                properties.authenticationData = serverData
                queueAck(.auth(Auth(reasonCode: .success, properties: properties)), slot: s)
            }
        case .failure(let reason):
            connections[s].authExchange = nil
            recordAuthenticationFailure(slot: s, username: connections[s].username, why: "enhanced authentication failed (\(reason.name))")
            if connections[s].pendingConnect != nil {
                connections[s].pendingConnect = nil
                refuseConnect(slot: s, version: .v5, reason: reason, why: "authentication failed")
            } else {
                endSession(slot: s, publishWill: true, disconnectReason: reason, reasonString: "re-authentication failed")
            }
        }
    }
}

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
