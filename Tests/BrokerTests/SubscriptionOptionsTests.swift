// MQTT 5 subscription options at delivery: No Local and Retain As Published, on one shard and
// across shards.

import Codec
import XCTest
@testable import Broker

final class SubscriptionOptionsTests: XCTestCase {
    func v5Client(_ h: CoreHarness, shard: Int, id: String, filter: String, options: SubscriptionOptions) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(version: .v5, clientID: id)), version: .v5)
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: options)])), version: .v5)
        _ = h.output(c)
        return c
    }

    func publishV5(_ h: CoreHarness, _ c: CoreHarness.Client, topic: String, retain: Bool) {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array(topic.utf8).withUnsafeBytes { t in
            ([7] as [UInt8]).withUnsafeBytes { p in
                PublishEncoder.encode(version: .v5, dup: false, qos: .atMostOnce, retain: retain, topic: t, packetID: 0,
                                      properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
            }
        }
        h.send(c, buffer.readableArray())
    }

    func testNoLocalSkipsOwnMessagesOnly() throws {
        let h = CoreHarness(shards: 2)
        let me = v5Client(h, shard: 0, id: "me", filter: "chat", options: SubscriptionOptions(qos: .atMostOnce, noLocal: true))
        let other = v5Client(h, shard: 1, id: "other", filter: "chat", options: SubscriptionOptions(qos: .atMostOnce, noLocal: true))
        publishV5(h, me, topic: "chat", retain: false)
        XCTAssertEqual(try h.received(me, version: .v5).compactMap(\.publishTopic), [], "No Local: not back to the publisher")
        XCTAssertEqual(try h.received(other, version: .v5).compactMap(\.publishTopic), ["chat"])
        publishV5(h, other, topic: "chat", retain: false)
        XCTAssertEqual(try h.received(me, version: .v5).compactMap(\.publishTopic), ["chat"])
    }

    func testNoLocalWithOverlappingPlainSubscriptionStillDelivers() throws {
        let h = CoreHarness(shards: 1)
        let me = v5Client(h, shard: 0, id: "me", filter: "a/b", options: SubscriptionOptions(qos: .atMostOnce, noLocal: true))
        h.send(me, .subscribe(Subscribe(packetID: 2, subscriptions: [SubscriptionRequest(filter: "a/+", options: SubscriptionOptions(qos: .atMostOnce))])), version: .v5)
        _ = h.output(me)
        publishV5(h, me, topic: "a/b", retain: false)
        XCTAssertEqual(try h.received(me, version: .v5).compactMap(\.publishTopic), ["a/b"])
    }

    func testRetainAsPublished() throws {
        let h = CoreHarness(shards: 2)
        let keeps = v5Client(h, shard: 1, id: "keeps", filter: "r", options: SubscriptionOptions(qos: .atLeastOnce, retainAsPublished: true))
        let clears = v5Client(h, shard: 0, id: "clears", filter: "r", options: SubscriptionOptions(qos: .atLeastOnce))
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(version: .v5, clientID: "pub")), version: .v5)
        _ = h.output(pub)
        publishV5(h, pub, topic: "r", retain: true)
        guard case .publish(_, _, _, let kept, _, _)? = try h.received(keeps, version: .v5).first,
              case .publish(_, _, _, let cleared, _, _)? = try h.received(clears, version: .v5).first else { return XCTFail() }
        XCTAssertTrue(kept)
        XCTAssertFalse(cleared)
    }
}
