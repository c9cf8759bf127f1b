// A shard's log: the records its core appends (ShardCore+Store.swift) go out in one write per
// loop turn through the shard's own ring (group commit: what accumulates while a write is in
// flight goes in the next one), at the end of the segment; with `persistence_durability synced`
// an fdatasync follows. Only then does the core hear that the records are durable and let the
// acknowledgements that waited for them go. A segment grown past its compaction size (or older
// than autosave_interval, if it changed) is replaced: a new segment starts with the core's
// snapshot, is written and synced, and the old one is deleted. A failed write (a full disk) is
// retried every second; meanwhile acknowledgements stay held and flow control stops reading the
// publishers who wait for them.

import ApusBase
import CApusSys
import Broker
import IOUring
import Logging
import Store
@preconcurrency import Glibc

final class ShardLog {
    let config: StoreConfig
    let shard: Int
    let shardCount: Int
    let durability: StoreDurability
    var fd: Int32
    var segment: UInt64
    /// Bytes of the segment written so far (where the next write goes).
    var offset: UInt64
    var snapshotBytes: UInt64
    /// The records being written, and the sequence they bring the log up to.
    var writing = ByteBuffer()
    var covers: UInt64 = 0
    enum State { case idle, writing, syncing }
    var state = State.idle
    /// A compaction in progress: the segment it replaces.
    var replacing: (fd: Int32, segment: UInt64)? = nil
    var lastCompaction: UInt64
    var changedSinceCompaction = false
    /// After a failed write or sync: when to try again.
    var retryAt: UInt64? = nil
    /// After a compaction could not open its new segment: not before this (appends go on).
    var compactionRetryAt: UInt64 = 0
    var failures: UInt64 = 0
    var lastFailureLogged: UInt64 = 0
    /// For /metrics.
    var bytesWritten: UInt64 = 0
    var totalFailures: UInt64 = 0
    var compactions: UInt64 = 0
    /// Fault injection: when the records waiting now began to wait (0: none wait).
    var pendingSince: UInt64 = 0

    init(config: StoreConfig, shard: Int, shardCount: Int, durability: StoreDurability, segment: OpenSegment, now: UInt64) {
        self.config = config
        self.shard = shard
        self.shardCount = shardCount
        self.durability = durability
        fd = segment.fd
        self.segment = segment.segment
        offset = segment.size
        snapshotBytes = segment.snapshotBytes
        lastCompaction = now
    }

    deinit { writing.deallocate() }
}

extension Shard {
    /// End of a loop turn: start the next write if none is in flight (or a compaction when due).
    func storeAfterTurn(now: UInt64) {
        guard let log = storeLog else { return }
        core.storeEndOfTurn()
        guard log.state == .idle else { return }
        if let retry = log.retryAt {
            guard now >= retry else { return }
            log.retryAt = nil
            submitStoreWrite(log)  // what is left (after a failed sync: the whole batch), at its offset
            return
        }
        if compactionDue(log, now: now) {
            startCompaction(log, now: now)
            return
        }
        guard !core.storeRecords.isEmpty else { return }
        let delay = group.config.faultStoreWriteDelayNanoseconds
        if delay > 0 {
            if log.pendingSince == 0 { log.pendingSince = now }
            guard now &- log.pendingSince >= delay else { return }
            log.pendingSince = 0
        }
        swap(&log.writing, &core.storeRecords)
        log.covers = core.storeSequence
        log.changedSinceCompaction = true
        submitStoreWrite(log)
    }

    func compactionDue(_ log: ShardLog, now: UInt64) -> Bool {
        guard now >= log.compactionRetryAt else { return false }
        if log.offset > max(log.config.compactionMinimumBytes, 4 * log.snapshotBytes) { return true }
        let interval = log.config.autosaveIntervalSeconds
        return interval > 0 && log.changedSinceCompaction && Double(now &- log.lastCompaction) / 1e9 >= interval
    }

    func submitStoreWrite(_ log: ShardLog) {
        log.state = .writing
        let view = log.writing.readableView
        ring.prepareWrite(fd: log.fd, bytes: view.baseAddress!, count: view.count, offset: log.offset,
                          userData: UserData.make(.storeWrite))
    }

    /// A new segment: the snapshot of what this shard owns (which covers every record appended so
    /// far: those not written yet are dropped), then what follows.
    func startCompaction(_ log: ShardLog, now: UInt64) {
        let next = log.segment + 1
        let path = log.config.file(shard: index, segment: next)
        let newFD = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard newFD >= 0 else {
            // No new segment (no descriptor, no inode): keep appending to this one, try later.
            let code = errno
            log.compactionRetryAt = now + 10_000_000_000
            logger.error("store: cannot start a new segment: open \(path): \(String(cString: strerror(code))); compaction retried in 10 s")
            return
        }
        core.storeRecords.clear()
        log.writing.clear()
        let salt = UInt32.random(in: .min ... .max)
        SegmentStart(shard: UInt16(index), shardCount: UInt16(log.shardCount), segment: next, wallTime: apus_realtime_ns(), salt: salt)
            .append(sequence: core.nextStoreSequence(), into: &log.writing)
        core.storeSalt = salt  // the snapshot's records and every later one
        let records = core.appendStoreSnapshot(into: &log.writing)
        SnapshotEnd.append(records: records, sequence: core.nextStoreSequence(), salt: salt, into: &log.writing)
        log.covers = core.storeSequence
        log.replacing = (log.fd, log.segment)
        log.fd = newFD
        log.segment = next
        log.offset = 0
        log.snapshotBytes = UInt64(log.writing.readableBytes)
        log.lastCompaction = now
        log.changedSinceCompaction = false
        submitStoreWrite(log)
    }

    func storeCompleted(_ completion: Completion, now: UInt64) {
        guard let log = storeLog else { return }
        let result = Int(completion.result)
        if log.state == .writing {
            guard result >= 0 else {
                storeFailed(log, "write \(log.config.file(shard: index, segment: log.segment))", errno: Int32(-result), now: now)
                return
            }
            log.offset += UInt64(result)
            log.bytesWritten += UInt64(result)
            log.writing.moveReaderIndex(forwardBy: result)
            if !log.writing.isEmpty {
                submitStoreWrite(log)  // a short write: the rest
                return
            }
            if log.replacing != nil || log.durability == .synced {
                log.state = .syncing
                ring.prepareSync(fd: log.fd, dataOnly: true, userData: UserData.make(.storeSync))
                return
            }
        } else if log.state == .syncing {
            guard result >= 0 else {
                // After a failed sync the kernel may have dropped the dirty pages (and a second
                // sync would succeed without them): write the whole batch again, then sync.
                log.offset -= UInt64(log.writing.readerIndex)
                log.writing.readerIndex = 0
                storeFailed(log, "fdatasync \(log.config.file(shard: index, segment: log.segment))", errno: Int32(-result), now: now)
                return
            }
            if let old = log.replacing {
                // The new segment is synced; its name must be too before the old one goes.
                StoreFiles.syncDirectory(log.config.path)
                Glibc.close(old.fd)
                unlink(log.config.file(shard: index, segment: old.segment))
                log.replacing = nil
                log.compactions += 1
            }
        }
        log.state = .idle
        log.writing.clear()
        core.storeUnavailable = false
        core.inputArrivedAfter = turnArrival  // input the released acknowledgements resume is not a receive's
        core.storeDurable(through: log.covers)
        if log.failures > 0 && log.retryAt == nil {
            logger.notice("store: writing again", metadata: ["failures": "\(log.failures)"])
            log.failures = 0
        }
    }

    /// A write or sync failed: keep what was to be written, try again in a second.
    func storeFailed(_ log: ShardLog, _ operation: String, errno code: Int32, now: UInt64) {
        core.storeUnavailable = true
        log.failures += 1
        log.totalFailures += 1
        log.state = .idle
        log.retryAt = now + 1_000_000_000
        if now &- log.lastFailureLogged > 10_000_000_000 || log.failures == 1 {
            log.lastFailureLogged = now
            logger.error("store: \(operation) failed: \(String(cString: strerror(code))); acknowledgements of stored messages wait, retrying every second",
                         metadata: ["failures": "\(log.failures)"])
        }
    }

    /// At stop: what is left goes out with plain writes, synced. A write still in flight is
    /// written again from its own buffer (the same bytes at the same offset), which is not touched
    /// while the kernel may read it; the old segment of a compaction goes only if all of it worked.
    func flushStoreAtShutdown() {
        guard let log = storeLog else { return }
        var offset = log.offset
        var ok = StoreFiles.pwriteAll(log.fd, log.writing.readableView, at: &offset)
        ok = ok && StoreFiles.pwriteAll(log.fd, core.storeRecords.readableView, at: &offset)
        ok = ok && fdatasync(log.fd) == 0
        if !ok { logger.error("store: writing at stop failed: \(String(cString: strerror(errno)))") }
        core.storeRecords.clear()
        Glibc.close(log.fd)
        if let old = log.replacing {
            if ok {
                StoreFiles.syncDirectory(log.config.path)
                unlink(log.config.file(shard: index, segment: old.segment))
            }
            Glibc.close(old.fd)
        }
    }
}
