// The end of a session: DISCONNECT to v5 clients, the will, subscription clean-up, and handing the
// socket to the runtime for closing.

import Codec

extension ShardCore {
    /// A socket error or EOF seen by the runtime: the session ends abnormally (will is published).
    public func connectionLost(_ id: ConnectionID) {
        guard isCurrent(id) else { return }
        let s = Int(id.slot)
        guard connections[s].phase == .awaitingConnect || connections[s].phase == .connected else { return }
        endSession(slot: s, publishWill: true, disconnectReason: nil)
    }

    /// Ends the session on slot `s`. With `disconnectReason`, a v5 client first gets DISCONNECT.
    func endSession(slot s: Int, publishWill: Bool, disconnectReason: ReasonCode?) {
        let phase = connections[s].phase
        guard phase == .awaitingConnect || phase == .connected else { return }
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        if phase == .connected {
            if let reason = disconnectReason, connections[s].version == .v5 {
                Packet.disconnect(Disconnect(reasonCode: reason)).encode(version: .v5, into: &connections[s].outbound)
                markFlush(s)
            }
            if publishWill, let will = connections[s].will {
                connections[s].will = nil
                publishWillMessage(will, origin: id)
            }
            for filter in Array(connections[s].subscriptions.keys) {
                removeSubscription(slot: s, filter: filter)
            }
            releaseClientID(connections[s].clientID, connection: id)
            connectedClients -= 1
        }
        connections[s].will = nil
        connections[s].phase = .closing
        liveConnections -= 1
        closeQueue.append(Int32(s))
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
                return route(qos: will.qos, topic: UnsafeRawBufferPointer(topicBytes), properties: propertyBuffer.readableView,
                      payload: payload, origin: origin, forwardToShards: true)
            }
        }
    }
}
