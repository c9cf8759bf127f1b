// What a shard reports about itself once a second, and the broker-wide sums that $SYS and
// /metrics show (retained messages are replicated on every shard, so they are taken once).

import Broker

/// One shard's numbers as last reported.
public struct ShardStats: Sendable {
    public var gauges = ShardGauges()
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// MQTT packets received (of any type).
    public var packetsReceived: UInt64 = 0
    /// The durable store's log (zeros without persistence): bytes written, failed writes or
    /// syncs, compactions, the current segment's size, connections whose acknowledgements wait.
    public var storeBytesWritten: UInt64 = 0
    public var storeFailures: UInt64 = 0
    public var storeCompactions: UInt64 = 0
    public var storeSegmentBytes: UInt64 = 0
    public var storeWaitingConnections = 0
    /// TLS: connections open on TLS listeners now, handshakes completed and failed (bad
    /// certificates, versions, timeouts, garbage), connections refused at the handshake cap.
    public var tlsConnections = 0
    public var tlsHandshakes: UInt64 = 0
    public var tlsHandshakeFailures: UInt64 = 0
    public var tlsHandshakesRefused: UInt64 = 0
    /// WebSocket: connections open on WebSocket listeners now (upgraded or upgrading), upgrades
    /// answered 101 and refused, connections closed for a WebSocket protocol error.
    public var wsConnections = 0
    public var wsUpgrades: UInt64 = 0
    public var wsUpgradesRefused: UInt64 = 0
    public var wsProtocolErrors: UInt64 = 0
    public init() {}
}

/// Sums across shards (retained messages are replicated, so they are not summed).
public struct BrokerTotals: Sendable {
    public var connectedClients = 0
    public var offlineSessions = 0
    public var subscriptions = 0
    public var retainedMessages = 0
    public var storedMessages = 0
    public var publishersThrottledNow = 0
    public var partialPacketBytes = 0
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var packetsReceived: UInt64 = 0
    public var storeBytesWritten: UInt64 = 0
    public var storeFailures: UInt64 = 0
    public var storeCompactions: UInt64 = 0
    public var storeSegmentBytes: UInt64 = 0
    public var storeWaitingConnections = 0
    public var tlsConnections = 0
    public var tlsHandshakes: UInt64 = 0
    public var tlsHandshakeFailures: UInt64 = 0
    public var tlsHandshakesRefused: UInt64 = 0
    public var wsConnections = 0
    public var wsUpgrades: UInt64 = 0
    public var wsUpgradesRefused: UInt64 = 0
    public var wsProtocolErrors: UInt64 = 0
    public var counters = ShardCounters()

    public init(_ shards: [ShardStats]) {
        for s in shards {
            connectedClients += s.gauges.connectedClients
            offlineSessions += s.gauges.offlineSessions
            subscriptions += s.gauges.subscriptions
            retainedMessages = max(retainedMessages, s.gauges.retainedMessages)
            storedMessages += s.gauges.storedMessages
            publishersThrottledNow += s.gauges.publishersThrottledNow
            partialPacketBytes += s.gauges.partialPacketBytes
            bytesReceived += s.bytesReceived
            bytesSent += s.bytesSent
            packetsReceived += s.packetsReceived
            storeBytesWritten += s.storeBytesWritten
            storeFailures += s.storeFailures
            storeCompactions += s.storeCompactions
            storeSegmentBytes += s.storeSegmentBytes
            storeWaitingConnections += s.storeWaitingConnections
            tlsConnections += s.tlsConnections
            tlsHandshakes += s.tlsHandshakes
            tlsHandshakeFailures += s.tlsHandshakeFailures
            tlsHandshakesRefused += s.tlsHandshakesRefused
            wsConnections += s.wsConnections
            wsUpgrades += s.wsUpgrades
            wsUpgradesRefused += s.wsUpgradesRefused
            wsProtocolErrors += s.wsProtocolErrors
            counters.add(s.gauges.counters)
        }
    }
}
