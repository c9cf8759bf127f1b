// Broker-wide statistics without shared counters on the data path: each shard copies its own
// numbers into its slot of the board about once a second; readers ($SYS, /metrics) sum the slots.

import Synchronization
import Telemetry

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
