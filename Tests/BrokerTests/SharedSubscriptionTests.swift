// Shared subscriptions across shards: each message to exactly one member of each group, with the
// round-robin, random and client-id-hash strategies; membership changes reach every shard.

import Codec
import XCTest
@testable import Broker

final class SharedSubscriptionTests: XCTestCase {
    func member(_ h: CoreHarness, shard: Int, id: String, filter: String, qos: QoS = .atMostOnce) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])))
        let out = h.output(c)
        XCTAssertEqual(Array(out.suffix(5)), [0x90, 0x03, 0x00, 0x01, qos.rawValue], "SUBACK grants \(filter)")
        return c
    }

    func publisher(_ h: CoreHarness, shard: Int, id: String = "pub") -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        _ = h.output(c)
        return c
    }

    func count(_ h: CoreHarness, _ c: CoreHarness.Client) throws -> Int {
        try h.received(c).filter { $0.publishTopic != nil }.count
    }

    func testRoundRobinAcrossShardsEachMessageOnce() throws {
        let h = CoreHarness(shards: 3)
        let members = [member(h, shard: 0, id: "m0", filter: "$share/g/jobs/+"),
                       member(h, shard: 1, id: "m1", filter: "$share/g/jobs/+"),
                       member(h, shard: 1, id: "m2", filter: "$share/g/jobs/+"),
                       member(h, shard: 2, id: "m3", filter: "$share/g/jobs/+")]
        let pub = publisher(h, shard: 0)
        for i in 0..<40 { sendPublish(h, pub, topic: "jobs/\(i % 3)", payload: [UInt8(i)], qos: .atMostOnce) }
        XCTAssertEqual(try members.map { try count(h, $0) }, [10, 10, 10, 10])
    }

    func testEveryGroupGetsEachMessageAndPlainSubscribersToo() throws {
        let h = CoreHarness(shards: 2)
        let a = [member(h, shard: 0, id: "a0", filter: "$share/a/t"), member(h, shard: 1, id: "a1", filter: "$share/a/t")]
        let b = [member(h, shard: 1, id: "b0", filter: "$share/b/t")]
        let plain = member(h, shard: 0, id: "plain", filter: "t")
        let pub = publisher(h, shard: 1)
        for i in 0..<10 { sendPublish(h, pub, topic: "t", payload: [UInt8(i)], qos: .atMostOnce) }
        XCTAssertEqual(try a.map { try count(h, $0) }.reduce(0, +), 10)
        XCTAssertEqual(try count(h, b[0]), 10)
        XCTAssertEqual(try count(h, plain), 10)
    }

    func testRandomAndHashStrategies() throws {
        for strategy in [SharedSubscriptionStrategy.random, .hashClientID] {
            var config = BrokerConfig()
            config.sharedSubscriptionStrategy = strategy
            let h = CoreHarness(shards: 2, config: config)
            let members = (0..<4).map { member(h, shard: $0 % 2, id: "m\($0)", filter: "$share/g/r") }
            let pub = publisher(h, shard: 0)
            for i in 0..<50 { sendPublish(h, pub, topic: "r", payload: [UInt8(i)], qos: .atMostOnce) }
            let counts = try members.map { try count(h, $0) }
            XCTAssertEqual(counts.reduce(0, +), 50, "\(strategy)")
            if strategy == .hashClientID {
                XCTAssertEqual(counts.filter { $0 > 0 }.count, 1, "one publisher → one member")
            }
        }
    }

    func testLeavingMembersAreForgottenOnEveryShard() throws {
        let h = CoreHarness(shards: 2)
        let stay = member(h, shard: 0, id: "stay", filter: "$share/g/x")
        let leave = member(h, shard: 1, id: "leave", filter: "$share/g/x")
        let gone = member(h, shard: 1, id: "gone", filter: "$share/g/x")
        h.send(leave, .unsubscribe(Unsubscribe(packetID: 2, filters: ["$share/g/x"])))
        h.send(gone, [0xE0, 0x00])
        let pub = publisher(h, shard: 1)
        for i in 0..<6 { sendPublish(h, pub, topic: "x", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1)) }
        XCTAssertEqual(try count(h, stay), 6)
        XCTAssertEqual(try count(h, leave), 0)
    }

    func testQoSIsMinimumAndNoRetainedForSharedSubscriptions() throws {
        let h = CoreHarness(shards: 1)
        let pub = publisher(h, shard: 0)
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array("s".utf8).withUnsafeBytes { t in
            ([1] as [UInt8]).withUnsafeBytes { p in
                PublishEncoder.encode(version: .v3_1_1, dup: false, qos: .atMostOnce, retain: true, topic: t, packetID: 0,
                                      properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
            }
        }
        h.send(pub, buffer.readableArray())
        let m = member(h, shard: 0, id: "m", filter: "$share/g/s", qos: .atLeastOnce)  // asserts only a SUBACK came
        sendPublish(h, pub, topic: "s", payload: [2], qos: .exactlyOnce, packetID: 3)
        let got = try h.received(m)
        guard case .publish(_, let payload, let qos, _, _, _)? = got.first else { return XCTFail() }
        XCTAssertEqual(payload, [2])
        XCTAssertEqual(qos, .atLeastOnce)
    }

    func testNoLocalOnSharedIsProtocolErrorV5() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "nl")), version: .v5)
        _ = h.output(c)
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(
            filter: "$share/g/t", options: SubscriptionOptions(qos: .atMostOnce, noLocal: true))])), version: .v5)
        let d = h.disconnect(c)
        XCTAssertEqual(d?.code, .protocolError)
        XCTAssertNotNil(d?.reason)
        XCTAssertTrue(h.isClosing(c))
    }
}
