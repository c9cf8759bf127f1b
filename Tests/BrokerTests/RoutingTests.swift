// Subscribe/publish through the sans-IO cores, on one shard and across shards via mailbox records.

import Codec
import XCTest
@testable import Broker

final class RoutingTests: XCTestCase {
    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS = .atMostOnce, packetID: UInt16 = 1) {
        h.send(c, .subscribe(Subscribe(packetID: packetID, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])))
    }

    func connected(_ h: CoreHarness, shard: Int, id: String) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
        return c
    }

    func testSubAckGrantsRequestedQoS() {
        let h = CoreHarness(shards: 1)
        let c = connected(h, shard: 0, id: "s")
        h.send(c, .subscribe(Subscribe(packetID: 7, subscriptions: [
            SubscriptionRequest(filter: "a/+/c", options: SubscriptionOptions(qos: .atMostOnce)),
            SubscriptionRequest(filter: "#", options: SubscriptionOptions(qos: .atLeastOnce)),
        ])))
        XCTAssertEqual(h.output(c), [0x90, 0x04, 0x00, 0x07, 0x00, 0x01])
    }

    func testMalformedFilterCloses311ConnectionWithoutSubAck() {
        // 3.1.1 has no reason code for it: a protocol violation (section 4.8); nothing is subscribed.
        let h = CoreHarness(shards: 1)
        let c = connected(h, shard: 0, id: "s")
        h.send(c, .subscribe(Subscribe(packetID: 7, subscriptions: [
            SubscriptionRequest(filter: "good/+", options: SubscriptionOptions(qos: .atMostOnce)),
            SubscriptionRequest(filter: "bad/#/x", options: SubscriptionOptions(qos: .atLeastOnce)),
        ])))
        XCTAssertEqual(h.output(c), [])
        XCTAssertTrue(h.isClosing(c))
        XCTAssertTrue(h.cores[0].trie.matches(topic: "good/1").isEmpty)
    }

    func testWildcardDeliveryOnOneShard() throws {
        let h = CoreHarness(shards: 1)
        let sub = connected(h, shard: 0, id: "sub")
        subscribe(h, sub, "a/+/c")
        _ = h.output(sub)
        let pub = connected(h, shard: 0, id: "pub")
        sendPublish(h, pub, topic: "a/b/c", payload: [1], qos: .atMostOnce)
        sendPublish(h, pub, topic: "a/b/d", payload: [2], qos: .atMostOnce)
        XCTAssertEqual(try h.received(sub).compactMap(\.publishTopic), ["a/b/c"])
    }

    func testCrossShardDeliveryAndOrder() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        subscribe(h, sub, "load/+", qos: .atLeastOnce)
        _ = h.output(sub)
        // Shard 0 learned the route from shard 1's routeAdd.
        XCTAssertFalse(h.cores[0].trie.matches(topic: "load/1").isEmpty)
        let pub = connected(h, shard: 0, id: "pub")
        for i in 0..<100 {
            sendPublish(h, pub, topic: "load/1", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1))
        }
        // The publisher gets its PUBACKs.
        let acks = h.output(pub)
        XCTAssertEqual(acks.count, 100 * 4)
        // The subscriber acknowledges what it gets; the inflight window (20) refills from the queue.
        var got: [OwnedPacket] = []
        while true {
            let batch = try h.received(sub)
            if batch.isEmpty { break }
            got += batch
            for case .publish(_, _, _, _, _, let id) in batch { h.send(sub, .puback(PublishAck(packetID: id))) }
        }
        XCTAssertEqual(got.count, 100)
        for (i, p) in got.enumerated() {
            guard case .publish(let topic, let payload, let qos, _, _, let packetID) = p else { return XCTFail("not a publish") }
            XCTAssertEqual(topic, "load/1")
            XCTAssertEqual(payload, [UInt8(i)])
            XCTAssertEqual(qos, .atLeastOnce)
            XCTAssertNotEqual(packetID, 0)
        }
    }

    func testDeliveryQoSIsMinimumAndOverlapDeliversOnce() throws {
        let h = CoreHarness(shards: 1)
        let sub = connected(h, shard: 0, id: "sub")
        subscribe(h, sub, "x/#", qos: .atMostOnce, packetID: 1)
        subscribe(h, sub, "x/+", qos: .atLeastOnce, packetID: 2)
        _ = h.output(sub)
        let pub = connected(h, shard: 0, id: "pub")
        sendPublish(h, pub, topic: "x/y", payload: [9], qos: .exactlyOnce, packetID: 5)
        let got = try h.received(sub)
        XCTAssertEqual(got.count, 1)
        guard case .publish(_, _, let qos, _, _, _) = got[0] else { return XCTFail() }
        XCTAssertEqual(qos, .atLeastOnce)
    }

    func testUnsubscribeStopsDeliveryAndRemovesRoute() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        subscribe(h, sub, "u/1")
        _ = h.output(sub)
        h.send(sub, .unsubscribe(Unsubscribe(packetID: 3, filters: ["u/1"])))
        XCTAssertEqual(h.output(sub), [0xB0, 0x02, 0x00, 0x03])
        XCTAssertTrue(h.cores[0].trie.matches(topic: "u/1").isEmpty)
        let pub = connected(h, shard: 0, id: "pub")
        sendPublish(h, pub, topic: "u/1", payload: [1], qos: .atMostOnce)
        XCTAssertEqual(try h.received(sub), [])
    }

    func testDisconnectRemovesRoutesOnOtherShards() {
        let h = CoreHarness(shards: 3)
        let sub = connected(h, shard: 2, id: "sub")
        subscribe(h, sub, "d/#")
        XCTAssertEqual(h.cores[0].trie.matches(topic: "d/x").count, 1)
        XCTAssertEqual(h.cores[1].trie.matches(topic: "d/x").count, 1)
        h.send(sub, [0xE0, 0x00])
        XCTAssertTrue(h.isClosing(sub))
        XCTAssertTrue(h.cores[0].trie.matches(topic: "d/x").isEmpty)
        XCTAssertTrue(h.cores[1].trie.matches(topic: "d/x").isEmpty)
    }

    func testDollarTopicsNotMatchedByHash() throws {
        let h = CoreHarness(shards: 1)
        let all = connected(h, shard: 0, id: "all")
        subscribe(h, all, "#")
        let sys = connected(h, shard: 0, id: "sys")
        subscribe(h, sys, "$SYS/#")
        _ = h.output(all); _ = h.output(sys)
        let pub = connected(h, shard: 0, id: "pub")
        sendPublish(h, pub, topic: "$SYS/x", payload: [1], qos: .atMostOnce)
        XCTAssertEqual(try h.received(all), [])
        XCTAssertEqual(try h.received(sys).compactMap(\.publishTopic), ["$SYS/x"])
    }

    func testQoS2InboundDeliveredOnceOnResend() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        subscribe(h, sub, "q2", qos: .exactlyOnce)
        _ = h.output(sub)
        let pub = connected(h, shard: 0, id: "pub")
        sendPublish(h, pub, topic: "q2", payload: [1], qos: .exactlyOnce, packetID: 10)
        sendPublish(h, pub, topic: "q2", payload: [1], qos: .exactlyOnce, packetID: 10)
        XCTAssertEqual(h.output(pub), [0x50, 0x02, 0x00, 0x0A, 0x50, 0x02, 0x00, 0x0A])
        h.send(pub, .pubrel(PublishAck(packetID: 10)))
        XCTAssertEqual(h.output(pub), [0x70, 0x02, 0x00, 0x0A])
        XCTAssertEqual(try h.received(sub).count, 1)
    }

    func testWillPublishedOnAbnormalCloseNotOnDisconnect() throws {
        let h = CoreHarness(shards: 2)
        let watcher = connected(h, shard: 1, id: "watcher")
        subscribe(h, watcher, "will/#")
        _ = h.output(watcher)
        let a = h.connect(shard: 0)
        h.send(a, .connect(Connect(clientID: "a", will: Will(topic: "will/a", payload: Array("gone".utf8)))))
        h.cores[0].connectionLost(a.id)
        h.pump()
        XCTAssertEqual(try h.received(watcher).compactMap(\.publishTopic), ["will/a"])
        let b = h.connect(shard: 0)
        h.send(b, .connect(Connect(clientID: "b", will: Will(topic: "will/b", payload: []))))
        h.send(b, [0xE0, 0x00])
        XCTAssertEqual(try h.received(watcher), [])
    }

    func testSubAckWaitsUntilEveryShardHasTheRoute() {
        let h = CoreHarness(shards: 3)
        let sub = connected(h, shard: 1, id: "sub")
        let subscribe = Packet.subscribe(Subscribe(packetID: 4, subscriptions: [
            SubscriptionRequest(filter: "b/+", options: SubscriptionOptions(qos: .atLeastOnce))]))
        h.send(sub, subscribe.encoded(version: .v3_1_1), pump: false)
        XCTAssertEqual(h.output(sub), [], "no SUBACK before the other shards applied the route")
        h.pump()
        XCTAssertEqual(h.output(sub), [0x90, 0x03, 0x00, 0x04, 0x01])
        // A second subscriber on the same filter and shard needs no new barrier.
        let other = connected(h, shard: 1, id: "other")
        h.send(other, subscribe.encoded(version: .v3_1_1), pump: false)
        XCTAssertEqual(h.output(other), [0x90, 0x03, 0x00, 0x04, 0x01])
    }

}

final class TakeoverTests: XCTestCase {
    func connect(_ h: CoreHarness, shard: Int, id: String, will: Will? = nil) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id, will: will)))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
        return c
    }

    func testTakeoverAcrossEveryPairOfShards() {
        for first in 0..<3 {
            for second in 0..<3 {
                let h = CoreHarness(shards: 3)
                let a = connect(h, shard: first, id: "same-id")
                let b = connect(h, shard: second, id: "same-id")
                XCTAssertTrue(h.isClosing(a), "\(first) → \(second)")
                XCTAssertFalse(h.isClosing(b), "\(first) → \(second)")
            }
        }
    }

    func testV5ClientGetsSessionTakenOver() {
        let h = CoreHarness(shards: 2)
        let old = h.connect(shard: 0)
        h.send(old, .connect(Connect(version: .v5, clientID: "v5-take")), version: .v5)
        _ = h.output(old)
        let new = h.connect(shard: 1)
        h.send(new, .connect(Connect(version: .v5, clientID: "v5-take")), version: .v5)
        let d = h.disconnect(old)
        XCTAssertEqual(d?.code, .sessionTakenOver)
        XCTAssertNotNil(d?.reason)
        XCTAssertTrue(h.isClosing(old))
    }

    func testReleasedIDCanBeReusedWithoutEvictingAnyone() {
        let h = CoreHarness(shards: 2)
        let a = connect(h, shard: 0, id: "reuse")
        h.send(a, [0xE0, 0x00])
        XCTAssertTrue(h.isClosing(a))
        let b = connect(h, shard: 1, id: "reuse")
        let c = connect(h, shard: 1, id: "other")
        XCTAssertFalse(h.isClosing(b))
        XCTAssertFalse(h.isClosing(c))
    }

    func testWillPublishedOnTakeover() throws {
        let h = CoreHarness(shards: 2)
        let watcher = connect(h, shard: 0, id: "watcher")
        h.send(watcher, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "w", options: SubscriptionOptions(qos: .atMostOnce))])))
        _ = h.output(watcher)
        _ = connect(h, shard: 0, id: "dup", will: Will(topic: "w", payload: [1]))
        _ = connect(h, shard: 1, id: "dup")
        XCTAssertEqual(try h.received(watcher).compactMap(\.publishTopic), ["w"])
    }
}
