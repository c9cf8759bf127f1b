// MQTT 5 Will Delay Interval: published after the delay, or at session end if that comes first,
// and not at all when the client reconnects in time.

import Codec
import XCTest
@testable import Broker

final class WillDelayTests: XCTestCase {
    func watcher(_ h: CoreHarness) -> CoreHarness.Client {
        let w = h.connect(shard: 1)
        h.send(w, .connect(Connect(clientID: "watcher")))
        h.send(w, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "will/#", options: SubscriptionOptions(qos: .atMostOnce))])))
        _ = h.output(w)
        return w
    }

    func dying(_ h: CoreHarness, delay: UInt32, sessionExpiry: UInt32) -> CoreHarness.Client {
        let c = h.connect(shard: 0)
        var willProps = Properties()
        willProps.willDelayInterval = delay
        var props = Properties()
        props.sessionExpiryInterval = sessionExpiry
        h.send(c, .connect(Connect(version: .v5, clientID: "dying", will: Will(topic: "will/x", payload: [1], properties: willProps),
                                   properties: props)), version: .v5)
        _ = h.output(c)
        h.cores[0].connectionLost(c.id)
        h.pump()
        return c
    }

    func tick(_ h: CoreHarness, after seconds: UInt64) {
        h.now += seconds * 1_000_000_000
        for core in h.cores { core.tick(now: h.now) }
        h.pump()
    }

    func testPublishedAfterTheDelay() throws {
        let h = CoreHarness(shards: 2)
        let w = watcher(h)
        _ = dying(h, delay: 5, sessionExpiry: 100)
        XCTAssertEqual(try h.received(w).count, 0, "not before the delay")
        tick(h, after: 6)
        XCTAssertEqual(try h.received(w).compactMap(\.publishTopic), ["will/x"])
    }

    func testPublishedAtSessionEndIfEarlier() throws {
        let h = CoreHarness(shards: 2)
        let w = watcher(h)
        _ = dying(h, delay: 60, sessionExpiry: 3)
        tick(h, after: 4)
        XCTAssertEqual(try h.received(w).compactMap(\.publishTopic), ["will/x"])
    }

    func testNotPublishedWhenTheClientReturns() throws {
        let h = CoreHarness(shards: 2)
        let w = watcher(h)
        _ = dying(h, delay: 5, sessionExpiry: 100)
        let back = h.connect(shard: 1)
        var props = Properties()
        props.sessionExpiryInterval = 100
        h.send(back, .connect(Connect(version: .v5, cleanStart: false, clientID: "dying", properties: props)), version: .v5)
        tick(h, after: 10)
        XCTAssertEqual(try h.received(w).count, 0)
    }
}
