// Identifies a connection slot of one shard, with a generation so that stale completions and
// messages addressed to a slot's previous occupant are recognised and ignored.

/// A connection slot index plus the generation of its current occupant.
public struct ConnectionID: Hashable, Sendable {
    public var slot: Int32
    public var generation: UInt32

    @inlinable public init(slot: Int32, generation: UInt32) { self.slot = slot; self.generation = generation }

    /// Packs into 64 bits (for io_uring user data and mailbox records).
    @inlinable public var packed: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: slot)) }
    @inlinable public init(packed: UInt64) {
        slot = Int32(bitPattern: UInt32(truncatingIfNeeded: packed))
        generation = UInt32(truncatingIfNeeded: packed >> 32)
    }
}
