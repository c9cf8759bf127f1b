// Per-stream accounting for the load generator: what arrived, what arrived twice, what arrived
// out of order, and (given what was sent) what was lost. Exact: every sequence number is tracked.

/// Tracks the sequence numbers received on one publisher → subscriber stream.
public struct StreamTracker: Sendable {
    /// Messages received, duplicates included.
    public private(set) var received: UInt64 = 0
    /// Messages whose sequence number had been received before.
    public private(set) var duplicates: UInt64 = 0
    /// Messages that arrived after a higher sequence number (and were not duplicates).
    public private(set) var outOfOrder: UInt64 = 0
    private var highest: UInt64? = nil
    private var seen: [UInt64] = []  // bit set over sequence numbers

    public init() {}

    /// Records the arrival of sequence number `sequence`.
    public mutating func record(_ sequence: UInt64) {
        received += 1
        let word = Int(sequence >> 6)
        if word >= seen.count { seen.append(contentsOf: repeatElement(0, count: max(word + 1 - seen.count, seen.count))) }
        let bit: UInt64 = 1 << (sequence & 63)
        if seen[word] & bit != 0 {
            duplicates += 1
            return
        }
        seen[word] |= bit
        if let h = highest, sequence < h { outOfOrder += 1 }
        if highest == nil || sequence > highest! { highest = sequence }
    }

    /// Distinct messages received.
    public var unique: UInt64 { received - duplicates }

    /// Sequence numbers below the highest received that have not arrived: the loss so far while
    /// a run goes on (a late, reordered message can still fill a gap).
    public var gaps: UInt64 { highest.map { $0 + 1 - unique } ?? 0 }

    /// Messages sent (sequence numbers 0..<sent) that never arrived.
    public func lost(sent: UInt64) -> UInt64 { sent > unique ? sent - unique : 0 }
}

/// Summed counters of many streams.
public struct StreamTotals: Sendable, Codable, Equatable {
    public var sent: UInt64 = 0
    public var received: UInt64 = 0
    public var duplicates: UInt64 = 0
    public var outOfOrder: UInt64 = 0
    public var lost: UInt64 = 0

    public init() {}

    public mutating func add(_ tracker: StreamTracker, sent: UInt64) {
        self.sent += sent
        received += tracker.received
        duplicates += tracker.duplicates
        outOfOrder += tracker.outOfOrder
        lost += tracker.lost(sent: sent)
    }

    public mutating func add(_ other: StreamTotals) {
        sent += other.sent; received += other.received; duplicates += other.duplicates
        outOfOrder += other.outOfOrder; lost += other.lost
    }
}
