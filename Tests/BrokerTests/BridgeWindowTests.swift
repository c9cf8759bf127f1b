// The inflight window towards a bridge (bridge_max_inflight_messages).

import Codec
import XCTest
@testable import Broker

final class BridgeWindowTests: XCTestCase {
    /// A bridge (marked by the runtime, or saying so with protocol bit 7) gets the bridges' window.
    func testABridgeHasTheBridgesInflightWindow() {
        var config = BrokerConfig()
        config.maxInflightMessages = 5
        config.bridgeInflightMessages = 50
        let h = CoreHarness(shards: 1, config: config)
        func subscriber(_ id: String, bridge: Bool) -> CoreHarness.Client {
            let c = h.connect(shard: 0)
            if bridge { h.cores[0].markBridge(c.id) }
            h.send(c, .connect(Connect(version: .v5, clientID: id)), version: .v5)
            h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "w/#", options: SubscriptionOptions(qos: .atLeastOnce))])), version: .v5)
            _ = h.output(c)
            return c
        }
        let bridge = subscriber("bridge", bridge: true), client = subscriber("client", bridge: false)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        for i in 0..<30 {
            let t = Array("w/x".utf8), p = Array("\(i)".utf8)
            t.withUnsafeBytes { tb in p.withUnsafeBytes { pb in h.send(pub, .publish(Publish(qos: .atLeastOnce, topic: tb, packetID: UInt16(i + 1), payload: pb))) } }
        }
        func publishes(_ c: CoreHarness.Client) -> Int {
            (try? h.received(c, version: .v5))?.filter { $0.publishTopic != nil }.count ?? -1
        }
        XCTAssertEqual(publishes(bridge), 30, "all in flight at once")
        XCTAssertEqual(publishes(client), 5, "a client's window")
    }
}
