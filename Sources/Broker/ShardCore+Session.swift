// The end of a session: DISCONNECT to v5 clients, the will, subscription clean-up, and handing the
// socket to the runtime for closing.

import Codec

extension ShardCore {
    /// A socket error or EOF seen by the runtime: the session ends abnormally (will is published).
    public func connectionLost(_ id: ConnectionID) {
        guard isCurrent(id) else { return }
        let s = Int(id.slot)
        switch connections[s].phase {
        case .awaitingConnect, .connecting, .connected:
            endSession(slot: s, publishWill: true, disconnectReason: nil)
        case .closing, .offline, .free, .external:
            break
        }
    }

    /// Ends the connection on slot `s`. With `disconnectReason`, a v5 client first gets DISCONNECT.
    /// A persistent session stays on the slot, offline; any other is discarded.
    func endSession(slot s: Int, publishWill: Bool, disconnectReason: ReasonCode?, reasonString: String? = nil,
                    eventReason: String? = nil) {
        let phase = connections[s].phase
        guard phase == .awaitingConnect || phase == .connecting || phase == .connected else { return }
        if phase == .connected && config.eventKinds != 0 {
            clientEvent(.disconnected, slot: s, reason: eventReason ?? ShardCore.disconnectReason(disconnectReason))
        }
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        closeQueue.append(Int32(s))
        endFlowControl(slot: s)
        if phase == .awaitingConnect {
            connections[s].phase = .closing
            return
        }
        connectedClients -= 1
        if let reason = disconnectReason, connections[s].version == .v5, phase == .connected {
            let properties = problemProperties(slot: s, reasonString ?? reason.name, connAckOrDisconnect: true)
            Packet.disconnect(Disconnect(reasonCode: reason, properties: properties)).encode(version: .v5, into: &connections[s].outbound)
            markFlush(s)
        }
        if let will = connections[s].session.takeWill(), publishWill {
            let delay = will.properties.willDelayInterval ?? 0
            if delay > 0 && connections[s].session.isPersistent {
                // v5 Will Delay: published when the delay passes or the session ends, whichever
                // comes first, and not at all if the client reconnects before [MQTT-3.1.3-9].
                connections[s].session.delayWill(will, until: currentTime + UInt64(delay) * 1_000_000_000)
            } else {
                publishWillMessage(will, origin: id)
            }
        }
        if connections[s].session.isPersistent {
            // The session outlives the connection [MQTT-3.1.2-4]: subscriptions stay in the trie,
            // QoS 1/2 messages queue, the registry keeps pointing here.
            connections[s].phase = .offline
            connections[s].offlineSince = currentTime
            counters.sessionsPersisted += 1
            storeSessionState(slot: s)
        } else {
            storeSessionEnd(slot: s)
            removeAllSubscriptions(slot: s)
            releaseClientID(connections[s].clientID, connection: id)
            connections[s].phase = .closing
        }
    }

    /// Shutdown, first step: every session ends with the process (none is persisted), so every
    /// will is due now, delayed or not, as for a connection the server closes. The runtime calls
    /// this on every shard before any shard queues DISCONNECT 0x8B, so subscribers still connected
    /// receive the wills (as with mosquitto).
    public func publishWillsAtShutdown() {
        for s in connections.indices {
            switch connections[s].phase {
            case .connected:
                if let will = connections[s].session.takeWill() {
                    publishWillMessage(will, origin: ConnectionID(slot: Int32(s), generation: connections[s].generation))
                    storeSessionState(slot: s)  // published: not again after a restart
                }
                publishDelayedWill(slot: s)
            case .offline, .closing:
                publishDelayedWill(slot: s)
            default:
                continue
            }
        }
    }

    /// The server is stopping: connected v5 clients get DISCONNECT 0x8B (Server shutting down).
    /// Sessions are not ended here; the runtime flushes these bytes, then closes every socket.
    public func serverShuttingDown() {
        for s in connections.indices where connections[s].phase == .connected && connections[s].version == .v5 {
            let properties = problemProperties(slot: s, "server shutting down", connAckOrDisconnect: true)
            Packet.disconnect(Disconnect(reasonCode: .serverShuttingDown, properties: properties)).encode(version: .v5, into: &connections[s].outbound)
            markFlush(s)
        }
    }

    /// Ends an offline session (expired): its subscriptions go, the registry forgets it.
    func discardSession(slot s: Int) {
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        publishDelayedWill(slot: s)  // the session ends before the will delay: publish now
        storeSessionEnd(slot: s)
        removeAllSubscriptions(slot: s)
        releaseClientID(connections[s].clientID, connection: id)
        counters.sessionsExpired += 1
        if connections[s].socketAttached {
            connections[s].phase = .closing  // the runtime's release frees the slot
        } else {
            freeSlot(s)
        }
    }

    /// Publishes a delayed will that is still pending on slot `s`.
    func publishDelayedWill(slot s: Int) {
        guard let will = connections[s].session.takeDelayedWill() else { return }
        publishWillMessage(will, origin: ConnectionID(slot: Int32(s), generation: connections[s].generation))
        storeSessionState(slot: s)
    }

    func removeAllSubscriptions(slot s: Int) {
        for filter in Array(connections[s].session.subscriptions.keys) {
            removeSubscription(slot: s, filter: filter)
        }
    }

    /// Publishes a will message like any other PUBLISH from its client.
    func publishWillMessage(_ will: Will, origin: ConnectionID) {
        var topic = will.topic
        var propertyBuffer = ByteBuffer()
        defer { propertyBuffer.deallocate() }
        var willProperties = will.properties
        willProperties.willDelayInterval = nil  // not a PUBLISH property
        if !willProperties.isEmpty {
            willProperties.encode(into: &propertyBuffer)
            // Drop the length prefix: records carry the bare property block.
            let prefix = variableByteIntegerLength(willProperties.encodedLength())
            propertyBuffer.moveReaderIndex(forwardBy: prefix)
        }
        _ = topic.withUTF8 { topicBytes in
            will.payload.withUnsafeBytes { payload in
                if will.retain {
                    retain(topic: UnsafeRawBufferPointer(topicBytes), payload: payload, qos: will.qos,
                           properties: propertyBuffer.readableView)
                }
                return route(qos: will.qos, retain: will.retain, topic: UnsafeRawBufferPointer(topicBytes), properties: propertyBuffer.readableView,
                      payload: payload, origin: origin, forwardToShards: true)
            }
        }
    }
}
