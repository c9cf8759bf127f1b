// Recovery of one shard's log from its segment files, and the retained image the shards' logs
// make together. Pure: the runtime reads the files, hands their bytes here, and applies the plan
// (truncate torn tails, delete obsolete or abandoned segments, log what was skipped).

import ApusBase

/// Bytes as a dictionary key, hashed once with FNV-1a (the standard [UInt8] hash feeds the hasher
/// byte by byte, the largest cost of recovering a million messages).
public struct HashedBytes: Hashable, Sendable {
    public var bytes: [UInt8]
    /// FNV-1a of the bytes (also what places a topic or client id on its shard).
    public let hash: UInt64
    public init(_ bytes: [UInt8]) { self.bytes = bytes; hash = bytes.withUnsafeBytes { FNV1a.hash($0, 0, $0.count) } }
    public static func == (a: HashedBytes, b: HashedBytes) -> Bool { a.hash == b.hash && a.bytes == b.bytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// The state recovered from every shard's log: the latest record per retained topic (deletions
/// kept while merging, so that a deletion in one log hides an older message in another).
/// The records sit in an array, found by an open-addressed table of their topics' FNV-1a hashes
/// (no Hasher run per lookup, no per-entry node): recovering a million messages is a hash, a
/// probe and an append each.
public struct RetainedImage: Sendable {
    /// A topic as a dictionary key.
    public typealias Key = HashedBytes

    var records: [RetainedRecord] = []
    var hashes: [UInt64] = []
    /// Index + 1 into `records` (0: empty slot); a power of two, at most half full.
    var table: [UInt32] = []

    public init() {}

    /// Topics with a record (deletions included).
    public var count: Int { records.count }

    public mutating func apply(_ record: RetainedRecord) { apply(record, key: Key(record.topic)) }

    public mutating func apply(_ record: RetainedRecord, key: Key) { apply(record, hash: key.hash) }

    /// Keeps `record` unless a newer one of its topic (whose bytes hash to `hash`) is here.
    mutating func apply(_ record: RetainedRecord, hash: UInt64) {
        if (records.count + 1) * 2 > table.count { resize(max(16, table.count * 2)) }
        let mask = table.count - 1
        var i = Int(truncatingIfNeeded: hash ^ (hash >> 29)) & mask
        while table[i] != 0 {
            let index = Int(table[i] - 1)
            if hashes[index] == hash && records[index].topic == record.topic {
                if !records[index].isNewer(than: record) { records[index] = record }
                return
            }
            i = (i + 1) & mask
        }
        table[i] = UInt32(records.count + 1)
        records.append(record)
        hashes.append(hash)
    }

    /// Decodes and keeps each retained record of `records` (in log order; bodies that
    /// `topicHash` accepted).
    public mutating func apply(_ records: [StoredRecord]) {
        if records.count > self.records.count { reserveCapacity(records.count) }
        for stored in records {
            guard let record = RetainedRecord(stored) else { continue }
            let hash = record.topic.withUnsafeBytes { FNV1a.hash($0, 0, $0.count) }
            apply(record, hash: hash)
        }
    }

    /// The FNV-1a hash of a retained record's topic, read in place (its partition), or nil when the
    /// record is not a retained one or its body lies about its lengths.
    public static func topicHash(_ record: StoredRecord) -> UInt64? {
        let body = record.body
        func u32(_ offset: Int) -> Int { Int(UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
        switch record.type {
        case StoreRecordType.retainedSet.rawValue:
            guard body.count >= 24 else { return nil }
            let t = u32(12), pr = u32(16), pl = u32(20)
            guard t + pr + pl == body.count - 24, pl > 0 else { return nil }
            return FNV1a.hash(body, 24, 24 + t)
        case StoreRecordType.retainedDelete.rawValue:
            guard body.count >= 16, u32(12) == body.count - 16 else { return nil }
            return FNV1a.hash(body, 16, body.count)
        default:
            return nil
        }
    }

    /// Room for `count` topics without growing.
    public mutating func reserveCapacity(_ count: Int) {
        records.reserveCapacity(count)
        hashes.reserveCapacity(count)
        var size = max(16, table.count)
        while count * 2 > size { size *= 2 }
        if size > table.count { resize(size) }
    }

    mutating func resize(_ size: Int) {
        table = Array(repeating: 0, count: size)
        let mask = size - 1
        for index in hashes.indices {
            let hash = hashes[index]
            var i = Int(truncatingIfNeeded: hash ^ (hash >> 29)) & mask
            while table[i] != 0 { i = (i + 1) & mask }
            table[i] = UInt32(index + 1)
        }
    }

    /// The other image's records, the newer of two per topic.
    public mutating func merge(_ other: RetainedImage) {
        var other = other
        absorb(&other)
    }

    /// `merge`, leaving `other` empty: the smaller image is walked into the larger, whose arrays
    /// are not copied (nothing else refers to them).
    public mutating func absorb(_ other: inout RetainedImage) {
        defer { other = RetainedImage() }
        if other.records.count > records.count { swap(&self, &other) }
        if other.records.isEmpty { return }
        reserveCapacity(records.count + other.records.count)
        for i in other.records.indices { apply(other.records[i], hash: other.hashes[i]) }
    }

    /// The retained messages (deletions left out).
    public var messages: [RetainedRecord] { records.filter { !$0.isDeletion } }

    /// `messages`, leaving the image empty (its records are moved, not copied).
    public mutating func takeMessages() -> [RetainedRecord] {
        var out: [RetainedRecord] = []
        swap(&out, &records)
        self = RetainedImage()
        out.removeAll { $0.isDeletion }
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
        var images = [RetainedImage()]
        swap(&images[0], &image)
        defer { swap(&images[0], &image) }
        return recover(segments, into: &images, sessions: &sessions)
    }

    /// Recovers a shard's retained messages into `images`, each topic into the one its hash
    /// (FNV-1a) modulo their count picks, and its sessions into `sessions`.
    public static func recover(_ segments: [SegmentFile], into image: inout [RetainedImage], sessions: inout SessionImage) -> RecoveredLog {
        var pending = Array(repeating: [StoredRecord](), count: image.count)
        let log = recover(segments, pending: &pending, sessions: &sessions)
        for p in pending.indices { image[p].apply(pending[p]) }
        return log
    }

    /// Recovers a shard's sessions into `sessions` and leaves its retained records undecoded in
    /// `pending`, each in the partition its topic's hash modulo their count picks, in log order:
    /// start-up decodes and merges each partition of every log on a thread of its own, so one
    /// log holding every retained message is not read by one thread alone. The records point
    /// into the segments' bytes.
    public static func recover(_ segments: [SegmentFile], pending: inout [[StoredRecord]], sessions: inout SessionImage) -> RecoveredLog {
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
            apply(segment: segment, start: start, scan: scan, records: records, lastSequence: lastSequence, to: &result, image: &pending,
                  sessions: &sessions)
        }
        if result.base == nil, let f = fallback {
            // No complete snapshot anywhere (its end was damaged): the newest segment's intact
            // records are the best there is.
            result.abandoned.removeAll { $0 == f.segment.number }
            apply(segment: f.segment, start: f.start, scan: f.scan, records: f.records, lastSequence: f.last, to: &result, image: &pending,
                  sessions: &sessions)
            result.incompleteBase = true
        }
        return result
    }

    static func apply(segment: SegmentFile, start: SegmentStart, scan: LogScan, records: [StoredRecord], lastSequence: UInt64,
                      to result: inout RecoveredLog, image pending: inout [[StoredRecord]], sessions: inout SessionImage) {
        result.base = segment.number
        result.shardCount = start.shardCount
        result.validEnd = scan.validEnd
        result.fileSize = segment.bytes.count
        result.skipped = scan.skipped
        result.records = scan.records
        result.lastSequence = lastSequence
        for record in records {
            if let hash = RetainedImage.topicHash(record) {
                pending[pending.count == 1 ? 0 : Int(hash % UInt64(pending.count))].append(record)
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
