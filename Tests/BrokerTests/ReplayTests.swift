// A route that reaches the publisher's shard just after a message it should have had
// (RecentPublishes.swift): the message is replayed to the new filter's subscribers only.

import Codec
import XCTest
@testable import Broker

final class ReplayTests: XCTestCase {
    func connected(_ h: CoreHarness, shard: Int, id: String) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
        return c
    }

    func subscribeWithoutPumping(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS = .atMostOnce) {
        h.send(c, Packet.subscribe(Subscribe(packetID: 1, subscriptions: [
            SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])).encoded(version: .v3_1_1), pump: false)
    }

    /// A SUBSCRIBE whose bytes reached the socket at `arrived` (the kernel's receive time the
    /// runtime hands the core), read now.
    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS, packetID: UInt16 = 1, arrivedAt arrived: UInt64) {
        h.cores[c.shard].inputArrivedAfter = arrived
        h.send(c, Packet.subscribe(Subscribe(packetID: packetID, subscriptions: [
            SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])).encoded(version: .v3_1_1))
        h.cores[c.shard].inputArrivedAfter = nil
    }

    func publish(_ h: CoreHarness, _ c: CoreHarness.Client, _ topic: String, _ payload: [UInt8], pump: Bool) {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var t = topic
        t.withUTF8 { tb in
            payload.withUnsafeBytes { pb in
                PublishEncoder.encode(version: .v3_1_1, dup: false, qos: .atMostOnce, retain: false, topic: UnsafeRawBufferPointer(tb),
                                      packetID: 0, properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: pb, into: &buffer)
            }
        }
        h.send(c, buffer.readableArray(), pump: pump)
    }

    func testPublishReadRightAfterARemoteSubscribeIsReplayed() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        let other = connected(h, shard: 1, id: "other")
        let pub = connected(h, shard: 0, id: "pub")
        h.send(other, Packet.subscribe(Subscribe(packetID: 1, subscriptions: [
            SubscriptionRequest(filter: "x/#", options: SubscriptionOptions(qos: .atMostOnce))])).encoded(version: .v3_1_1))
        _ = h.output(other)
        // Shard 1 read the SUBSCRIBE; its routeAdd has not reached shard 0 when shard 0 reads a
        // PUBLISH to the new filter (and one to a filter shard 0 already routes to shard 1).
        subscribeWithoutPumping(h, sub, "race/+")
        h.now += 20_000
        publish(h, pub, "race/1", [1], pump: false)
        XCTAssertTrue(try h.received(sub).isEmpty, "not delivered yet: no route")
        h.pump()  // the routeAdd arrives on shard 0: the message follows it
        let got = try h.received(sub).compactMap(\.publishTopic)
        XCTAssertEqual(got, ["race/1"])
        XCTAssertEqual(h.cores[0].counters.messagesReplayed, 1)
        XCTAssertTrue(try h.received(other).isEmpty, "only the new filter's subscribers get the replay")
        // Later messages take the route as usual, once.
        publish(h, pub, "race/2", [2], pump: true)
        XCTAssertEqual(try h.received(sub).compactMap(\.publishTopic), ["race/2"])
    }

    func testOlderMessagesAndForwardedOnesAreNotReplayed() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        let pub = connected(h, shard: 0, id: "pub")
        publish(h, pub, "old/1", [1], pump: true)  // routed a second before the SUBSCRIBE
        h.now += 1_000_000_000
        subscribeWithoutPumping(h, sub, "old/+")
        h.pump()
        XCTAssertTrue(try h.received(sub).compactMap(\.publishTopic).isEmpty)
        XCTAssertEqual(h.cores[0].counters.messagesReplayed, 0)
    }

    func testRingWithOneShardToo() {
        XCTAssertTrue(CoreHarness(shards: 2).cores[0].recent.isEnabled)
        XCTAssertTrue(CoreHarness(shards: 1).cores[0].recent.isEnabled, "a SUBSCRIBE read late on its own shard replays from it")
    }

    /// The SUBSCRIBE arrived (kernel time) before a PUBLISH on the same shard but was read after
    /// it: its connection's input was read late (single recvs behind a large packet, paused input).
    func testSubscribeReadLateOnItsOwnShardGetsWhatArrivedAfterIt() throws {
        for shards in [1, 2] {
            let h = CoreHarness(shards: shards)
            let sub = connected(h, shard: 0, id: "sub")
            let other = connected(h, shard: 0, id: "other")
            let pub = connected(h, shard: 0, id: "pub")
            h.send(other, Packet.subscribe(Subscribe(packetID: 1, subscriptions: [
                SubscriptionRequest(filter: "late/#", options: SubscriptionOptions(qos: .atLeastOnce))])).encoded(version: .v3_1_1))
            _ = h.output(other)
            let subscribeArrived = h.now + 1_000_000
            h.now += 2_000_000  // the PUBLISH is read 1 ms after the SUBSCRIBE arrived (QoS 1: stored once for both)
            let topic = Array("late/1".utf8)
            let body = [0, UInt8(topic.count)] + topic + [0, 7] + [1, 2]  // topic, packet id 7, payload
            h.send(pub, [0x32, UInt8(body.count)] + body)
            _ = h.output(pub)
            XCTAssertEqual(try h.received(other).compactMap(\.publishTopic), ["late/1"])
            h.now += 1_000_000
            subscribe(h, sub, "late/+", qos: .atLeastOnce, arrivedAt: subscribeArrived)
            let got = try h.received(sub)
            XCTAssertEqual(got.compactMap(\.publishTopic), ["late/1"], "\(shards) shard(s)")
            XCTAssertEqual(h.cores[0].counters.messagesReplayed, 1)
            XCTAssertTrue(try h.received(other).isEmpty, "the subscribers it reached already get no second copy")
            // The same filter again replaces the subscription: nothing replayed twice.
            subscribe(h, sub, "late/+", qos: .atLeastOnce, packetID: 2, arrivedAt: subscribeArrived)
            XCTAssertEqual(try h.received(sub).compactMap(\.publishTopic), [])
            XCTAssertEqual(h.cores[0].counters.messagesReplayed, 1)
        }
    }

    func testOwnAndOlderMessagesAreNotReplayedLocally() throws {
        let h = CoreHarness(shards: 1)
        let sub = connected(h, shard: 0, id: "sub")
        let pub = connected(h, shard: 0, id: "pub")
        publish(h, pub, "mine/old", [1], pump: true)  // routed well before the SUBSCRIBE arrived
        h.now += 1_000_000_000
        let subscribeArrived = h.now
        h.now += 1_000_000
        publish(h, sub, "mine/own", [2], pump: true)  // its own, before the SUBSCRIBE on its stream
        subscribe(h, sub, "mine/+", qos: .atMostOnce, arrivedAt: subscribeArrived)
        XCTAssertEqual(try h.received(sub).compactMap(\.publishTopic), [])
        XCTAssertEqual(h.cores[0].counters.messagesReplayed, 0)
    }

    func testLargeMessagesAreNotKept() throws {
        let h = CoreHarness(shards: 2)
        let sub = connected(h, shard: 1, id: "sub")
        let pub = connected(h, shard: 0, id: "pub")
        subscribeWithoutPumping(h, sub, "big/+")
        publish(h, pub, "big/1", [UInt8](repeating: 7, count: RecentPublishes.maximumBytes), pump: false)
        h.pump()
        XCTAssertEqual(h.cores[0].counters.messagesReplayed, 0, "larger than a slot: not replayable")
    }
}
