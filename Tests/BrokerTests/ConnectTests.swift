// CONNECT handling of the sans-IO core: CONNACK bytes, client id rules, protocol violations.

import Codec
import XCTest
@testable import Broker

final class ConnectTests: XCTestCase {
    func testConnectGetsConnAckSuccess311() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v3_1_1, clientID: "a")))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
    }

    func testConnect31Accepted() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v3_1, clientID: "old-client")))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
    }

    func testEmptyClientIDWithoutCleanSessionRefused() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v3_1_1, cleanStart: false, clientID: "")))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x02])
        XCTAssertTrue(h.isClosing(c))
    }

    func testEmptyClientIDAssignedForV5() throws {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, cleanStart: true, clientID: "")), version: .v5)
        let bytes = h.output(c)
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        var ack: ConnAck?
        try bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            if case .connack(let a)? = try decoder.next() { ack = a }
        }
        XCTAssertEqual(ack?.reasonCode, .success)
        XCTAssertTrue(ack?.properties.assignedClientIdentifier?.hasPrefix("apus-0-") ?? false)
    }

    func testPublishBeforeConnectCloses() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, [0x30, 0x05, 0x00, 0x01, 0x61, 0x68, 0x69])
        XCTAssertTrue(h.isClosing(c))
        XCTAssertEqual(h.output(c), [])
    }

    func testSecondConnectCloses() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(clientID: "x")))
        _ = h.output(c)
        h.send(c, .connect(Connect(clientID: "x")))
        XCTAssertTrue(h.isClosing(c))
    }

    func testMalformedPacketFromV5ClientGetsDisconnect() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "v5")), version: .v5)
        _ = h.output(c)
        // PUBLISH with QoS 3.
        h.send(c, [0x36, 0x03, 0x00, 0x01, 0x61])
        let d = h.disconnect(c)
        XCTAssertEqual(d?.code, .malformedPacket)
        XCTAssertNotNil(d?.reason)
        XCTAssertTrue(h.isClosing(c))
    }

    func testDisconnectWithAServerOnlyReasonCodeIsAProtocolError() throws {
        // [MQTT-3.14.2-1]: 0x8B (Server shutting down) is the server's to send; the will goes out.
        let h = CoreHarness(shards: 1)
        let watcher = h.connect(shard: 0)
        h.send(watcher, .connect(Connect(version: .v5, clientID: "watcher")), version: .v5)
        h.send(watcher, .subscribe(Subscribe(packetID: 1, subscriptions: [
            SubscriptionRequest(filter: "will/#", options: SubscriptionOptions(qos: .atMostOnce))])), version: .v5)
        _ = h.output(watcher)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "v5", will: Will(topic: "will/v5", payload: Array("gone".utf8)))), version: .v5)
        _ = h.output(c)
        h.send(c, [0xE0, 0x01, 0x8B])
        XCTAssertEqual(h.disconnect(c)?.code, .protocolError)
        XCTAssertTrue(h.isClosing(c))
        XCTAssertEqual(try h.received(watcher, version: .v5).compactMap(\.publishTopic), ["will/v5"])

        // A code a client may send (0x04, with will) is a normal end.
        let d = h.connect(shard: 0)
        h.send(d, .connect(Connect(version: .v5, clientID: "d")), version: .v5)
        _ = h.output(d)
        h.send(d, [0xE0, 0x01, 0x04])
        XCTAssertEqual(h.output(d), [])
        XCTAssertTrue(h.isClosing(d))
    }

    func testGarbageClosesOnlyThatConnection() throws {
        let h = CoreHarness(shards: 1)
        let good = h.connect(shard: 0)
        h.send(good, .connect(Connect(clientID: "good")))
        h.send(good, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "t", options: SubscriptionOptions(qos: .atMostOnce))])))
        _ = h.output(good)
        let bad = h.connect(shard: 0)
        h.send(bad, [0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        XCTAssertTrue(h.isClosing(bad))
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        sendPublish(h, pub, topic: "t", payload: [1, 2, 3], qos: .atMostOnce)
        XCTAssertEqual(try h.received(good), [.publish(topic: "t", payload: [1, 2, 3], qos: .atMostOnce, retain: false, dup: false, packetID: 0)])
    }

    func testConnectTimeout() {
        var config = BrokerConfig()
        config.connectTimeoutSeconds = 1
        let h = CoreHarness(shards: 1, config: config)
        let c = h.connect(shard: 0)
        h.cores[0].tick(now: h.now + 500_000_000)
        XCTAssertFalse(h.isClosing(c))
        h.cores[0].tick(now: h.now + 1_500_000_000)
        XCTAssertTrue(h.isClosing(c))
    }

    func testKeepAliveExpiry() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(keepAlive: 2, clientID: "ka")))
        h.cores[0].tick(now: h.now + 2_900_000_000)
        XCTAssertFalse(h.isClosing(c))
        h.cores[0].tick(now: h.now + 3_100_000_000)
        XCTAssertTrue(h.isClosing(c))
    }

    func testPingResp() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(clientID: "p")))
        _ = h.output(c)
        h.send(c, [0xC0, 0x00])
        XCTAssertEqual(h.output(c), [0xD0, 0x00])
    }
}

/// Sends a PUBLISH built from owned values.
func sendPublish(_ h: CoreHarness, _ client: CoreHarness.Client, topic: String, payload: [UInt8], qos: QoS,
                 packetID: UInt16 = 0, version: ProtocolVersion = .v3_1_1) {
    var buffer = ByteBuffer()
    defer { buffer.deallocate() }
    var t = topic
    t.withUTF8 { topicBytes in
        payload.withUnsafeBytes { payloadBytes in
            PublishEncoder.encode(version: version, dup: false, qos: qos, retain: false, topic: UnsafeRawBufferPointer(topicBytes),
                                  packetID: packetID, properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                  payload: payloadBytes, into: &buffer)
        }
    }
    h.send(client, buffer.readableArray())
}

final class MaxKeepAliveTests: XCTestCase {
    func testV5GetsServerKeepAliveAnd311IsRefused() throws {
        var config = BrokerConfig()
        config.maxKeepAlive = 30
        let h = CoreHarness(shards: 1, config: config)
        let v5 = h.connect(shard: 0)
        h.send(v5, .connect(Connect(version: .v5, keepAlive: 120, clientID: "v5")), version: .v5)
        let packet = try h.output(v5).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let ack) = packet else { return XCTFail() }
        XCTAssertEqual(ack.reasonCode, .success)
        XCTAssertEqual(ack.properties.serverKeepAlive, 30)
        let old = h.connect(shard: 0)
        h.send(old, .connect(Connect(version: .v3_1_1, keepAlive: 120, clientID: "old")))
        XCTAssertEqual(h.output(old), [0x20, 0x02, 0x00, 0x02])
        XCTAssertTrue(h.isClosing(old))
        let fine = h.connect(shard: 0)
        h.send(fine, .connect(Connect(version: .v3_1_1, keepAlive: 20, clientID: "fine")))
        XCTAssertEqual(h.output(fine), [0x20, 0x02, 0x00, 0x00])
    }
}
