// `apus --import-mosquitto PATH`: Mosquitto's persistence file into an empty store. The file is
// read (Store's MosquittoDB), its retained messages and sessions written as one shard's segment
// (a complete snapshot, synced; the broker's next start spreads them over its shards), then the
// store is read back through the recovery and the source read a second time, and the three
// checksums are compared.

import ApusBase
import CApusSys
import Store
@preconcurrency import Glibc

public struct ImportSummary: Sendable {
    public var file: String
    public var retained: Int
    public var sessions: Int
    public var subscriptions: Int
    public var messages: Int
    public var awaitingRelease: Int
    public var released: Int
    public var skipped: Int
    public var imported: UInt64
    public var secondRead: UInt64
    public var readBack: UInt64
    public var readBackRetained: Int
    public var readBackSessions: Int
    public var readBackMessages: Int

    public var verified: Bool {
        imported == secondRead && imported == readBack && readBackRetained == retained && readBackSessions == sessions
            && readBackMessages == messages
    }
}

public enum StoreImport {
    public static func importMosquitto(_ source: String, into config: StoreConfig) throws -> ImportSummary {
        if mkdir(config.path, 0o700) != 0 && errno != EEXIST { throw SystemCallError("mkdir \(config.path)", errno: errno) }
        if let dir = opendir(config.path) {
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if SegmentName.parse(name, prefix: config.prefix) != nil {
                    throw MosquittoDBError(description: "\(config.path) holds a store already (\(name)): import into an empty persistence_location")
                }
            }
        }
        let now = apus_realtime_ns()
        let bytes = try ShardRecovery.readBytes(source)
        let data = try bytes.withUnsafeBytes { try MosquittoDB.read($0, now: now) }
        let imported = StoreDigest.of(retained: data.retained, sessions: data.sessions)

        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var sequence: UInt64 = 0
        func next() -> UInt64 { sequence += 1; return sequence }
        let salt = UInt32.random(in: .min ... .max)
        SegmentStart(shard: 0, shardCount: 1, segment: 1, wallTime: now, salt: salt).append(sequence: next(), into: &buffer)
        for r in data.retained { r.append(sequence: next(), salt: salt, into: &buffer) }
        for s in data.sessions { s.appendImage(sequence: next(), salt: salt, into: &buffer) }
        SnapshotEnd.append(records: UInt64(data.retained.count + data.sessions.count), sequence: next(), salt: salt, into: &buffer)
        let path = config.file(shard: 0, segment: 1)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemCallError("open \(path)", errno: errno) }
        var written: UInt64 = 0
        guard StoreFiles.pwriteAll(fd, buffer.readableView, at: &written), fdatasync(fd) == 0 else {
            let code = errno
            close(fd)
            unlink(path)
            throw SystemCallError("write \(path)", errno: code)
        }
        close(fd)
        StoreFiles.syncDirectory(config.path)

        // Read back as a start would, and the source once more.
        let back = try ShardRecovery.readBytes(path)
        var image = RetainedImage()
        var sessions = SessionImage()
        let log = back.withUnsafeBytes { LogRecovery.recover([SegmentFile(number: 1, bytes: $0)], into: &image, sessions: &sessions) }
        let backSessions = sessions.records
        let readBack = log.base == 1 && log.undecodable == 0 && log.skipped.isEmpty
            ? StoreDigest.of(retained: image.messages, sessions: backSessions) : 0
        let again = try ShardRecovery.readBytes(source)
        let second = try again.withUnsafeBytes { try MosquittoDB.read($0, now: now) }
        return ImportSummary(
            file: path, retained: data.retained.count, sessions: data.sessions.count,
            subscriptions: data.sessions.reduce(0) { $0 + $1.subscriptions.count }, messages: data.messages,
            awaitingRelease: data.sessions.reduce(0) { $0 + $1.awaitingRelease.count }, released: data.released, skipped: data.skipped,
            imported: imported, secondRead: StoreDigest.of(retained: second.retained, sessions: second.sessions), readBack: readBack,
            readBackRetained: image.messages.count, readBackSessions: backSessions.count,
            readBackMessages: backSessions.reduce(0) { $0 + $1.messages.count })
    }
}
