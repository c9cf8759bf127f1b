// What a shard reports about itself (for $SYS and /metrics), and publishing from the broker itself
// ($SYS topics, the HTTP publish API).

import Codec
import Router

/// A shard's state at one moment: gauges computed on demand plus its counters.
public struct ShardGauges: Sendable {
    public var connectedClients = 0
    public var offlineSessions = 0
    public var subscriptions = 0
    public var retainedMessages = 0
    /// QoS 1/2 messages held by sessions: in flight and queued.
    public var storedMessages = 0
    /// Publishers whose acknowledgements flow control holds back now.
    public var publishersThrottledNow = 0
    /// Bytes held by partial packets (partial_packet_memory_limit).
    public var partialPacketBytes = 0
    public var counters = ShardCounters()

    public init() {}
}

extension ShardCore {
    /// The gauges of this shard (walks the connection table: call it about once a second, not per message).
    public func gauges() -> ShardGauges {
        var g = ShardGauges()
        g.connectedClients = connectedClients
        for c in connections {
            switch c.phase {
            case .offline:
                g.offlineSessions += 1
            case .connected, .connecting:
                break
            default:
                continue
            }
            if c.flow & FlowFlag.acksHeld != 0 { g.publishersThrottledNow += 1 }
            g.subscriptions += c.session.subscriptions.count
            g.storedMessages += c.session.inflight.count + c.session.queue.count
        }
        g.retainedMessages = retained.count
        g.partialPacketBytes = partialPacketBytes
        g.counters = counters
        return g
    }

    /// Publishes a message from the broker itself (no client): routed to every shard like a
    /// client's PUBLISH, and stored when `retain` is set. Returns whether anyone subscribed on this
    /// shard or another shard has a route for it.
    @discardableResult
    public func publishFromBroker(topic: String, payload: [UInt8], qos: QoS = .atMostOnce, retain: Bool = false,
                                  properties: [UInt8] = []) -> Bool {
        var topic = topic
        return topic.withUTF8 { topicBytes in
            payload.withUnsafeBytes { payloadBytes in
                properties.withUnsafeBytes { propertyBytes in
                    let topicView = UnsafeRawBufferPointer(topicBytes)
                    if retain && config.retainAvailable {
                        self.retain(topic: topicView, payload: payloadBytes, qos: qos, properties: propertyBytes)
                    }
                    return route(qos: qos, retain: retain, topic: topicView, properties: propertyBytes, payload: payloadBytes,
                                 origin: ConnectionID(slot: -1, generation: 0), forwardToShards: true)
                }
            }
        }
    }

    /// Publishes a message that the HTTP API received: held to the same settings as a client's
    /// PUBLISH (`BrokerConfig.refusal`), then routed as `publishFromBroker` does.
    public func publishFromAPI(topic: String, payload: [UInt8], qos: QoS, retain: Bool, properties: [UInt8]) -> PublishOutcome {
        if let refusal = publishRefusal(qos: qos, retain: retain, payloadCount: payload.count) { return .refused(refusal) }
        let storedBefore = storeSequence
        forwardedTo = ShardSet()
        let matched = publishFromBroker(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        let remote = qos != .atMostOnce ? forwardedTo : ShardSet()
        if config.persistence && (storeSequence != storedBefore || !remote.isEmpty) {
            // The answer, like a PUBACK, waits for what the message caused to be stored.
            apiStoreWait = storeWait(remote: remote)
        }
        return .routed(matched: matched)
    }
}
