// CONNECT handling: client id rules, limits, takeover within the shard, CONNACK and its v5 properties.

import Codec

extension ShardCore {
    func handleConnect(_ connect: Connect, slot s: Int, now: UInt64) {
        let version = connect.version
        connections[s].version = version
        connections[s].decoder.version = version  // AUTH may follow before CONNACK

        // Client identifier rules [MQTT-3.1.3-7, -8], 3.1 requires 1-23 characters.
        var clientID = connect.clientID
        var assignedID: String? = nil
        if clientID.isEmpty {
            if version == .v3_1 || !connect.cleanStart {
                refuseConnect(slot: s, version: version, reason: .clientIdentifierNotValid,
                              why: version == .v3_1 ? "MQTT 3.1 requires a client identifier" : "an empty client identifier needs Clean Start")
                return
            }
            clientID = makeClientID()
            assignedID = clientID
        }

        // Connection quota: count sessions, not sockets awaiting CONNECT.
        if connectedCount() >= config.maxConnectionsPerShard {
            counters.connectionsRefused += 1
            refuseConnect(slot: s, version: version, reason: version == .v5 ? .quotaExceeded : .serverUnavailable,
                          why: "max_connections reached")
            return
        }

        // max_keepalive: a v5 client is told the keep alive to use (Server Keep Alive); a 3.1/3.1.1
        // client cannot be, so one asking for more (or for none) is refused, as mosquitto does.
        let keepAliveTooLong = config.maxKeepAlive < 65_535 && (connect.keepAlive == 0 || connect.keepAlive > config.maxKeepAlive)
        if keepAliveTooLong && version != .v5 {
            refuseConnect(slot: s, version: version, reason: .clientIdentifierNotValid)
            return
        }

        if let will = connect.will, will.retain && !config.retainAvailable || will.qos > config.maximumQoS {
            // [MQTT-3.2.2-12/-13]: a will the server cannot publish as asked.
            let retain = will.retain && !config.retainAvailable
            refuseConnect(slot: s, version: version, reason: retain ? .retainNotSupported : .qosNotSupported,
                          why: retain ? "retained messages are disabled" : "will QoS above max_qos")
            return
        }

        connections[s].clientID = clientID
        let enhanced = version == .v5 ? connect.properties.authenticationMethod : nil
        if version == .v5 && enhanced == nil && connect.properties.authenticationData != nil {
            // [MQTT-3.1.2.11.10]: Authentication Data without an Authentication Method.
            refuseConnect(slot: s, version: version, reason: .protocolError, why: "Authentication Data without Authentication Method")
            return
        }
        if enhanced == nil && !connections[s].usernameFromCertificate {
            // User name and password (section 3.1.3.5): checked against the password file when there is one.
            if let user = connect.username {
                if let passwords = config.passwords, !passwords.check(user: user, password: connect.password ?? []) {
                    recordAuthenticationFailure(slot: s, username: user, why: "bad user name or password")
                    connections[s].username = user  // for the client.connack event; the slot closes
                    refuseConnect(slot: s, version: version, reason: .badUserNameOrPassword, why: "bad user name or password")
                    return
                }
            } else if !config.allowAnonymous {
                recordAuthenticationFailure(slot: s, username: nil, why: "anonymous clients are not allowed")
                refuseConnect(slot: s, version: version, reason: .notAuthorized, why: "anonymous clients are not allowed")
                return
            }
        }
        if let method = enhanced {
            // Enhanced authentication (section 4.12): CONNACK waits for the exchange to succeed.
            guard let authenticator = config.authenticators[method] else {
                refuseConnect(slot: s, version: version, reason: .badAuthenticationMethod,
                              why: "authentication method \(method) is not supported")
                return
            }
            connections[s].authMethod = method
            connections[s].pendingConnect = (connect, assignedID)
            connections[s].authExchange = authenticator.makeExchange(clientID: clientID)
            authenticationStep(slot: s, data: connect.properties.authenticationData)
            return
        }
        acceptConnect(connect, assignedID: assignedID, slot: s, authenticationData: nil)
    }

    /// The CONNECT passed every check (and authentication): set up the session and claim the id.
    func acceptConnect(_ connect: Connect, assignedID: String?, slot s: Int, authenticationData: [UInt8]?) {
        let version = connect.version
        let clientID = connections[s].clientID
        let keepAliveTooLong = config.maxKeepAlive < 65_535 && (connect.keepAlive == 0 || connect.keepAlive > config.maxKeepAlive)
        if connections[s].username == nil { connections[s].username = connect.username }
        if let acl = config.acl {
            let access = acl.access(username: connections[s].username, clientID: clientID)
            if let will = connect.will, !Array(will.topic.utf8).withUnsafeBytes({ access.canPublish($0) }) {
                counters.publishesDenied += 1
                refuseConnect(slot: s, version: version, reason: .notAuthorized, why: "will topic not allowed by the ACL")
                return
            }
            connections[s].access = access
            connections[s].accessCheckDeliveries = access.hasDenyRules
        }
        connections[s].session.setWill(connect.will)
        connections[s].cleanStart = connect.cleanStart
        if connect.isBridge { connections[s].isBridge = true }  // or the runtime said so (markBridge)
        if version == .v5 {
            let expiry = connect.properties.sessionExpiryInterval ?? 0
            connections[s].session.setExpiry(expiry == 0xFFFF_FFFF ? .max : expiry)
        } else {
            connections[s].session.setExpiry(connect.cleanStart ? 0 : .max)  // 3.1.1: kept until a clean connect
        }
        if connections[s].session.expiry == .max && config.persistentClientExpiration > 0 {
            connections[s].session.setExpiry(config.persistentClientExpiration)
        }

        var properties = Properties()
        var keepAlive = connect.keepAlive
        if keepAliveTooLong {
            keepAlive = config.maxKeepAlive
            properties.serverKeepAlive = keepAlive
        }
        connections[s].keepAlive = keepAlive

        if version == .v5 {
            let p = connect.properties
            if let maximum = p.maximumPacketSize { connections[s].clientMaximumPacketSize = maximum }
            if let receive = p.receiveMaximum { connections[s].clientReceiveMaximum = receive }
            if let problem = p.requestProblemInformation { connections[s].requestProblemInformation = problem == 1 }
            properties.assignedClientIdentifier = assignedID
            if let method = connections[s].authMethod {
                properties.authenticationMethod = method
                properties.authenticationData = authenticationData
            }
            if config.receiveMaximum < 65_535 { properties.receiveMaximum = config.receiveMaximum }
            if config.maxPacketSize < 268_435_460 { properties.maximumPacketSize = UInt32(config.maxPacketSize) }
            if config.topicAliasMaximum > 0 { properties.topicAliasMaximum = config.topicAliasMaximum }
            // What is not available is said; what is, is left out (absent means available).
            if !config.retainAvailable { properties.retainAvailable = 0 }
            if config.maximumQoS != .exactlyOnce { properties.maximumQoS = config.maximumQoS.rawValue }
            if !config.wildcardSubscriptionsAvailable { properties.wildcardSubscriptionAvailable = 0 }
            if !config.sharedSubscriptionsAvailable { properties.sharedSubscriptionAvailable = 0 }
            if !config.subscriptionIdentifiersAvailable { properties.subscriptionIdentifierAvailable = 0 }
            connections[s].outboundAliases = OutboundTopicAliases(
                maximum: min(p.topicAliasMaximum ?? 0, config.outboundTopicAliasMaximum))
            if p.requestResponseInformation == 1 && !config.responseInformation.isEmpty {
                // The basis of the client's response topics [MQTT-3.1.2-28]; the broker gives it no further meaning.
                properties.responseInformation = responseInformation(for: clientID)
            }
        }
        connections[s].pendingConnAckProperties = properties

        // The client id's home shard evicts any previous holder, on any shard [MQTT-3.1.4-3], and
        // the previous session comes back with `claimed`; CONNACK waits for it.
        connections[s].phase = .connecting
        connectedClients += 1
        claimClientID(clientID, connection: ConnectionID(slot: Int32(s), generation: connections[s].generation),
                      cleanStart: connect.cleanStart)
    }

    /// CONNACK, then what the session had in flight, then the input held since CONNECT.
    func finishConnect(slot s: Int, sessionPresent: Bool) {
        connections[s].phase = .connected
        let ack = ConnAck(sessionPresent: sessionPresent, reasonCode: .success, properties: connections[s].pendingConnAckProperties)
        connections[s].pendingConnAckProperties = Properties()
        ack.encodePacket(version: connections[s].version, into: &connections[s].outbound)
        markFlush(s)
        if !connections[s].session.inflight.isEmpty || !connections[s].session.queue.isEmpty { resendInflight(s) }
        if !connections[s].held.isEmpty {
            var held = connections[s].held
            connections[s].held = ByteBuffer()
            receive(ConnectionID(slot: Int32(s), generation: connections[s].generation), bytes: held.readableView, now: currentTime)
            held.deallocate()
        }
        connections[s].dropUnusedExtras()  // connected, not authenticating: the slot alone will do
        if config.eventKinds != 0 { clientEvent(.connected, slot: s) }
    }

    /// Sends a refusing CONNACK and ends the connection [MQTT-3.2.2-5].
    func refuseConnect(slot s: Int, version: ProtocolVersion, reason: ReasonCode, why: String? = nil) {
        let properties = problemProperties(slot: s, why ?? reason.name, connAckOrDisconnect: true)
        ConnAck(sessionPresent: false, reasonCode: reason, properties: properties).encodePacket(version: version, into: &connections[s].outbound)
        markFlush(s)
        if config.eventKinds != 0 { clientEvent(.connack, slot: s, reason: reason.name.lowercased().replacingSpaces()) }
        endSession(slot: s, publishWill: false, disconnectReason: nil)
    }

    /// The configured Response Information with `%c` replaced by the client id (left out when the
    /// id would not make a valid topic level).
    func responseInformation(for clientID: String) -> String {
        let usable = !clientID.contains(where: { $0 == "+" || $0 == "#" })
        var result = ""
        var rest = Substring(config.responseInformation)
        while let range = rest.firstRange(of: "%c") {
            result += rest[..<range.lowerBound]
            if usable { result += clientID }
            rest = rest[range.upperBound...]
        }
        return result + rest
    }

    /// Connected clients (the quota is about sessions, not sockets still awaiting CONNECT).
    func connectedCount() -> Int { connectedClients }

    /// A client id for a client that sent an empty one: unique across shards and restarts.
    func makeClientID() -> String {
        assignedIDCounter += 1
        let nonce = random.next() & 0xFFFF_FFFF
        return "apus-\(shardIndex)-\(assignedIDCounter)-\(String(nonce, radix: 16))"
    }
}

extension ShardCore {
    /// The transport authenticated the client (a verified TLS certificate): `username` is its
    /// user name for the ACL, whatever its CONNECT says, and no password is checked (mosquitto's
    /// use_identity_as_username). Called before the connection's first input.
    public func setCertificateUsername(_ id: ConnectionID, _ username: String) {
        let s = Int(id.slot)
        guard connections[s].generation == id.generation else { return }
        connections[s].username = username
        connections[s].usernameFromCertificate = true
    }

    /// The connection is one of this broker's bridges (its local side, Sources/Bridge): treated as
    /// a bridge that said so (No Local, Retain As Published) with the bridges' inflight window.
    /// Called before the connection's first input.
    public func markBridge(_ id: ConnectionID) {
        let s = Int(id.slot)
        guard connections[s].generation == id.generation else { return }
        connections[s].isBridge = true
    }
}
