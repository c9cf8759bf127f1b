// The store's record format and recovery, without files: CRC-32C against its check value, frames
// that round-trip, torn tails cut at the last intact record, corrupt records skipped with the
// records after them kept, and the newest complete snapshot chosen among a shard's segments.

import ApusBase
import XCTest
@testable import Store

final class StoreTests: XCTestCase {
    func testCRC32CCheckValues() {
        // The standard check value (RFC 3720 B.4 and every CRC catalogue): "123456789" → E3069283.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)  // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum(Array(0...31)), 0x46DD_794E)
        // Continuing gives the CRC of the whole.
        let bytes = Array("The quick brown fox jumps over the lazy dog".utf8)
        let whole = CRC32C.checksum(bytes)
        let part = bytes.withUnsafeBytes { b in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[13...]), continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[..<13])))
        }
        XCTAssertEqual(part, whole)
    }

    func testCRC32CInstructionMatchesTheTables() {
        // Where the processor's instruction is used, it gives the software's CRC for every length
        // and alignment (the 8-byte loop and its tail), and the check value.
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<1100).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes.withUnsafeBytes { b in
            for start in 0..<9 {
                for end in stride(from: start, through: b.count, by: 37) {
                    let view = UnsafeRawBufferPointer(rebasing: b[start..<end])
                    XCTAssertEqual(CRC32C.checksum(view, continuing: 0x1234_5678), CRC32C.softwareChecksum(view, continuing: 0x1234_5678))
                }
            }
        }
        Array("123456789".utf8).withUnsafeBytes { XCTAssertEqual(CRC32C.softwareChecksum($0), 0xE306_9283) }
    }

    func retained(_ topic: String, _ payload: String, time: UInt64, shard: UInt8 = 0) -> RetainedRecord {
        RetainedRecord(wallTime: time, node: 0, shard: shard, qos: 1, topic: Array(topic.utf8),
                       properties: [0x02, 0, 0, 0, 60], payload: Array(payload.utf8))
    }

    /// A segment: start, the snapshot records, its end, then the appended records.
    func segment(_ number: UInt64, snapshot: [RetainedRecord], appended: [RetainedRecord], completeSnapshot: Bool = true,
                 salt: UInt32 = 0x5A17) -> [UInt8] {
        var buffer = ByteBuffer()
        var sequence: UInt64 = number * 1000
        func next() -> UInt64 { sequence += 1; return sequence }
        SegmentStart(shard: 0, shardCount: 2, segment: number, wallTime: 1, salt: salt).append(sequence: next(), into: &buffer)
        for r in snapshot { r.append(sequence: next(), salt: salt, into: &buffer) }
        if completeSnapshot { SnapshotEnd.append(records: UInt64(snapshot.count), sequence: next(), salt: salt, into: &buffer) }
        for r in appended { r.append(sequence: next(), salt: salt, into: &buffer) }
        defer { buffer.deallocate() }
        return buffer.readableArray()
    }

    func records(_ bytes: [UInt8], salt: UInt32 = 0x5A17) -> (types: [UInt8], scan: LogScan) {
        var types: [UInt8] = []
        let scan = bytes.withUnsafeBytes { LogRecord.scan($0, salt: salt) { types.append($0.type) } }
        return (types, scan)
    }

    func testRecordsRoundTrip() throws {
        let a = retained("a/b", "hello", time: 5, shard: 1)
        let deletion = RetainedRecord(wallTime: 6, node: 3, shard: 1, qos: 0, topic: Array("a/b".utf8), properties: [], payload: [])
        var buffer = ByteBuffer()
        a.append(sequence: 1, into: &buffer)
        deletion.append(sequence: 2, into: &buffer)
        let bytes = buffer.readableArray()
        buffer.deallocate()
        var decoded: [RetainedRecord] = []
        var sequences: [UInt64] = []
        let scan = bytes.withUnsafeBytes { LogRecord.scan($0) { decoded.append(RetainedRecord($0)!); sequences.append($0.sequence) } }
        XCTAssertEqual(decoded, [a, deletion])
        XCTAssertEqual(sequences, [1, 2])
        XCTAssertEqual(scan, LogScan(validEnd: bytes.count, skipped: [], outOfOrder: 0, records: 2))
        XCTAssertTrue(decoded[1].isDeletion)
        XCTAssertTrue(deletion.isNewer(than: a))
    }

    func testTornTailIsCutAtTheLastIntactRecord() {
        let bytes = segment(1, snapshot: [retained("t/1", "one", time: 1)], appended: [retained("t/2", "two", time: 2)])
        let whole = records(bytes).scan
        XCTAssertEqual(whole.validEnd, bytes.count)
        // Every cut inside the last record: the scan ends where that record began.
        let lastStart = bytes.count - (LogRecord.headerSize + 24 + 3 + 5 + 3)
        for cut in lastStart..<bytes.count {
            let (types, scan) = records(Array(bytes[..<cut]))
            XCTAssertEqual(types, [1, 16, 2], "cut at \(cut)")
            XCTAssertEqual(scan.validEnd, lastStart)
            XCTAssertEqual(scan.skipped, [])
            XCTAssertEqual(scan.tornBytes(fileSize: cut), cut - lastStart)
        }
        // Zeros after the end (a preallocated or half-flushed page): a torn tail too.
        let (types, scan) = records(bytes + [UInt8](repeating: 0, count: 100))
        XCTAssertEqual(types, [1, 16, 2, 16])
        XCTAssertEqual(scan.validEnd, bytes.count)
        // Read with another salt, nothing after the first record is a record.
        XCTAssertEqual(records(bytes, salt: 1).types, [1])
    }

    func testAFrameHiddenInAPayloadIsNotTakenForARecordAfterDamage() {
        // A client's payload that is itself a well-formed (unsalted) frame of a retained message.
        var inner = ByteBuffer()
        retained("evil/topic", "planted", time: .max).append(sequence: 99, into: &inner)
        var carrier = retained("t/carrier", "x", time: 1)
        carrier.payload = inner.readableArray()
        inner.deallocate()
        var bytes = segment(1, snapshot: [], appended: [carrier, retained("t/after", "kept", time: 2)])
        var offsets: [Int] = []
        _ = bytes.withUnsafeBytes { LogRecord.scan($0, salt: 0x5A17) { offsets.append($0.offset) } }
        XCTAssertEqual(offsets.count, 4)  // start, snapshot end, carrier, after
        // Damage the carrier's CRC: the scan must look for the next record, past the planted frame.
        bytes[offsets[2] + 4] ^= 0xFF
        var topics: [String] = []
        _ = bytes.withUnsafeBytes { LogRecord.scan($0, salt: 0x5A17) { if let r = RetainedRecord($0) { topics.append(String(decoding: r.topic, as: UTF8.self)) } } }
        XCTAssertEqual(topics, ["t/after"], "the planted frame's CRC does not start from the segment's salt")
        // Unsalted, the same damage would have let the planted frame in: the test would see it.
        var unsalted = segment(1, snapshot: [], appended: [carrier, retained("t/after", "kept", time: 2)], salt: 0)
        unsalted[offsets[2] + 4] ^= 0xFF
        var seen: [String] = []
        _ = unsalted.withUnsafeBytes { LogRecord.scan($0, salt: 0) { if let r = RetainedRecord($0) { seen.append(String(decoding: r.topic, as: UTF8.self)) } } }
        XCTAssertEqual(seen, ["evil/topic", "t/after"])
    }

    func testWithoutACompleteSnapshotTheNewestSegmentIsTakenAsFarAsItIsIntact() {
        var bytes = segment(7, snapshot: [retained("t/a", "1", time: 1)], appended: [retained("t/b", "2", time: 2)])
        // Damage the snapshotEnd record (the third record): no complete snapshot anywhere.
        let end = LogRecord.headerSize + 32 + LogRecord.headerSize + 24 + 3 + 5 + 1
        bytes[end + LogRecord.headerSize] ^= 0x01
        var image = RetainedImage()
        let result = bytes.withUnsafeBytes { LogRecovery.recover([SegmentFile(number: 7, bytes: $0)], into: &image) }
        XCTAssertEqual(result.base, 7)
        XCTAssertTrue(result.incompleteBase)
        XCTAssertEqual(result.skipped.count, 1)
        XCTAssertEqual(Set(image.messages.map { String(decoding: $0.topic, as: UTF8.self) }), ["t/a", "t/b"])
    }

    func testCorruptRecordIsSkippedAndTheRestKept() {
        let records3 = [retained("t/1", "one", time: 1), retained("t/2", "two", time: 2), retained("t/3", "three", time: 3)]
        var bytes = segment(1, snapshot: [], appended: records3)
        let full = records(bytes)
        XCTAssertEqual(full.types, [1, 2, 16, 16, 16])
        // Flip one payload byte of the middle record ("two").
        let second = bytes.count - (LogRecord.headerSize + 24 + 3 + 5 + 5) - (LogRecord.headerSize + 24 + 3 + 5 + 3)
        bytes[second + LogRecord.headerSize + 24 + 3 + 5] ^= 0x40
        let (types, scan) = records(bytes)
        XCTAssertEqual(types, [1, 2, 16, 16], "the damaged record is gone, the one after it kept")
        XCTAssertEqual(scan.skipped.count, 1)
        XCTAssertEqual(scan.skipped[0].lowerBound, second)
        XCTAssertEqual(scan.validEnd, bytes.count)
        // A corrupt length field as well.
        bytes[second] = 0xFF
        XCTAssertEqual(records(bytes).types, [1, 2, 16, 16])
    }

    func testRecoveryTakesTheNewestCompleteSnapshotAndItsAppends() {
        let old = segment(3, snapshot: [retained("t/old", "x", time: 1)], appended: [retained("t/a", "1", time: 2)])
        let base = segment(4, snapshot: [retained("t/a", "1", time: 2), retained("t/b", "2", time: 3)],
                           appended: [retained("t/b", "3", time: 4), RetainedRecord(wallTime: 5, node: 0, shard: 0, qos: 0, topic: Array("t/a".utf8), properties: [], payload: [])])
        let torn = segment(5, snapshot: [retained("t/z", "never", time: 6)], appended: [], completeSnapshot: false)
        var image = RetainedImage()
        let result = old.withUnsafeBytes { o in
            base.withUnsafeBytes { b in
                torn.withUnsafeBytes { t in
                    LogRecovery.recover([SegmentFile(number: 3, bytes: o), SegmentFile(number: 5, bytes: t), SegmentFile(number: 4, bytes: b)],
                                        into: &image)
                }
            }
        }
        XCTAssertEqual(result.base, 4)
        XCTAssertEqual(result.obsolete, [3])
        XCTAssertEqual(result.abandoned, [5])
        XCTAssertEqual(result.shardCount, 2)
        XCTAssertEqual(result.validEnd, base.count)
        XCTAssertEqual(result.undecodable, 0)
        XCTAssertEqual(result.lastSequence, 4000 + 6)
        XCTAssertEqual(image.messages.map { String(decoding: $0.payload, as: UTF8.self) }, ["3"], "t/a deleted, t/b overwritten")
    }

    func testImagesMergeByStamp() {
        var zero = RetainedImage(), one = RetainedImage()
        zero.apply(retained("t", "from 0", time: 10, shard: 0))
        one.apply(RetainedRecord(wallTime: 11, node: 0, shard: 1, qos: 0, topic: Array("t".utf8), properties: [], payload: []))
        one.apply(retained("u", "from 1", time: 12, shard: 1))
        zero.apply(retained("u", "older", time: 9, shard: 0))
        zero.merge(one)
        XCTAssertEqual(zero.messages.map { String(decoding: $0.payload, as: UTF8.self) }, ["from 1"])
        // Equal times: the higher shard wins, on every replica alike.
        var a = RetainedImage()
        a.apply(retained("v", "s1", time: 20, shard: 1))
        a.apply(retained("v", "s0", time: 20, shard: 0))
        XCTAssertEqual(a.messages.map { String(decoding: $0.payload, as: UTF8.self) }, ["s1"])
    }

    func testPartitionedRecoveryMatchesOneImageAndSortsByTopicHash() {
        // Start-up leaves each log's retained records undecoded in partitions (topic hash modulo
        // their count), in log order; decoding them gives what one image gets, each topic where
        // its hash says, deletions and overwrites included.
        var snapshot: [RetainedRecord] = []
        for i in 0..<300 { snapshot.append(retained("p/\(i)", "v\(i)", time: UInt64(i + 1))) }
        var appended: [RetainedRecord] = []
        for i in stride(from: 0, to: 300, by: 7) { appended.append(retained("p/\(i)", "new", time: 1000 + UInt64(i))) }
        for i in stride(from: 0, to: 300, by: 11) {
            appended.append(RetainedRecord(wallTime: 2000 + UInt64(i), node: 0, shard: 0, qos: 0, topic: Array("p/\(i)".utf8), properties: [], payload: []))
        }
        let bytes = segment(1, snapshot: snapshot, appended: appended)
        var whole = RetainedImage()
        var parts = Array(repeating: RetainedImage(), count: 3)
        var pending = Array(repeating: [StoredRecord](), count: 3)
        var sessions = SessionImage()
        bytes.withUnsafeBytes { b in
            _ = LogRecovery.recover([SegmentFile(number: 1, bytes: b)], into: &whole)
            _ = LogRecovery.recover([SegmentFile(number: 1, bytes: b)], into: &parts, sessions: &sessions)
            _ = LogRecovery.recover([SegmentFile(number: 1, bytes: b)], pending: &pending, sessions: &sessions)
            for p in 0..<3 {
                for record in pending[p] {
                    XCTAssertEqual(RetainedImage.topicHash(record).map { Int($0 % 3) }, p)
                }
            }
        }
        func payloads(_ images: [RetainedImage]) -> [String: String] {
            var out: [String: String] = [:]
            for image in images {
                for m in image.messages { out[String(decoding: m.topic, as: UTF8.self)] = String(decoding: m.payload, as: UTF8.self) }
            }
            return out
        }
        let expected = payloads([whole])
        XCTAssertEqual(expected.count, 300 - 28)
        XCTAssertEqual(expected["p/7"], "new")
        XCTAssertNil(expected["p/11"])
        XCTAssertEqual(expected["p/1"], "v1")
        XCTAssertEqual(payloads(parts), expected)
        for p in 0..<3 {
            for m in parts[p].messages { XCTAssertEqual(Int(FNV1a.hash(m.topic) % 3), p) }
        }
        XCTAssertEqual(whole.count, 300, "deletions are kept in the image while merging")
    }

    func testTopicHashRefusesBodiesThatLieAboutTheirLengths() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        retained("a/b", "x", time: 1).append(sequence: 1, into: &buffer)
        var bytes = buffer.readableArray()
        bytes.withUnsafeBytes { b in
            let record = LogRecord.record(in: b, at: 0)!
            XCTAssertEqual(RetainedImage.topicHash(record), FNV1a.hash(Array("a/b".utf8)))
        }
        // The topic length says one byte more than the body holds (the CRC is not checked here).
        bytes[LogRecord.headerSize + 12] = 4
        bytes.withUnsafeBytes { b in
            let body = UnsafeRawBufferPointer(rebasing: b[LogRecord.headerSize...])
            XCTAssertNil(RetainedImage.topicHash(StoredRecord(type: StoreRecordType.retainedSet.rawValue, sequence: 1, offset: 0, body: body)))
            XCTAssertNil(RetainedImage.topicHash(StoredRecord(type: StoreRecordType.retainedDelete.rawValue, sequence: 1, offset: 0, body: body)))
            XCTAssertNil(RetainedImage.topicHash(StoredRecord(type: StoreRecordType.sessionImage.rawValue, sequence: 1, offset: 0, body: body)))
        }
    }

    func testSegmentNames() {
        XCTAssertEqual(SegmentName.make(prefix: "apus", shard: 3, segment: 42), "apus-s3-0000000042.log")
        XCTAssertEqual(SegmentName.parse("apus-s3-0000000042.log", prefix: "apus")?.segment, 42)
        XCTAssertEqual(SegmentName.parse("apus-s3-0000000042.log", prefix: "apus")?.shard, 3)
        XCTAssertNil(SegmentName.parse("other-s3-0000000042.log", prefix: "apus"))
        XCTAssertNil(SegmentName.parse("apus-s3-00x.log", prefix: "apus"))
    }
}
