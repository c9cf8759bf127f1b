// Retained messages: stored on any shard, sent to later subscribers on any shard with the retain
// flag, replaced, deleted by an empty payload, and filtered by wildcards and the `$` rule.

import Codec
import XCTest
@testable import Broker

final class RetainedTests: XCTestCase {
    func connected(_ h: CoreHarness, shard: Int, id: String, version: ProtocolVersion = .v3_1_1) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(version: version, clientID: id)), version: version)
        _ = h.output(c)
        return c
    }

    func publishRetained(_ h: CoreHarness, _ c: CoreHarness.Client, _ topic: String, _ payload: [UInt8], qos: QoS = .atMostOnce) {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var t = topic
        t.withUTF8 { tb in
            payload.withUnsafeBytes { pb in
                PublishEncoder.encode(version: .v3_1_1, dup: false, qos: qos, retain: true, topic: UnsafeRawBufferPointer(tb),
                                      packetID: qos == .atMostOnce ? 0 : 1, properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                      payload: pb, into: &buffer)
            }
        }
        h.send(c, buffer.readableArray())
        _ = h.output(c)
    }

    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS = .atLeastOnce,
                   handling: RetainHandling = .sendOnSubscribe, version: ProtocolVersion = .v3_1_1) throws -> [OwnedPacket] {
        h.send(c, .subscribe(Subscribe(packetID: 9, subscriptions: [SubscriptionRequest(
            filter: filter, options: SubscriptionOptions(qos: qos, retainHandling: handling))])), version: version)
        return try h.received(c, version: version).filter { $0.publishTopic != nil }
    }

    func testRetainedReachesLaterSubscriberOnAnotherShard() throws {
        let h = CoreHarness(shards: 2)
        let pub = connected(h, shard: 0, id: "pub")
        publishRetained(h, pub, "home/temp", [21], qos: .atLeastOnce)
        let sub = connected(h, shard: 1, id: "sub")
        let got = try subscribe(h, sub, "home/+", qos: .exactlyOnce)
        XCTAssertEqual(got.count, 1)
        guard case .publish(let topic, let payload, let qos, let retain, _, _) = got[0] else { return XCTFail() }
        XCTAssertEqual(topic, "home/temp")
        XCTAssertEqual(payload, [21])
        XCTAssertEqual(qos, .atLeastOnce, "min(message QoS, granted QoS)")
        XCTAssertTrue(retain)
    }

    func testSubAckComesBeforeRetainedMessages() throws {
        let h = CoreHarness(shards: 1)
        let pub = connected(h, shard: 0, id: "pub")
        publishRetained(h, pub, "r", [1])
        let sub = connected(h, shard: 0, id: "sub")
        h.send(sub, .subscribe(Subscribe(packetID: 3, subscriptions: [SubscriptionRequest(filter: "r", options: SubscriptionOptions(qos: .atMostOnce))])))
        let bytes = h.output(sub)
        XCTAssertEqual(Array(bytes.prefix(5)), [0x90, 0x03, 0x00, 0x03, 0x00])
        XCTAssertEqual(Array(bytes.dropFirst(5)), [0x31, 0x04, 0x00, 0x01, 0x72, 0x01])
    }

    func testReplaceAndDelete() throws {
        let h = CoreHarness(shards: 3)
        let pub = connected(h, shard: 2, id: "pub")
        publishRetained(h, pub, "x", [1])
        publishRetained(h, pub, "x", [2])
        let a = connected(h, shard: 0, id: "a")
        let payloads: [[UInt8]] = try subscribe(h, a, "x").map { packet -> [UInt8] in
            if case .publish(_, let p, _, _, _, _) = packet { return p } else { return [] }
        }
        XCTAssertEqual(payloads, [[2]])
        publishRetained(h, pub, "x", [])
        let b = connected(h, shard: 1, id: "b")
        XCTAssertEqual(try subscribe(h, b, "x"), [])
        for core in h.cores { XCTAssertEqual(core.retained.count, 0) }
    }

    func testWildcardsAndDollarRule() throws {
        let h = CoreHarness(shards: 2)
        let pub = connected(h, shard: 0, id: "pub")
        publishRetained(h, pub, "$SYS/broker", [1])
        publishRetained(h, pub, "a/b", [2])
        publishRetained(h, pub, "a/b/c", [3])
        let sub = connected(h, shard: 1, id: "sub")
        XCTAssertEqual(Set(try subscribe(h, sub, "#").compactMap(\.publishTopic)), ["a/b", "a/b/c"])
        let sys = connected(h, shard: 1, id: "sys")
        XCTAssertEqual(try subscribe(h, sys, "$SYS/#").compactMap(\.publishTopic), ["$SYS/broker"])
    }

    func testRetainHandlingV5() throws {
        let h = CoreHarness(shards: 1)
        let pub = connected(h, shard: 0, id: "pub")
        publishRetained(h, pub, "t", [1])
        let sub = connected(h, shard: 0, id: "sub", version: .v5)
        XCTAssertEqual(try subscribe(h, sub, "t", handling: .doNotSend, version: .v5), [])
        let other = connected(h, shard: 0, id: "other", version: .v5)
        XCTAssertEqual(try subscribe(h, other, "t", handling: .sendOnNewSubscribe, version: .v5).count, 1)
        XCTAssertEqual(try subscribe(h, other, "t", handling: .sendOnNewSubscribe, version: .v5).count, 0, "not new any more")
        XCTAssertEqual(try subscribe(h, other, "t", handling: .sendOnSubscribe, version: .v5).count, 1)
    }

    func testLiveDeliveryOfRetainedPublishHasRetainFlagClear() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        _ = try subscribe(h, sub, "live")
        let pub = connected(h, shard: 0, id: "pub")
        publishRetained(h, pub, "live", [5])
        let got = try h.received(sub)
        guard case .publish(_, _, _, let retain, _, _)? = got.first else { return XCTFail() }
        XCTAssertFalse(retain, "[MQTT-3.3.1-9]")
    }

    func testRetainedWill() throws {
        let h = CoreHarness(shards: 2)
        let dying = h.connect(shard: 0)
        h.send(dying, .connect(Connect(clientID: "dying", will: Will(topic: "status/dying", payload: Array("offline".utf8), retain: true))))
        h.cores[0].connectionLost(dying.id)
        h.pump()
        let late = connected(h, shard: 1, id: "late")
        XCTAssertEqual(try subscribe(h, late, "status/#").compactMap(\.publishTopic), ["status/dying"])
    }
}
