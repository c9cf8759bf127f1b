// The core's side of stored sessions: a persistent session is written whole, then its changes; a
// QoS 1 PUBACK waits for the records of the persistent subscribers it reached, on this shard and
// (through a store barrier) on the others; SUBACK and CONNACK of a stored session wait for its
// records; clean sessions store nothing; a snapshot loaded into a fresh core gives the session
// back with its queue.

import ApusBase
import Codec
import Store
import XCTest
@testable import Broker

final class SessionStoreTests: XCTestCase {
    var config: BrokerConfig {
        var c = BrokerConfig()
        c.persistence = true
        return c
    }

    /// The types of the records the core appended since the last call (taken, as the runtime does),
    /// and the sessions they replay to on top of `image`.
    func takeRecords(_ core: ShardCore, into image: inout SessionImage) -> [StoreRecordType] {
        let bytes = core.storeRecords.readableArray()
        core.storeRecords.clear()
        var types: [StoreRecordType] = []
        _ = bytes.withUnsafeBytes {
            LogRecord.scan($0, salt: core.storeSalt) { r in
                types.append(StoreRecordType(rawValue: r.type)!)
                _ = image.apply(r)
            }
        }
        return types
    }

    func durable(_ h: CoreHarness, _ shard: Int) {
        h.cores[shard].storeDurable(through: h.cores[shard].storeSequence)
        h.pump()
    }

    func endTurn(_ h: CoreHarness) {
        for core in h.cores { core.storeEndOfTurn() }
        h.pump()
    }

    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS = .atLeastOnce) {
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])))
    }

    func publish(_ h: CoreHarness, _ c: CoreHarness.Client, _ topic: String, _ text: String, id: UInt16) {
        var t = Array(topic.utf8), p = Array(text.utf8)
        t.withUnsafeBytes { tb in
            p.withUnsafeBytes { pb in
                h.send(c, .publish(Publish(qos: .atLeastOnce, topic: tb, packetID: id, payload: pb)))
            }
        }
        _ = (t, p)
    }

    /// A persistent subscriber of `filter` on `shard`, CONNACKed and SUBACKed (after the store).
    func persistentSubscriber(_ h: CoreHarness, shard: Int, id: String, filter: String, image: inout SessionImage) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(cleanStart: false, clientID: id)))
        XCTAssertEqual(h.output(c), [], "CONNACK waits for the session's record")
        XCTAssertEqual(takeRecords(h.cores[shard], into: &image), [.sessionImage])
        durable(h, shard)
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
        subscribe(h, c, filter)
        endTurn(h)
        XCTAssertEqual(h.output(c), [], "SUBACK waits for the subscription's record")
        XCTAssertEqual(takeRecords(h.cores[shard], into: &image), [.sessionState])
        durable(h, shard)
        XCTAssertEqual(h.output(c), [0x90, 0x03, 0x00, 0x01, 0x01])
        return c
    }

    func testAPubAckWaitsForTheLocalPersistentSubscribersRecord() throws {
        let h = CoreHarness(shards: 1, config: config)
        var image = SessionImage()
        let sub = persistentSubscriber(h, shard: 0, id: "s", filter: "t/#", image: &image)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "p")))
        XCTAssertEqual(h.output(pub), [0x20, 0x02, 0x00, 0x00], "a clean session's CONNACK does not wait")
        publish(h, pub, "t/1", "one", id: 1)
        XCTAssertEqual(h.output(pub), [], "no PUBACK before the subscriber's copy is durable")
        XCTAssertEqual(try h.received(sub).count, 1, "the subscriber has it meanwhile")
        XCTAssertEqual(takeRecords(h.cores[0], into: &image), [.messageAdd])
        XCTAssertEqual(image.records[0].messages.map(\.state), [.awaitingPubAck])
        durable(h, 0)
        XCTAssertEqual(h.output(pub), [0x40, 0x02, 0x00, 0x01])
        // The subscriber acknowledges: the message is done in the log.
        h.send(sub, .puback(PublishAck(packetID: 1)))
        XCTAssertEqual(takeRecords(h.cores[0], into: &image), [.messageDone])
        XCTAssertEqual(image.records[0].messages, [])
    }

    func testAPubAckWaitsForTheOtherShardsStoreBarrier() throws {
        let h = CoreHarness(shards: 2, config: config)
        var image = SessionImage()
        let sub = persistentSubscriber(h, shard: 1, id: "s", filter: "t/#", image: &image)
        h.send(sub, .disconnect(Disconnect()))
        XCTAssertEqual(takeRecords(h.cores[1], into: &image), [.sessionState], "offline")
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "p")))
        _ = h.output(pub)
        publish(h, pub, "t/1", "one", id: 1)
        XCTAssertEqual(h.output(pub), [], "the message went to shard 1")
        XCTAssertEqual(takeRecords(h.cores[0], into: &image), [], "the publisher's shard stores nothing")
        endTurn(h)  // shard 0's ticket reaches shard 1, whose record is not durable yet
        XCTAssertEqual(h.output(pub), [])
        XCTAssertEqual(takeRecords(h.cores[1], into: &image), [.messageAdd])
        XCTAssertEqual(image.records[0].messages.map(\.state), [.queued], "queued for the offline session")
        durable(h, 1)
        XCTAssertEqual(h.output(pub), [0x40, 0x02, 0x00, 0x01], "shard 1 answered once its log was durable")
    }

    func testCleanSessionsStoreNothing() throws {
        let h = CoreHarness(shards: 2, config: config)
        let sub = h.connect(shard: 1)
        h.send(sub, .connect(Connect(clientID: "s")))
        subscribe(h, sub, "t")
        endTurn(h)
        _ = h.output(sub)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "p")))
        _ = h.output(pub)
        publish(h, pub, "t", "x", id: 3)
        endTurn(h)
        XCTAssertEqual(h.output(pub), [0x40, 0x02, 0x00, 0x03], "shard 1 had nothing to store: answered at once")
        XCTAssertTrue(h.cores[0].storeRecords.isEmpty && h.cores[1].storeRecords.isEmpty)
        XCTAssertEqual(try h.received(sub).count, 1)
    }

    func testASnapshotLoadedIntoAFreshCoreGivesTheSessionBack() throws {
        let h = CoreHarness(shards: 1, config: config)
        var image = SessionImage()
        let sub = persistentSubscriber(h, shard: 0, id: "s", filter: "t/#", image: &image)
        h.send(sub, .disconnect(Disconnect()))
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "p")))
        for i in 1...3 { publish(h, pub, "t/\(i)", "m\(i)", id: UInt16(i)) }
        _ = takeRecords(h.cores[0], into: &image)
        XCTAssertEqual(image.records[0].messages.map(\.payload), (1...3).map { Array("m\($0)".utf8) })

        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        h.cores[0].appendStoreSnapshot(into: &buffer)
        var snapshot = SessionImage()
        _ = LogRecord.scan(buffer.readableView, salt: h.cores[0].storeSalt) { _ = snapshot.apply($0) }
        XCTAssertEqual(snapshot.records.map(\.messages), image.records.map(\.messages), "the snapshot is what the log replays to")

        let h2 = CoreHarness(shards: 1, config: config)
        h2.cores[0].loadSessions(snapshot.records, now: h2.now)
        let back = h2.connect(shard: 0)
        h2.send(back, .connect(Connect(cleanStart: false, clientID: "s")))
        var image2 = SessionImage()
        XCTAssertEqual(takeRecords(h2.cores[0], into: &image2), [.sessionImage], "stored anew under a new key")
        endTurn(h2)
        XCTAssertEqual(takeRecords(h2.cores[0], into: &image2), [.sessionEnd], "the loaded copy ends after it, at the end of the turn")
        durable(h2, 0)
        let packets = try h2.received(back)
        XCTAssertEqual(packets.first, .other("connack", Packet.connack(ConnAck(sessionPresent: true)).encoded(version: .v5)), "session present")
        XCTAssertEqual(packets.dropFirst().compactMap(\.publishTopic), ["t/1", "t/2", "t/3"])
        // A new message reaches the restored subscription.
        let pub2 = h2.connect(shard: 0)
        h2.send(pub2, .connect(Connect(clientID: "p")))
        publish(h2, pub2, "t/4", "m4", id: 1)
        XCTAssertEqual(try h2.received(back).compactMap(\.publishTopic), ["t/4"])
    }

    func testWhileTheStoreCannotWriteV5PublishersHearNo() throws {
        let h = CoreHarness(shards: 1, config: config)
        let sub = h.connect(shard: 0)
        h.send(sub, .connect(Connect(clientID: "s")))
        subscribe(h, sub, "t")
        _ = h.output(sub)
        h.cores[0].storeUnavailable = true
        let v5 = h.connect(shard: 0)
        h.send(v5, .connect(Connect(version: .v5, clientID: "p5")), version: .v5)
        _ = h.output(v5)
        var t = Array("t".utf8), p = Array("x".utf8)
        t.withUnsafeBytes { tb in p.withUnsafeBytes { pb in
            h.send(v5, .publish(Publish(qos: .atLeastOnce, topic: tb, packetID: 4, payload: pb)), version: .v5)
        } }
        _ = (t, p)
        let ack = try XCTUnwrap(try h.received(v5, version: .v5).first)
        guard case .other("puback", let bytes) = ack else { return XCTFail("\(ack)") }
        XCTAssertEqual(bytes[4], ReasonCode.quotaExceeded.rawValue, "0x97")
        XCTAssertEqual(try h.received(sub), [], "not taken: not delivered")
        XCTAssertEqual(h.cores[0].counters.publishesRefusedUnstorable, 1)
        // A 3.1.1 publisher cannot hear no: its message is taken (its PUBACK waits where it must).
        let old = h.connect(shard: 0)
        h.send(old, .connect(Connect(clientID: "p3")))
        _ = h.output(old)
        publish(h, old, "t", "y", id: 5)
        XCTAssertEqual(try h.received(sub).count, 1)
    }
}
