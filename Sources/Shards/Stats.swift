// Broker-wide statistics without shared counters on the data path: each shard copies its own
// numbers into its slot of the board about once a second; readers ($SYS, /metrics) sum the slots.

import Broker
import Synchronization

/// One shard's numbers as last reported.
public struct ShardStats: Sendable {
    public var gauges = ShardGauges()
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// MQTT packets received (of any type).
    public var packetsReceived: UInt64 = 0
    public init() {}
}

/// The per-shard slots (one lock each, taken once a second by its shard and by readers).
public final class StatsBoard: Sendable {
    private final class Slot: Sendable {
        let value = Mutex(ShardStats())
    }
    private let slots: [Slot]
    /// When the broker started (monotonic ns).
    public let startedAt: UInt64

    init(shards: Int, startedAt: UInt64) {
        slots = (0..<shards).map { _ in Slot() }
        self.startedAt = startedAt
    }

    func update(shard: Int, _ stats: ShardStats) {
        slots[shard].value.withLock { $0 = stats }
    }

    /// Every shard's last report.
    public func snapshot() -> [ShardStats] {
        slots.map { slot in slot.value.withLock { $0 } }
    }
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
            counters.add(s.gauges.counters)
        }
    }
}
