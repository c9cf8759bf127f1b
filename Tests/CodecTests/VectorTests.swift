// Byte-exact vectors written by hand from the MQTT 3.1.1 and 5.0 specifications.

import XCTest
@testable import Codec

final class VectorTests: XCTestCase {
    func decode(_ bytes: [UInt8], _ version: ProtocolVersion = .v3_1_1) throws -> Packet {
        try bytes.withUnsafeBytes { raw throws(DecodeError) -> Packet in
            try PacketDecoder.decode(frame: raw, version: version)
        }
    }

    func testConnect311Vector() throws {
        // CONNECT, "MQTT" level 4, clean session, keep alive 60, client id "abc".
        let bytes: [UInt8] = [0x10, 0x0F, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03, 0x61, 0x62, 0x63]
        guard case .connect(let c) = try decode(bytes) else { return XCTFail() }
        XCTAssertEqual(c, Connect(version: .v3_1_1, cleanStart: true, keepAlive: 60, clientID: "abc"))
        XCTAssertEqual(Packet.connect(c).encoded(version: .v3_1_1), bytes)
    }

    func testConnect31Vector() throws {
        let bytes: [UInt8] = [0x10, 0x11, 0x00, 0x06] + Array("MQIsdp".utf8) + [0x03, 0x02, 0x00, 0x0A, 0x00, 0x03] + Array("xyz".utf8)
        guard case .connect(let c) = try decode(bytes) else { return XCTFail() }
        XCTAssertEqual(c.version, .v3_1)
        XCTAssertEqual(c.clientID, "xyz")
        XCTAssertEqual(Packet.connect(c).encoded(version: .v3_1), bytes)
    }

    func testPublishV5WithPropertiesVector() throws {
        // PUBLISH QoS 1, topic "a/b", id 10, properties: payload format 1, message expiry 30,
        // user property ("k","v"); payload "hi".
        let props: [UInt8] = [0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x1E, 0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76]
        let body: [UInt8] = [0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x0A, UInt8(props.count)] + props + [0x68, 0x69]
        let bytes: [UInt8] = [0x32, UInt8(body.count)] + body
        guard case .publish(let p) = try decode(bytes, .v5) else { return XCTFail() }
        XCTAssertEqual(p.qos, .atLeastOnce)
        XCTAssertEqual(p.packetID, 10)
        XCTAssertEqual(Array(p.topic), Array("a/b".utf8))
        XCTAssertEqual(Array(p.payload), Array("hi".utf8))
        XCTAssertEqual(p.properties.payloadFormatIndicator, 1)
        XCTAssertEqual(p.properties.messageExpiryInterval, 30)
        XCTAssertEqual(Array(p.properties.raw), props)
        XCTAssertEqual(Packet.publish(p).encoded(version: .v5), bytes)
    }

    func testSubscribeVector() throws {
        // SUBSCRIBE id 1: "a/+" QoS 1, "#" QoS 0.
        let bytes: [UInt8] = [0x82, 0x0C, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2F, 0x2B, 0x01, 0x00, 0x01, 0x23, 0x00]
        guard case .subscribe(let s) = try decode(bytes) else { return XCTFail() }
        XCTAssertEqual(s.subscriptions.map(\.filter), ["a/+", "#"])
        XCTAssertEqual(s.subscriptions.map(\.options.qos), [.atLeastOnce, .atMostOnce])
        XCTAssertEqual(Packet.subscribe(s).encoded(version: .v3_1_1), bytes)
    }

    func testV5AckShortForms() throws {
        guard case .puback(let a) = try decode([0x40, 0x02, 0x00, 0x05], .v5) else { return XCTFail() }
        XCTAssertEqual(a, PublishAck(packetID: 5))
        guard case .puback(let b) = try decode([0x40, 0x03, 0x00, 0x05, 0x10], .v5) else { return XCTFail() }
        XCTAssertEqual(b.reasonCode, .noMatchingSubscribers)
        XCTAssertEqual(Packet.puback(b).encoded(version: .v5), [0x40, 0x03, 0x00, 0x05, 0x10])
        guard case .disconnect(let d) = try decode([0xE0, 0x00], .v5) else { return XCTFail() }
        XCTAssertEqual(d.reasonCode, .success)
        XCTAssertEqual(Packet.disconnect(Disconnect(reasonCode: .malformedPacket)).encoded(version: .v5), [0xE0, 0x01, 0x81])
    }

    func testConnAckVectors() {
        XCTAssertEqual(Packet.connack(ConnAck()).encoded(version: .v3_1_1), [0x20, 0x02, 0x00, 0x00])
        XCTAssertEqual(Packet.connack(ConnAck(reasonCode: .clientIdentifierNotValid)).encoded(version: .v3_1_1), [0x20, 0x02, 0x00, 0x02])
        XCTAssertEqual(Packet.connack(ConnAck(sessionPresent: true)).encoded(version: .v5), [0x20, 0x03, 0x01, 0x00, 0x00])
    }

    func testPingAndSubAck() throws {
        XCTAssertEqual(Packet.pingreq.encoded(version: .v3_1_1), [0xC0, 0x00])
        guard case .pingresp = try decode([0xD0, 0x00]) else { return XCTFail() }
        XCTAssertEqual(Packet.suback(SubAck(packetID: 2, reasonCodes: [.grantedQoS1, .topicFilterInvalid])).encoded(version: .v3_1_1),
                       [0x90, 0x04, 0x00, 0x02, 0x01, 0x80])
        XCTAssertEqual(Packet.unsuback(UnsubAck(packetID: 3)).encoded(version: .v3_1_1), [0xB0, 0x02, 0x00, 0x03])
    }
}
