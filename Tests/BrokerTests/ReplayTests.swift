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

    func testRingOnlyWithSeveralShards() {
        XCTAssertTrue(CoreHarness(shards: 2).cores[0].recent.isEnabled)
        XCTAssertFalse(CoreHarness(shards: 1).cores[0].recent.isEnabled, "one shard: nothing to replay, no ring")
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
