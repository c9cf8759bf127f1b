// Events for the webhooks: made only for the wanted kinds and topics, at EMQX's hook points.

import Codec
import XCTest
@testable import Broker

final class EventTests: XCTestCase {
    func publish(_ topic: String, _ payload: String) -> Packet {
        let t = Array(topic.utf8), p = Array(payload.utf8)
        return t.withUnsafeBytes { tb in p.withUnsafeBytes { pb in .publish(Publish(qos: .atMostOnce, topic: tb, payload: pb)) } }
    }

    func events(_ h: CoreHarness, shard: Int = 0) -> [BrokerEvent] {
        var out: [BrokerEvent] = []
        h.cores[shard].takeEvents(into: &out)
        return out
    }

    func testNothingIsMadeWithoutAWebhook() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(clientID: "a")))
        h.send(c, publish("t", "x"))
        XCTAssertTrue(events(h).isEmpty)
    }

    func testKindsAndTopicFilter() {
        var config = BrokerConfig()
        config.eventKinds = BrokerEvent.Kind.connected.rawValue | BrokerEvent.Kind.publish.rawValue | BrokerEvent.Kind.delivered.rawValue
            | BrokerEvent.Kind.disconnected.rawValue | BrokerEvent.Kind.dropped.rawValue
        config.eventTopicFilters = ["s/#"]
        let h = CoreHarness(shards: 2, config: config)
        let sub = h.connect(shard: 1)
        h.send(sub, .connect(Connect(clientID: "sub")))
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "#", options: SubscriptionOptions(qos: .atMostOnce))])))
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub", username: nil)))
        h.send(pub, publish("s/1", "in"))
        h.send(pub, publish("other", "out"))
        h.send(pub, .disconnect(Disconnect()))
        let zero = events(h, shard: 0), one = events(h, shard: 1)
        XCTAssertEqual(zero.map(\.kind), [.connected, .publish, .disconnected], "other/... is not the filter's: no event; SUBSCRIBE is not wanted")
        XCTAssertEqual(zero[1].topic, "s/1")
        XCTAssertEqual(zero[1].payload, Array("in".utf8))
        XCTAssertEqual(zero[2].reason, "normal")
        XCTAssertEqual(one.map(\.kind), [.connected, .delivered], "delivered on the subscriber's shard")
        XCTAssertEqual(one[1].clientID, "sub")
        XCTAssertEqual(one[1].topic, "s/1")
    }

    func testDroppedWithoutSubscribersAndAConnectionLost() {
        var config = BrokerConfig()
        config.eventKinds = BrokerEvent.Kind.dropped.rawValue | BrokerEvent.Kind.disconnected.rawValue
        let h = CoreHarness(shards: 1, config: config)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(clientID: "lonely")))
        h.send(c, publish("nobody/listens", "x"))
        h.cores[0].connectionLost(c.id)
        let e = events(h)
        XCTAssertEqual(e.map(\.kind), [.dropped, .disconnected])
        XCTAssertEqual(e[0].reason, "no_subscribers")
        XCTAssertEqual(e[1].reason, "sock_closed")
    }

    func testDroppedWhenAnOfflineSessionsQueueIsFull() {
        var config = BrokerConfig()
        config.eventKinds = BrokerEvent.Kind.dropped.rawValue
        config.maxQueuedMessages = 1
        let h = CoreHarness(shards: 1, config: config)
        let sub = h.connect(shard: 0)
        h.send(sub, .connect(Connect(cleanStart: false, clientID: "away")))
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "q/#", options: SubscriptionOptions(qos: .atLeastOnce))])))
        h.send(sub, .disconnect(Disconnect()))
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        for payload in ["one", "two"] {
            let t = Array("q/x".utf8), p = Array(payload.utf8)
            t.withUnsafeBytes { tb in p.withUnsafeBytes { pb in h.send(pub, .publish(Publish(qos: .atLeastOnce, topic: tb, packetID: 1, payload: pb))) } }
        }
        let e = events(h)
        XCTAssertEqual(e.map(\.kind), [.dropped])
        XCTAssertEqual(e.first?.reason, "queue_full")
        XCTAssertEqual(e.first?.clientID, "away")
        XCTAssertEqual(e.first?.payload, Array("two".utf8))
    }
}
