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
            if let (connect, assignedID) = connections[s].pendingConnect {
                connections[s].pendingConnect = nil
                acceptConnect(connect, assignedID: assignedID, slot: s, authenticationData: serverData)
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
