// Recovery of one shard's log from its segment files, and the retained image the shards' logs
// make together. Pure: the runtime reads the files, hands their bytes here, and applies the plan
// (truncate torn tails, delete obsolete or abandoned segments, log what was skipped).

import ApusBase

/// The state recovered from every shard's log: the latest record per retained topic (deletions
/// kept while merging, so that a deletion in one log hides an older message in another).
public struct RetainedImage: Sendable {
    /// A topic as a dictionary key, hashed once with FNV-1a (the standard [UInt8] hash feeds the
    /// hasher byte by byte, the largest cost of recovering a million messages).
    public struct Key: Hashable, Sendable {
        public var bytes: [UInt8]
        let hash: UInt64
        init(_ bytes: [UInt8]) { self.bytes = bytes; hash = bytes.withUnsafeBytes { FNV1a.hash($0, 0, $0.count) } }
        public static func == (a: Key, b: Key) -> Bool { a.hash == b.hash && a.bytes == b.bytes }
        public func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    public private(set) var entries: [Key: RetainedRecord] = [:]

    public init() {}

    public var count: Int { entries.count }

    public mutating func apply(_ record: RetainedRecord) {
        let key = Key(record.topic)
        if let existing = entries[key], existing.isNewer(than: record) { return }
        entries[key] = record
    }

    public mutating func merge(_ other: RetainedImage) {
        if entries.isEmpty {
            self = other
            return
        }
        entries.reserveCapacity(entries.count + other.entries.count)
        for (_, record) in other.entries { apply(record) }
    }

    /// The retained messages (deletions left out).
    public var messages: [RetainedRecord] {
        var out: [RetainedRecord] = []
        out.reserveCapacity(entries.count)
        for (_, record) in entries where !record.isDeletion { out.append(record) }
        return out
    }
}

/// One segment file of a shard's log, as read.
public struct SegmentFile {
    public var number: UInt64
    public var bytes: UnsafeRawBufferPointer
    public init(number: UInt64, bytes: UnsafeRawBufferPointer) { self.number = number; self.bytes = bytes }
}

/// What recovering one shard's log found and what the runtime must do with its files.
public struct RecoveredLog: Sendable {
    /// The segment the state comes from: the newest whose snapshot is complete (nil: none, the
    /// shard starts empty).
    public var base: UInt64?
    /// Older segments (superseded by the base's snapshot) and newer ones whose snapshot was torn
    /// (a compaction that did not finish): to delete.
    public var obsolete: [UInt64] = []
    public var abandoned: [UInt64] = []
    /// Where the base segment's intact records end (a torn tail after it is cut there) and its size.
    public var validEnd = 0
    public var fileSize = 0
    /// Damaged stretches skipped in the base segment (byte ranges), and records of unknown type or
    /// with bodies that do not decode.
    public var skipped: [Range<Int>] = []
    public var undecodable = 0
    public var lastSequence: UInt64 = 0
    public var records = 0
    /// The shard count the base segment was written with.
    public var shardCount: UInt16 = 0
    /// The base has no complete snapshot (its end, or the segment's first record after it, was
    /// damaged): what it holds was taken as far as it is intact, and the files should be kept
    /// for inspection.
    public var incompleteBase = false

    public init() {}
}

public enum LogRecovery {
    /// Recovers a shard's state from its segments into `image`.
    public static func recover(_ segments: [SegmentFile], into image: inout RetainedImage) -> RecoveredLog {
        var sessions = SessionImage()
        return recover(segments, into: &image, sessions: &sessions)
    }

    /// Recovers a shard's retained messages into `image` and its sessions into `sessions`.
    public static func recover(_ segments: [SegmentFile], into image: inout RetainedImage, sessions: inout SessionImage) -> RecoveredLog {
        var result = RecoveredLog()
        let newestFirst = segments.sorted { $0.number > $1.number }
        var fallback: (segment: SegmentFile, start: SegmentStart, scan: LogScan, records: [StoredRecord], last: UInt64)? = nil
        for segment in newestFirst {
            if result.base != nil {
                result.obsolete.append(segment.number)
                continue
            }
            // The first record says the salt of the others' CRCs.
            let start = LogRecord.record(in: segment.bytes, at: 0).flatMap(SegmentStart.init)
            var complete = false
            var records: [StoredRecord] = []
            var lastSequence: UInt64 = 0
            let scan = LogRecord.scan(segment.bytes, salt: start?.salt ?? 0) { record in
                lastSequence = max(lastSequence, record.sequence)
                if record.offset == 0 { return }
                if record.type == StoreRecordType.snapshotEnd.rawValue { complete = true; return }
                records.append(record)
            }
            guard let start, start.segment == segment.number else {
                result.abandoned.append(segment.number)
                continue
            }
            guard complete else {
                result.abandoned.append(segment.number)
                if fallback == nil { fallback = (segment, start, scan, records, lastSequence) }
                continue
            }
            apply(segment: segment, start: start, scan: scan, records: records, lastSequence: lastSequence, to: &result, image: &image,
                  sessions: &sessions)
        }
        if result.base == nil, let f = fallback {
            // No complete snapshot anywhere (its end was damaged): the newest segment's intact
            // records are the best there is.
            result.abandoned.removeAll { $0 == f.segment.number }
            apply(segment: f.segment, start: f.start, scan: f.scan, records: f.records, lastSequence: f.last, to: &result, image: &image,
                  sessions: &sessions)
            result.incompleteBase = true
        }
        return result
    }

    static func apply(segment: SegmentFile, start: SegmentStart, scan: LogScan, records: [StoredRecord], lastSequence: UInt64,
                      to result: inout RecoveredLog, image: inout RetainedImage, sessions: inout SessionImage) {
        result.base = segment.number
        result.shardCount = start.shardCount
        result.validEnd = scan.validEnd
        result.fileSize = segment.bytes.count
        result.skipped = scan.skipped
        result.records = scan.records
        result.lastSequence = lastSequence
        for record in records {
            if let retained = RetainedRecord(record) {
                image.apply(retained)
            } else if sessions.apply(record) {
                continue
            } else {
                result.undecodable += 1
            }
        }
    }
}

/// File names of the segments: `<prefix>-s<shard>-<segment, 10 digits>.log`.
public enum SegmentName {
    public static func make(prefix: String, shard: Int, segment: UInt64) -> String {
        let digits = String(segment)
        return "\(prefix)-s\(shard)-\(String(repeating: "0", count: max(0, 10 - digits.count)))\(digits).log"
    }

    /// (shard, segment) of a file name made by `make` with `prefix`.
    public static func parse(_ name: String, prefix: String) -> (shard: Int, segment: UInt64)? {
        guard name.hasPrefix(prefix + "-s"), name.hasSuffix(".log") else { return nil }
        let middle = name.dropFirst(prefix.count + 2).dropLast(4)
        let parts = middle.split(separator: "-")
        guard parts.count == 2, let shard = Int(parts[0]), let segment = UInt64(parts[1]) else { return nil }
        return (shard, segment)
    }
}
