// Outbound MQTT 5 topic aliases (the broker assigns them), Reason Strings under Request Problem
// Information, and Response Information.

import Codec
import XCTest
@testable import Broker

final class OutboundAliasTests: XCTestCase {
    func v5(_ h: CoreHarness, shard: Int, id: String, clean: Bool = true,
            properties: Properties = Properties()) throws -> (CoreHarness.Client, ConnAck) {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(version: .v5, cleanStart: clean, clientID: id, properties: properties)), version: .v5)
        let packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let ack) = packet else { XCTFail("\(packet)"); throw DecodeError.truncated }
        return (c, ack)
    }

    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS) {
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])),
               version: .v5)
        _ = h.output(c)
    }

    func publish(_ h: CoreHarness, _ c: CoreHarness.Client, topic: String, payload: UInt8, qos: QoS = .atMostOnce, id: UInt16 = 0,
                 version: ProtocolVersion = .v5) {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array(topic.utf8).withUnsafeBytes { t in
            [payload].withUnsafeBytes { p in
                PublishEncoder.encode(version: version, dup: false, qos: qos, retain: false, topic: t, packetID: id,
                                      properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
            }
        }
        h.send(c, buffer.readableArray())
    }

    /// (topic, alias, payload) of every PUBLISH queued for `c`.
    func deliveries(_ h: CoreHarness, _ c: CoreHarness.Client) throws -> [(String, UInt16?, [UInt8])] {
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        var got: [(String, UInt16?, [UInt8])] = []
        try h.output(c).withUnsafeBytes { raw in
            decoder.feed(raw)
            while let packet = try decoder.next() {
                if case .publish(let p) = packet {
                    got.append((String(decoding: p.topic, as: UTF8.self), p.properties.topicAlias, Array(p.payload)))
                }
            }
        }
        return got
    }

    func testAliasAssignedThenUsedAloneAcrossShards() throws {
        let h = CoreHarness(shards: 2)
        var props = Properties()
        props.topicAliasMaximum = 2
        let (sub, _) = try v5(h, shard: 1, id: "sub", properties: props)
        subscribe(h, sub, "a/#", qos: .atMostOnce)
        let (pub, _) = try v5(h, shard: 0, id: "pub")
        for (topic, n) in [("a/1", 1), ("a/1", 2), ("a/2", 3), ("a/3", 4), ("a/2", 5), ("a/3", 6)] {
            publish(h, pub, topic: topic, payload: UInt8(n))
        }
        let got = try deliveries(h, sub)
        XCTAssertEqual(got.map(\.0), ["a/1", "", "a/2", "a/3", "", "a/3"], "third topic: no alias left, sent in full")
        XCTAssertEqual(got.map(\.1), [1, 1, 2, nil, 2, nil])
        XCTAssertEqual(got.map(\.2), [[1], [2], [3], [4], [5], [6]])
    }

    func testQoS1AliasesAndNewConnectionStartsOver() throws {
        let h = CoreHarness(shards: 1)
        var props = Properties()
        props.topicAliasMaximum = 5
        props.sessionExpiryInterval = 600
        let (sub, _) = try v5(h, shard: 0, id: "q1", clean: false, properties: props)
        subscribe(h, sub, "t", qos: .atLeastOnce)
        let (pub, _) = try v5(h, shard: 0, id: "pub")
        publish(h, pub, topic: "t", payload: 1, qos: .atLeastOnce, id: 1)
        publish(h, pub, topic: "t", payload: 2, qos: .atLeastOnce, id: 2)
        XCTAssertEqual(try deliveries(h, sub).map(\.0), ["t", ""])
        h.cores[0].connectionLost(sub.id)
        // Unacknowledged messages are re-sent on the new connection, which knows no aliases yet.
        h.pump()
        let again = h.connect(shard: 0)
        h.send(again, .connect(Connect(version: .v5, cleanStart: false, clientID: "q1", properties: props)), version: .v5)
        let resent = try deliveries(h, again)
        XCTAssertEqual(resent.map(\.0), ["t", ""])
        XCTAssertEqual(resent.map(\.1), [1, 1])
    }

    func testNoAliasesWithoutClientMaximumOrFor311() throws {
        let h = CoreHarness(shards: 1)
        let (sub, _) = try v5(h, shard: 0, id: "plain")
        subscribe(h, sub, "t", qos: .atMostOnce)
        let (pub, _) = try v5(h, shard: 0, id: "pub")
        publish(h, pub, topic: "t", payload: 1)
        publish(h, pub, topic: "t", payload: 2)
        XCTAssertEqual(try deliveries(h, sub).map(\.1), [nil, nil])
    }

    func testRetainedMessagesCarryNoAlias() throws {
        let h = CoreHarness(shards: 1)
        let (pub, _) = try v5(h, shard: 0, id: "pub")
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array("r".utf8).withUnsafeBytes { t in
            ([7] as [UInt8]).withUnsafeBytes { p in
                PublishEncoder.encode(version: .v5, dup: false, qos: .atMostOnce, retain: true, topic: t, packetID: 0,
                                      properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
            }
        }
        h.send(pub, buffer.readableArray())
        var props = Properties()
        props.topicAliasMaximum = 5
        let (sub, _) = try v5(h, shard: 0, id: "sub", properties: props)
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "r", options: SubscriptionOptions(qos: .atMostOnce))])),
               version: .v5)
        let got = try deliveries(h, sub)
        XCTAssertEqual(got.map(\.0), ["r"])
        XCTAssertEqual(got.map(\.1), [nil])
    }
}

final class ProblemInformationTests: XCTestCase {
    func connect(_ h: CoreHarness, id: String, properties: Properties) -> CoreHarness.Client {
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: id, properties: properties)), version: .v5)
        return c
    }

    func testReasonStringOnPubAckOnlyWhenProblemInformationRequested() throws {
        for (request, expected) in [(UInt8?.none, Optional("payload larger than message_size_limit")), (0, nil)] {
            var config = BrokerConfig()
            config.messageSizeLimit = 1
            let h = CoreHarness(shards: 1, config: config)
            var props = Properties()
            props.requestProblemInformation = request
            let c = connect(h, id: "p", properties: props)
            _ = h.output(c)
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            Array("t".utf8).withUnsafeBytes { t in
                ([1, 2] as [UInt8]).withUnsafeBytes { p in
                    PublishEncoder.encode(version: .v5, dup: false, qos: .atLeastOnce, retain: false, topic: t, packetID: 4,
                                          properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
                }
            }
            h.send(c, buffer.readableArray())
            let packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
            guard case .puback(let ack) = packet else { return XCTFail("\(packet)") }
            XCTAssertEqual(ack.reasonCode, .quotaExceeded)
            XCTAssertEqual(ack.properties.reasonString, expected)
        }
    }

    func testDisconnectKeepsReasonStringEvenWithProblemInformationOff() {
        let h = CoreHarness(shards: 1)
        var props = Properties()
        props.requestProblemInformation = 0
        let c = connect(h, id: "p", properties: props)
        _ = h.output(c)
        h.send(c, .connect(Connect(version: .v5, clientID: "again")), version: .v5)
        let d = h.disconnect(c)
        XCTAssertEqual(d?.code, .protocolError)
        XCTAssertEqual(d?.reason, "second CONNECT")
    }

    func testRefusedConnAckHasReasonString() throws {
        let h = CoreHarness(shards: 1)
        let c = connect(h, id: "", properties: Properties())
        // Clean start is true by default; make it a persistent session with an empty id instead.
        _ = h.output(c)
        let d = h.connect(shard: 0)
        h.send(d, .connect(Connect(version: .v5, cleanStart: false, clientID: "")), version: .v5)
        let packet = try h.output(d).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let ack) = packet else { return XCTFail("\(packet)") }
        XCTAssertEqual(ack.reasonCode, .clientIdentifierNotValid)
        XCTAssertEqual(ack.properties.reasonString, "an empty client identifier needs Clean Start")
    }

    func testResponseInformationWhenRequested() throws {
        let h = CoreHarness(shards: 1)
        var props = Properties()
        props.requestResponseInformation = 1
        let c = connect(h, id: "dev-7", properties: props)
        var packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let ack) = packet else { return XCTFail("\(packet)") }
        XCTAssertEqual(ack.properties.responseInformation, "response/dev-7")
        let other = connect(h, id: "quiet", properties: Properties())
        packet = try h.output(other).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let plain) = packet else { return XCTFail("\(packet)") }
        XCTAssertNil(plain.properties.responseInformation)
    }
}
