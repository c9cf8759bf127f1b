// Inbound MQTT 5 topic aliases: set with a topic, used with an empty topic, never passed on;
// an unknown alias is a protocol error, one above Topic Alias Maximum is 0x94.

import Codec
import XCTest
@testable import Broker

final class TopicAliasTests: XCTestCase {
    func v5(_ h: CoreHarness, shard: Int, id: String) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(version: .v5, clientID: id)), version: .v5)
        _ = h.output(c)
        return c
    }

    func publish(_ h: CoreHarness, _ c: CoreHarness.Client, topic: String, alias: UInt16, payload: UInt8) {
        // Properties: Topic Alias, then a User Property that must survive the rewrite.
        let props: [UInt8] = [0x23, UInt8(alias >> 8), UInt8(alias & 0xFF), 0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76]
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array(topic.utf8).withUnsafeBytes { t in
            [payload].withUnsafeBytes { p in
                props.withUnsafeBytes { pr in
                    PublishEncoder.encode(version: .v5, dup: false, qos: .atMostOnce, retain: false, topic: t, packetID: 0,
                                          properties: pr, payload: p, into: &buffer)
                }
            }
        }
        h.send(c, buffer.readableArray())
    }

    func testAliasResolvedAndNotForwarded() throws {
        let h = CoreHarness(shards: 2)
        let sub = v5(h, shard: 1, id: "sub")
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "long/topic/name", options: SubscriptionOptions(qos: .atMostOnce))])), version: .v5)
        _ = h.output(sub)
        let pub = v5(h, shard: 0, id: "pub")
        publish(h, pub, topic: "long/topic/name", alias: 3, payload: 1)
        publish(h, pub, topic: "", alias: 3, payload: 2)
        let bytes = h.output(sub)
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        var got: [(String, [UInt8], [UInt8])] = []
        try bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            while let packet = try decoder.next() {
                if case .publish(let p) = packet {
                    got.append((String(decoding: p.topic, as: UTF8.self), Array(p.payload), Array(p.properties.raw)))
                }
            }
        }
        XCTAssertEqual(got.map(\.0), ["long/topic/name", "long/topic/name"])
        XCTAssertEqual(got.map(\.1), [[1], [2]])
        for (_, _, props) in got { XCTAssertEqual(props, [0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76], "alias stripped, user property kept") }
    }

    func testUnknownAliasIsProtocolError() {
        let h = CoreHarness(shards: 1)
        let pub = v5(h, shard: 0, id: "pub")
        publish(h, pub, topic: "", alias: 5, payload: 1)
        let d = h.disconnect(pub)
        XCTAssertEqual(d?.code, .protocolError)
        XCTAssertNotNil(d?.reason)
        XCTAssertTrue(h.isClosing(pub))
    }

    func testAliasAboveMaximumIsTopicAliasInvalid() {
        let h = CoreHarness(shards: 1)
        let pub = v5(h, shard: 0, id: "pub")
        publish(h, pub, topic: "t", alias: 11, payload: 1)
        let d = h.disconnect(pub)
        XCTAssertEqual(d?.code, .topicAliasInvalid)
        XCTAssertNotNil(d?.reason)
    }

    func testConnAckAdvertisesTopicAliasMaximum() throws {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "x")), version: .v5)
        let bytes = h.output(c)
        let packet = try bytes.withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let ack) = packet else { return XCTFail() }
        XCTAssertEqual(ack.properties.topicAliasMaximum, 10)
    }
}

final class PayloadFormatTests: XCTestCase {
    func testInvalidUTF8WithFormatIndicatorRefused() throws {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "pfi")), version: .v5)
        _ = h.output(c)
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array("t".utf8).withUnsafeBytes { t in
            ([0xFF, 0xFE] as [UInt8]).withUnsafeBytes { p in
                ([0x01, 0x01] as [UInt8]).withUnsafeBytes { props in
                    PublishEncoder.encode(version: .v5, dup: false, qos: .atLeastOnce, retain: false, topic: t, packetID: 9,
                                          properties: props, payload: p, into: &buffer)
                }
            }
        }
        h.send(c, buffer.readableArray())
        let packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .puback(let ack) = packet else { return XCTFail("\(packet)") }
        XCTAssertEqual(ack.packetID, 9)
        XCTAssertEqual(ack.reasonCode, .payloadFormatInvalid)
        XCTAssertEqual(ack.properties.reasonString, "payload is not UTF-8")
        XCTAssertFalse(h.isClosing(c))
    }
}
