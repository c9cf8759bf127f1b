// The core's side of the durable store: a retained PUBLISH appends its record, its PUBACK (and any
// acknowledgement after it on the same connection) waits until the runtime reports the record
// durable, deletions are repeated in snapshots, a message another shard replaces is released in
// the owner's log, and a snapshot plus load give back the same retained store.

import ApusBase
import Codec
import Store
import XCTest
@testable import Broker

final class StoreHookTests: XCTestCase {
    var config: BrokerConfig {
        var c = BrokerConfig()
        c.persistence = true
        return c
    }

    func connected(_ h: CoreHarness, shard: Int, id: String) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        _ = h.output(c)
        return c
    }

    func publish(_ h: CoreHarness, _ c: CoreHarness.Client, _ topic: String, _ payload: String, qos: QoS, retain: Bool, id: UInt16) {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var t = topic
        var p = payload
        t.withUTF8 { tb in
            p.withUTF8 { pb in
                PublishEncoder.encode(version: .v3_1_1, dup: false, qos: qos, retain: retain, topic: UnsafeRawBufferPointer(tb),
                                      packetID: id, properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                      payload: UnsafeRawBufferPointer(pb), into: &buffer)
            }
        }
        h.send(c, buffer.readableArray())
    }

    /// The records the core appended since the last call (and takes them, as the runtime does).
    func takeRecords(_ core: ShardCore) -> [RetainedRecord] {
        let bytes = core.storeRecords.readableArray()
        core.storeRecords.clear()
        var out: [RetainedRecord] = []
        _ = bytes.withUnsafeBytes { LogRecord.scan($0) { if let r = RetainedRecord($0) { out.append(r) } } }
        return out
    }

    func testRetainedPubAckWaitsForTheRecordAndKeepsItsOrder() throws {
        let h = CoreHarness(shards: 1, config: config)
        let c = connected(h, shard: 0, id: "p")
        publish(h, c, "r/1", "one", qos: .atLeastOnce, retain: true, id: 1)
        publish(h, c, "plain", "two", qos: .atLeastOnce, retain: false, id: 2)
        XCTAssertEqual(h.output(c), [], "no PUBACK before the record is durable, and none overtakes it")
        let records = takeRecords(h.cores[0])
        XCTAssertEqual(records.map { String(decoding: $0.topic, as: UTF8.self) }, ["r/1"])
        XCTAssertEqual(records[0].payload, Array("one".utf8))
        XCTAssertEqual(records[0].qos, 1)
        XCTAssertEqual(h.cores[0].storeWaitingConnections, 1)
        h.cores[0].storeDurable(through: h.cores[0].storeSequence - 1)
        XCTAssertEqual(h.output(c), [], "an earlier sequence does not cover it")
        h.cores[0].storeDurable(through: h.cores[0].storeSequence)
        XCTAssertEqual(h.output(c), [0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02], "PUBACK 1 then 2")
        XCTAssertEqual(h.cores[0].storeWaitingConnections, 0)
        // Not retained, nothing pending: acknowledged at once, nothing stored.
        publish(h, c, "plain", "three", qos: .atLeastOnce, retain: false, id: 3)
        XCTAssertEqual(h.output(c), [0x40, 0x02, 0x00, 0x03])
        XCTAssertEqual(takeRecords(h.cores[0]), [])
    }

    func testDurabilityNoneAcknowledgesAtOnceButStillStores() {
        var c = config
        c.durability = .none
        let h = CoreHarness(shards: 1, config: c)
        let p = connected(h, shard: 0, id: "p")
        publish(h, p, "r", "v", qos: .atLeastOnce, retain: true, id: 7)
        XCTAssertEqual(h.output(p), [0x40, 0x02, 0x00, 0x07])
        XCTAssertEqual(takeRecords(h.cores[0]).count, 1)
    }

    func testWithoutPersistenceNothingIsStored() {
        let h = CoreHarness(shards: 1)
        let p = connected(h, shard: 0, id: "p")
        publish(h, p, "r", "v", qos: .atLeastOnce, retain: true, id: 7)
        XCTAssertEqual(h.output(p), [0x40, 0x02, 0x00, 0x07])
        XCTAssertTrue(h.cores[0].storeRecords.isEmpty)
    }

    func testSysTopicsAreNotStored() {
        let h = CoreHarness(shards: 1, config: config)
        let p = connected(h, shard: 0, id: "p")
        publish(h, p, "$SYS/x", "v", qos: .atLeastOnce, retain: true, id: 7)
        XCTAssertEqual(h.output(p), [0x40, 0x02, 0x00, 0x07])
        XCTAssertEqual(takeRecords(h.cores[0]), [])
    }

    func testReplacedOnAnotherShardIsReleasedInTheOwnersLog() {
        let h = CoreHarness(shards: 2, config: config)
        let a = connected(h, shard: 0, id: "a")
        let b = connected(h, shard: 1, id: "b")
        publish(h, a, "t", "from a", qos: .atMostOnce, retain: true, id: 0)
        XCTAssertEqual(takeRecords(h.cores[0]).count, 1)
        publish(h, b, "t", "", qos: .atMostOnce, retain: true, id: 0)  // b deletes a's message
        let deletion = takeRecords(h.cores[1])
        XCTAssertEqual(deletion.count, 1)
        XCTAssertTrue(deletion[0].isDeletion)
        XCTAssertEqual(deletion[0].shard, 1)
        let release = takeRecords(h.cores[0])
        XCTAssertEqual(release.count, 1, "shard 0 owned it: it stores the deletion too")
        XCTAssertEqual(release[0], deletion[0], "the same update, with the same stamp")
        // Merged, either order: gone.
        for order in [[release[0], deletion[0]], [deletion[0], release[0]]] {
            var image = RetainedImage()
            image.apply(RetainedRecord(wallTime: 1, node: 0, shard: 0, qos: 0, topic: Array("t".utf8), properties: [], payload: Array("from a".utf8)))
            for r in order { image.apply(r) }
            XCTAssertEqual(image.messages, [])
        }
    }

    func testSnapshotRepeatsDeletionsTwiceAndLoadRestoresTheStore() throws {
        let h = CoreHarness(shards: 1, config: config)
        let p = connected(h, shard: 0, id: "p")
        publish(h, p, "keep", "kept", qos: .atMostOnce, retain: true, id: 0)
        publish(h, p, "gone", "x", qos: .atMostOnce, retain: true, id: 0)
        publish(h, p, "gone", "", qos: .atMostOnce, retain: true, id: 0)
        _ = takeRecords(h.cores[0])
        func snapshot() -> [RetainedRecord] {
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            h.cores[0].appendStoreSnapshot(into: &buffer)
            var out: [RetainedRecord] = []
            _ = buffer.readableArray().withUnsafeBytes { LogRecord.scan($0) { out.append(RetainedRecord($0)!) } }
            return out
        }
        let first = snapshot()
        XCTAssertEqual(Set(first.map { String(decoding: $0.topic, as: UTF8.self) + ($0.isDeletion ? " deleted" : "") }),
                       ["keep", "gone deleted"])
        XCTAssertEqual(snapshot().filter(\.isDeletion).count, 1, "the deletion once more")
        XCTAssertEqual(snapshot().filter(\.isDeletion).count, 0, "then it is gone")

        // A fresh core loads the snapshot: the same retained store.
        let h2 = CoreHarness(shards: 1, config: config)
        h2.cores[0].wallClockOffset = h.cores[0].wallClockOffset
        h2.cores[0].loadRetained(first, now: h2.now)
        XCTAssertEqual(h2.cores[0].retained.count, 1)
        XCTAssertEqual(h2.cores[0].retained.value(forTopic: "keep")?.payload, Array("kept".utf8))
        XCTAssertEqual(takeRecords(h2.cores[0]), [], "loading stores nothing")
    }

    func testLoadedMessagesKeepWhatIsLeftOfTheirExpiry() {
        let h = CoreHarness(shards: 1, config: config)
        let core = h.cores[0]
        core.wallClockOffset = 1_000_000_000_000
        let wallNow = h.now + core.wallClockOffset
        func record(_ topic: String, expiry: UInt32, ageSeconds: UInt64) -> RetainedRecord {
            RetainedRecord(wallTime: wallNow - ageSeconds * 1_000_000_000, node: 0, shard: 0, qos: 0, topic: Array(topic.utf8),
                           properties: [0x02, UInt8(expiry >> 24), UInt8(expiry >> 16 & 0xFF), UInt8(expiry >> 8 & 0xFF), UInt8(expiry & 0xFF)],
                           payload: [1])
        }
        core.loadRetained([record("a", expiry: 100, ageSeconds: 30), record("b", expiry: 10, ageSeconds: 30),
                           RetainedRecord(wallTime: wallNow + 3_600_000_000_000, node: 0, shard: 0, qos: 0, topic: Array("c".utf8), properties: [], payload: [2])],
                          now: h.now)
        XCTAssertEqual(core.retained.value(forTopic: "a")?.properties, [0x02, 0, 0, 0, 70], "100 s less the 30 s since it was stored")
        XCTAssertNil(core.retained.value(forTopic: "b"), "expired while the broker was down")
        XCTAssertEqual(core.retained.value(forTopic: "c")?.stamp.time, h.now, "a stamp from the future is taken as now")
    }
}
