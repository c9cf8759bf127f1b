// The store's files at start: every shard's log is read and recovered in parallel (one thread per
// shard's files), the retained images merged, and each shard given a fresh segment holding the
// snapshot of what it owns now, before the old segments are deleted and any client is served.
// A restart therefore also compacts, and a change of the shard count re-homes the messages.
// Start-up only: the shards append to their segments through their rings (Shard+Store.swift).

import ApusBase
import CApusSys
import Logging
import Store
@preconcurrency import Glibc

/// Where and how the shards keep their logs.
public struct StoreConfig: Sendable {
    /// The directory of the segment files (mosquitto's persistence_location; "" = the current one).
    public var directory: String
    /// The files' name prefix (from mosquitto's persistence_file).
    public var prefix = "apus"
    /// Seconds between compactions of a segment that changed (mosquitto's autosave_interval); 0: by
    /// size only.
    public var autosaveIntervalSeconds: Double = 1800
    /// A segment is compacted once it is larger than this and four times its snapshot.
    public var compactionMinimumBytes: UInt64 = 16 << 20
    /// Refuse to start on a damaged log (corrupt records before its end, no complete snapshot),
    /// naming the file and offset, instead of skipping what is damaged. A torn tail is cut either
    /// way (it is what a crash during a write leaves).
    public var strict = false

    public init(directory: String) { self.directory = directory }

    var path: String { directory.isEmpty ? "." : directory }
    func file(shard: Int, segment: UInt64) -> String { "\(path)/\(SegmentName.make(prefix: prefix, shard: shard, segment: segment))" }
}

/// One shard's open segment, handed to the shard.
struct OpenSegment: Sendable {
    var fd: Int32
    var segment: UInt64
    var salt: UInt32
    var size: UInt64
    var snapshotBytes: UInt64
    var lastSequence: UInt64
}

/// What start-up recovered: the live retained messages (in partitions, by owner shard), each
/// shard's persistent sessions and each shard's new segment.
final class RecoveredStore: @unchecked Sendable {
    /// Released once every shard loaded them (every shard loads every partition: its replica).
    var retained: [[RetainedRecord]]
    var sessions: [[SessionRecord]]
    let segments: [OpenSegment]
    init(retained: [[RetainedRecord]], sessions: [[SessionRecord]], segments: [OpenSegment]) {
        self.retained = retained; self.sessions = sessions; self.segments = segments
    }
}

enum StoreFiles {
    /// Reads and recovers every segment under `config`, writes each of `shards` shards its new
    /// segment (synced), deletes the old ones, and returns the state to load.
    static func recover(_ config: StoreConfig, shards: Int, logger: Logger) throws -> RecoveredStore {
        if mkdir(config.path, 0o700) != 0 && errno != EEXIST {
            throw SystemCallError("mkdir \(config.path)", errno: errno)
        }
        guard let dir = opendir(config.path) else { throw SystemCallError("opendir \(config.path)", errno: errno) }
        var found: [Int: [(segment: UInt64, name: String)]] = [:]
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let parsed = SegmentName.parse(name, prefix: config.prefix), parsed.segment < UInt64.max / 2, parsed.shard >= 0 {
                found[parsed.shard, default: []].append((parsed.segment, "\(config.path)/\(name)"))
            }
        }
        closedir(dir)
        let started = apus_monotonic_ns()

        // Each shard's files on a thread of their own.
        let results = found.keys.sorted().map { ShardRecovery(shard: $0, segments: found[$0]!, partitions: shards) }
        defer { for r in results { r.release() } }  // every thread that reads their bytes is joined by then
        try runThreads(results.map { r in ("apus-recover-\(r.shard)", { r.run(config) }) })
        let read = apus_monotonic_ns()

        if config.strict {
            for r in results {
                let file = r.log.base.flatMap { base in r.segments.first { $0.segment == base }?.name } ?? "?"
                if let range = r.log.skipped.first {
                    throw StoreDamageError(description: "\(file): corrupt record at offset \(range.lowerBound) (\(range.count) bytes; \(r.log.skipped.count) damaged stretch(es)); persistence_strict is on")
                }
                if r.log.undecodable > 0 {
                    throw StoreDamageError(description: "\(file): \(r.log.undecodable) record(s) that do not decode; persistence_strict is on")
                }
                if r.log.incompleteBase {
                    throw StoreDamageError(description: "\(file): no complete snapshot; persistence_strict is on")
                }
            }
        }
        var lastSequence: UInt64 = 0
        var newest: UInt64 = 0
        var old: [String] = []
        var damaged: [String] = []
        for r in results {
            if let error = r.error { throw error }
            lastSequence = max(lastSequence, r.log.lastSequence)
            newest = max(newest, r.segments.map(\.segment).max() ?? 0)
            if r.log.incompleteBase {
                damaged += r.segments.map(\.name)
            } else {
                old += r.segments.map(\.name)
            }
            let file = r.log.base.flatMap { base in r.segments.first { $0.segment == base }?.name } ?? "-"
            var metadata: Logger.Metadata = ["shard": "\(r.shard)", "file": "\(file)", "records": "\(r.log.records)"]
            if r.log.validEnd < r.log.fileSize { metadata["torn_tail_bytes"] = "\(r.log.fileSize - r.log.validEnd)" }
            logger.info("store: log recovered", metadata: metadata)
            for range in r.log.skipped {
                logger.warning("store: corrupt records skipped", metadata: ["file": "\(file)", "offset": "\(range.lowerBound)", "bytes": "\(range.count)"])
            }
            if r.log.undecodable > 0 { logger.warning("store: undecodable records skipped", metadata: ["file": "\(file)", "count": "\(r.log.undecodable)"]) }
            for segment in r.log.abandoned {
                logger.warning("store: segment with an incomplete snapshot ignored (a compaction that did not finish)",
                               metadata: ["file": "\(r.segments.first { $0.segment == segment }?.name ?? "?")"])
            }
            if r.log.incompleteBase {
                logger.warning("store: no complete snapshot: the newest segment was taken as far as it is intact; its files are kept as .damaged",
                               metadata: ["shard": "\(r.shard)", "file": "\(file)"])
            }
        }

        // The new segments: each shard's snapshot of what it owns, synced, before anything old goes,
        // one thread per shard. Retained messages are owned by topic (FNV-1a modulo the shard
        // count: the partition the readers sorted them into), so every shard's log carries a share
        // and the next recovery is parallel (the shard they were published on may have been one
        // for all of them); each writer first decodes and merges its partition of every log.
        // Sessions go to their client id's home shard (its registry then holds them; the readers
        // sorted them so), with keys and message ids numbered again in each shard's new log.
        let segment = newest + 1
        let writers = (0..<shards).map { shard in
            SegmentWriter(shard: shard, shards: shards, segment: segment, firstSequence: lastSequence, path: config.file(shard: shard, segment: segment),
                          retained: results.map { $0.pending[shard] }, sessions: results.map { $0.sessionRecords[shard] })
        }
        try runThreads(writers.map { w in ("apus-store-\(w.shard)", { w.run() }) })
        var segments: [OpenSegment] = []
        for w in writers {
            if let error = w.error { throw error }
            segments.append(w.result!)
        }
        let wrote = apus_monotonic_ns()
        syncDirectory(config.path)
        for path in old { unlink(path) }
        for path in damaged { rename(path, path + ".damaged") }
        syncDirectory(config.path)
        logger.info("store: recovered", metadata: [
            "directory": "\(config.path)", "retained": "\(writers.reduce(0) { $0 + $1.retained.count })",
            "sessions": "\(writers.reduce(0) { $0 + $1.sessions.count })",
            "session_messages": "\(writers.reduce(0) { $0 + $1.sessions.reduce(0) { $0 + $1.messages.count } })", "segments_read": "\(old.count)",
            "milliseconds": "\((apus_monotonic_ns() - started) / 1_000_000)", "read_ms": "\((read - started) / 1_000_000)",
            "write_ms": "\((wrote - read) / 1_000_000)",
        ])
        return RecoveredStore(retained: writers.map(\.retained), sessions: writers.map(\.sessions), segments: segments)
    }

    /// Runs each body on a thread of its own and returns when all are done, also when one could
    /// not be started (the error is thrown once the others finished).
    static func runThreads(_ bodies: [(name: String, body: @Sendable () -> Void)]) throws {
        var threads: [pthread_t] = []
        var failure: (any Error)?
        for (name, body) in bodies {
            do { threads.append(try spawnThread(name: name, body)) } catch { failure = error; break }
        }
        for t in threads { pthread_join(t, nil) }
        if let failure { throw failure }
    }

    /// Writes all of `bytes` at `offset` (advanced past them); false on an error (errno says which).
    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: inout UInt64) -> Bool {
        var view = bytes
        while !view.isEmpty {
            let n = pwrite(fd, view.baseAddress!, view.count, off_t(offset))
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += UInt64(n)
            view = UnsafeRawBufferPointer(rebasing: view[n...])
        }
        return true
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}

/// `persistence_strict`: the store is damaged and the broker does not start.
public struct StoreDamageError: Error, CustomStringConvertible {
    public var description: String
}

/// One shard's files, recovered on a thread of its own.
final class ShardRecovery: @unchecked Sendable {
    let shard: Int
    let segments: [(segment: UInt64, name: String)]
    /// The retained records by owner partition (topic hash modulo the shard count), undecoded:
    /// they point into `files`, which `release` frees once the writers are done.
    var pending: [[StoredRecord]]
    var files: [UnsafeMutableRawBufferPointer] = []
    var sessions = SessionImage()
    /// `sessions.records`, made on this thread, by home shard (client id's FNV-1a modulo the
    /// shard count).
    var sessionRecords: [[SessionRecord]]
    var log = RecoveredLog()
    var error: SystemCallError?

    init(shard: Int, segments: [(segment: UInt64, name: String)], partitions: Int) {
        self.shard = shard; self.segments = segments
        pending = Array(repeating: [], count: partitions)
        sessionRecords = Array(repeating: [], count: partitions)
    }

    func release() {
        pending = []
        for f in files { f.deallocate() }
        files = []
    }

    func run(_ config: StoreConfig) {
        var segmentFiles: [SegmentFile] = []
        for (segment, path) in segments {
            do {
                let bytes = try Self.readFile(path)
                files.append(bytes)
                segmentFiles.append(SegmentFile(number: segment, bytes: UnsafeRawBufferPointer(bytes)))
            } catch {
                self.error = error
                return
            }
        }
        log = LogRecovery.recover(segmentFiles, pending: &pending, sessions: &sessions)
        let partitions = sessionRecords.count
        for session in sessions.records {
            sessionRecords[partitions > 1 ? Int(FNV1a.hash(session.clientID) % UInt64(partitions)) : 0].append(session)
        }
        sessions = SessionImage()
    }

    /// The file's bytes as an array.
    static func readBytes(_ path: String) throws(SystemCallError) -> [UInt8] {
        let bytes = try readFile(path)
        defer { bytes.deallocate() }
        return Array(bytes)
    }

    /// The file's bytes, allocated (the caller deallocates them).
    static func readFile(_ path: String) throws(SystemCallError) -> UnsafeMutableRawBufferPointer {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open \(path)", errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemCallError("fstat \(path)", errno: errno) }
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, Int(info.st_size)), alignment: 16)
        let size = Int(info.st_size)
        var done = 0
        while done < size {
            let n = Glibc.read(fd, bytes.baseAddress! + done, size - done)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                bytes.deallocate()
                throw SystemCallError("read \(path)", errno: e)
            }
            if n == 0 { break }
            done += n
        }
        return UnsafeMutableRawBufferPointer(rebasing: bytes[..<done])
    }
}

/// One shard's fresh segment at start: its partition of the retained messages merged, written
/// and synced with its sessions, on a thread of its own.
final class SegmentWriter: @unchecked Sendable {
    let shard: Int, shards: Int, segment: UInt64, firstSequence: UInt64, path: String
    /// Every log's records of this shard's partition (undecoded, in log order); after `run`, the
    /// merged live messages.
    var pending: [[StoredRecord]]
    var retained: [RetainedRecord] = []
    var sessions: [SessionRecord]
    var result: OpenSegment?
    var error: SystemCallError?

    /// Every log's sessions homed on this shard; after `run`, merged and numbered.
    var sessionParts: [[SessionRecord]]

    init(shard: Int, shards: Int, segment: UInt64, firstSequence: UInt64, path: String, retained: [[StoredRecord]], sessions: [[SessionRecord]]) {
        self.shard = shard; self.shards = shards; self.segment = segment; self.firstSequence = firstSequence; self.path = path
        self.pending = retained; self.sessions = []; self.sessionParts = sessions
    }

    func run() {
        sessions = SessionImage.merge(records: sessionParts)
        sessionParts = []
        var id: UInt64 = 0
        for i in sessions.indices {
            sessions[i].key = UInt64(i + 1)
            for j in sessions[i].messages.indices {
                id += 1
                sessions[i].messages[j].id = id
            }
        }
        var image = RetainedImage()
        image.reserveCapacity(pending.reduce(0) { $0 + $1.count })
        for part in pending { image.apply(part) }
        pending = []
        retained = image.takeMessages()
        var size = 256
        for i in retained.indices {
            retained[i].shard = UInt8(shard)
            size += 44 + retained[i].topic.count + retained[i].properties.count + retained[i].payload.count
        }
        var buffer = ByteBuffer(capacity: size + sessions.count * 256)
        defer { buffer.deallocate() }
        var sequence = firstSequence
        func next() -> UInt64 { sequence += 1; return sequence }
        let salt = UInt32.random(in: .min ... .max)
        SegmentStart(shard: UInt16(shard), shardCount: UInt16(shards), segment: segment, wallTime: apus_realtime_ns(), salt: salt)
            .append(sequence: next(), into: &buffer)
        var count: UInt64 = 0
        retained.withUnsafeBufferPointer { records in
            for i in records.indices { records[i].append(sequence: next(), salt: salt, into: &buffer) }
        }
        count += UInt64(retained.count)
        for session in sessions {
            session.appendImage(sequence: next(), salt: salt, into: &buffer)
            count += 1
        }
        SnapshotEnd.append(records: count, sequence: next(), salt: salt, into: &buffer)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { error = SystemCallError("open \(path)", errno: errno); return }
        var written: UInt64 = 0
        guard StoreFiles.pwriteAll(fd, buffer.readableView, at: &written) else { error = SystemCallError("write \(path)", errno: errno); return }
        guard fdatasync(fd) == 0 else { error = SystemCallError("fdatasync \(path)", errno: errno); return }
        result = OpenSegment(fd: fd, segment: segment, salt: salt, size: UInt64(buffer.readableBytes),
                             snapshotBytes: UInt64(buffer.readableBytes), lastSequence: sequence)
    }
}
