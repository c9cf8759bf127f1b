// The outbound QoS 1/2 window and queue: max_inflight_messages, v5 Receive Maximum,
// max_queued_messages (drops counted), and the PUBACK / PUBREC / PUBREL / PUBCOMP flows.

import Codec
import XCTest
@testable import Broker

final class InflightTests: XCTestCase {
    func setUp(_ h: CoreHarness, subQoS: QoS = .atLeastOnce, version: ProtocolVersion = .v3_1_1,
               receiveMaximum: UInt16? = nil) -> (sub: CoreHarness.Client, pub: CoreHarness.Client) {
        let sub = h.connect(shard: h.cores.count - 1)
        var props = Properties()
        props.receiveMaximum = receiveMaximum
        h.send(sub, .connect(Connect(version: version, clientID: "sub", properties: props)), version: version)
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "q/#", options: SubscriptionOptions(qos: subQoS))])), version: version)
        _ = h.output(sub)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        _ = h.output(pub)
        return (sub, pub)
    }

    func publishes(_ packets: [OwnedPacket]) -> [(id: UInt16, payload: [UInt8], dup: Bool)] {
        packets.compactMap { if case .publish(_, let p, _, _, let dup, let id) = $0 { return (id, p, dup) } else { return nil } }
    }

    func testWindowLimitsInflightAndAcksReleaseQueue() throws {
        let h = CoreHarness(shards: 2)
        let (sub, pub) = setUp(h)
        for i in 0..<30 { sendPublish(h, pub, topic: "q/x", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1)) }
        let first = publishes(try h.received(sub))
        XCTAssertEqual(first.map(\.payload), (0..<20).map { [UInt8($0)] }, "max_inflight_messages = 20")
        for p in first.prefix(5) { h.send(sub, .puback(PublishAck(packetID: p.id))) }
        let next = publishes(try h.received(sub))
        XCTAssertEqual(next.map(\.payload), (20..<25).map { [UInt8($0)] })
        XCTAssertEqual(h.cores[1].connections[Int(sub.id.slot)].session.queue.count, 5)
    }

    func testConnectedSubscribersQueueIsNotCutItsPublisherIsThrottled() throws {
        var config = BrokerConfig()
        config.maxInflightMessages = 2
        config.maxQueuedMessages = 5
        let h = CoreHarness(shards: 1, config: config)
        let (sub, pub) = setUp(h)
        for i in 0..<10 { sendPublish(h, pub, topic: "q/x", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1)) }
        XCTAssertEqual(publishes(try h.received(sub)).count, 2)
        XCTAssertEqual(h.cores[0].counters.droppedQueueFull, 0, "acknowledged messages are never dropped for a connected client")
        XCTAssertEqual(h.cores[0].connections[Int(sub.id.slot)].session.queue.count, 8)
        // Past half of max_queued_messages the publisher's PUBACKs are held (flow control).
        let acks = h.output(pub).count / 4
        XCTAssertGreaterThan(acks, 0)
        XCTAssertLessThan(acks, 10)
        XCTAssertEqual(h.cores[0].counters.publishersThrottled, 1)
    }

    func testQoS2OutboundFlow() throws {
        let h = CoreHarness(shards: 2)
        let (sub, pub) = setUp(h, subQoS: .exactlyOnce)
        sendPublish(h, pub, topic: "q/2", payload: [7], qos: .exactlyOnce, packetID: 5)
        let got = publishes(try h.received(sub))
        XCTAssertEqual(got.count, 1)
        let id = got[0].id
        h.send(sub, .pubrec(PublishAck(packetID: id)))
        XCTAssertEqual(h.output(sub), [0x62, 0x02, UInt8(id >> 8), UInt8(id & 0xFF)])
        XCTAssertEqual(h.cores[1].connections[Int(sub.id.slot)].session.inflight.count, 1)
        h.send(sub, .pubcomp(PublishAck(packetID: id)))
        XCTAssertEqual(h.cores[1].connections[Int(sub.id.slot)].session.inflight.count, 0)
    }

    func testReceiveMaximumOfV5Client() throws {
        let h = CoreHarness(shards: 1)
        let (sub, pub) = setUp(h, version: .v5, receiveMaximum: 1)
        for i in 0..<3 { sendPublish(h, pub, topic: "q/x", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1)) }
        let first = publishes(try h.received(sub, version: .v5))
        XCTAssertEqual(first.count, 1)
        h.send(sub, .puback(PublishAck(packetID: first[0].id)), version: .v5)
        XCTAssertEqual(publishes(try h.received(sub, version: .v5)).map(\.payload), [[1]])
    }

    func testPacketIDsInFlightAreNotReused() throws {
        var config = BrokerConfig()
        config.maxInflightMessages = 65_535
        let h = CoreHarness(shards: 1, config: config)
        let (sub, pub) = setUp(h)
        sendPublish(h, pub, topic: "q/x", payload: [0], qos: .atLeastOnce, packetID: 1)
        let held = publishes(try h.received(sub))[0].id
        // Wrap the packet id counter around while `held` stays unacknowledged.
        for i in 0..<70_000 {
            sendPublish(h, pub, topic: "q/x", payload: [1], qos: .atLeastOnce, packetID: UInt16(i % 65_000 + 1))
            for p in publishes(try h.received(sub)) {
                XCTAssertNotEqual(p.id, held)
                h.send(sub, .puback(PublishAck(packetID: p.id)))
            }
            _ = h.output(pub)
        }
    }
}
