// The malformed-input corpus: each input yields its specific DecodeError (and never a crash).

import XCTest
@testable import Codec

final class MalformedInputTests: XCTestCase {
    func expect(_ error: DecodeError, _ bytes: [UInt8], _ version: ProtocolVersion = .v3_1_1, maxPacketSize: Int = 268_435_460,
                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try streamDecode([bytes], version, maxPacketSize: maxPacketSize), file: file, line: line) { e in
            XCTAssertEqual(e as? DecodeError, error, file: file, line: line)
        }
    }

    static let connectHeader: [UInt8] = [0x00, 0x04, 0x4D, 0x51, 0x54, 0x54]  // "MQTT"

    func testRemainingLengthOverFourBytes() {
        expect(.malformedVariableByteInteger, [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        expect(.malformedVariableByteInteger, [0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
    }

    func testReservedPacketTypeAndFlags() {
        expect(.reservedPacketType, [0x00, 0x00])
        expect(.invalidFixedHeaderFlags, [0x82 & 0xF0, 0x05, 0x00, 0x01, 0x00, 0x01, 0x61])  // SUBSCRIBE flags 0
        expect(.invalidFixedHeaderFlags, [0xC1, 0x00])  // PINGREQ with a flag bit
        expect(.invalidFixedHeaderFlags, [0x60, 0x02, 0x00, 0x01])  // PUBREL flags 0
        expect(.invalidFixedHeaderFlags, [0x38, 0x03, 0x00, 0x01, 0x61])  // QoS 0 with DUP
        expect(.reservedPacketType, [0xF0, 0x00], .v3_1_1)  // AUTH does not exist before 5.0
    }

    func testBadFirstByteOfAnIncompletePacketIsRefusedAtOnce() {
        // Only the header and part of the body: the decoder refuses it before the body arrives.
        for bytes: [UInt8] in [[0x80, 0xFF, 0x7F, 0x00], [0x36, 0xFF, 0x7F, 0x00], [0xC1, 0x05, 0x00], [0x60, 0x05]] {
            var decoder = StreamDecoder(version: .v5)
            defer { decoder.deallocate() }
            bytes.withUnsafeBytes { decoder.feed($0) }
            XCTAssertThrowsError(try decoder.next(), "\(bytes)")
        }
        // A good first byte waits for the rest.
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        [UInt8]([0x82, 0xFF, 0x7F, 0x00]).withUnsafeBytes { decoder.feed($0) }
        XCTAssertNil(try decoder.next())
    }

    func testV5RemainingLengthInMoreBytesThanNeeded() {
        expect(.malformedVariableByteInteger, [0xC0, 0x80, 0x00], .v5)  // PINGREQ, length 0 in two bytes
        expect(.malformedVariableByteInteger, [0xE0, 0x81, 0x00, 0x00], .v5)
        // 3.1.1 does not require the shortest form.
        XCTAssertNoThrow(try streamDecode([[0xC0, 0x80, 0x00]], .v3_1_1))
    }

    func testV5PropertyIntegersInMoreBytesThanNeeded() {
        // [MQTT-1.5.5-1] holds for every variable byte integer of 5.0, not only the remaining length.
        expect(.malformedVariableByteInteger, [0x30, 0x05, 0x00, 0x01, 0x61, 0x80, 0x00], .v5)  // property length 0 in two bytes
        expect(.malformedVariableByteInteger, [0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x81, 0x00, 0x01], .v5)  // property id 1 in two bytes
        // SUBSCRIBE with Subscription Identifier 1 in two bytes.
        expect(.malformedVariableByteInteger, [0x82, 0x0A, 0x00, 0x01, 0x03, 0x0B, 0x81, 0x00, 0x00, 0x01, 0x61, 0x00], .v5)
        // The shortest forms decode: no properties, and Subscription Identifier 128 in two bytes.
        XCTAssertNoThrow(try streamDecode([[0x30, 0x04, 0x00, 0x01, 0x61, 0x00]], .v5))
        XCTAssertNoThrow(try streamDecode([[0x82, 0x0A, 0x00, 0x01, 0x03, 0x0B, 0x80, 0x01, 0x00, 0x01, 0x61, 0x00]], .v5))
    }

    func testQoS3() {
        expect(.invalidQoS, [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])
        expect(.invalidQoS, [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x03])  // subscription QoS 3
        // CONNECT with will flag and will QoS 3.
        expect(.invalidQoS, [0x10, 0x0C] + MalformedInputTests.connectHeader + [0x04, 0b0001_1110, 0x00, 0x0A, 0x00, 0x00])
    }

    func testInvalidUTF8() {
        expect(.invalidUTF8, publishBytes(.v3_1_1, topic: "a", payload: []).enumerated().map { $0.offset == 4 ? 0xFF : $0.element })
        expect(.invalidUTF8, [0x30, 0x04, 0x00, 0x02, 0xC0, 0x80])  // overlong NUL
        expect(.invalidUTF8, [0x30, 0x04, 0x00, 0x02, 0x61, 0x00])  // U+0000
        expect(.invalidUTF8, [0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80])  // surrogate U+D800
        expect(.invalidUTF8, [0x30, 0x06, 0x00, 0x04, 0xF4, 0x90, 0x80, 0x80])  // above U+10FFFF
        expect(.invalidUTF8, [0x30, 0x04, 0x00, 0x02, 0x61, 0xE2])  // truncated sequence
        // Client id with invalid UTF-8.
        expect(.invalidUTF8, [0x10, 0x0E] + MalformedInputTests.connectHeader + [0x04, 0x02, 0x00, 0x0A, 0x00, 0x02, 0x61, 0xFE])
    }

    func testDuplicatedAndMisplacedProperties() {
        // PUBLISH v5 with Message Expiry twice.
        let twice: [UInt8] = [0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]
        expect(.duplicateProperty, [0x30, UInt8(2 + 1 + 1 + twice.count), 0x00, 0x01, 0x61, UInt8(twice.count)] + twice, .v5)
        // Session Expiry Interval is not a PUBLISH property.
        let session: [UInt8] = [0x11, 0, 0, 0, 1]
        expect(.invalidProperty, [0x30, UInt8(4 + session.count), 0x00, 0x01, 0x61, UInt8(session.count)] + session, .v5)
        // Unknown property identifier 0x7F.
        expect(.invalidProperty, [0x30, 0x06, 0x00, 0x01, 0x61, 0x02, 0x7F, 0x00], .v5)
        // Receive Maximum 0 in CONNECT.
        let rm: [UInt8] = [0x21, 0x00, 0x00]
        expect(.invalidPropertyValue, [0x10, UInt8(10 + 1 + rm.count + 2)] + MalformedInputTests.connectHeader
               + [0x05, 0x02, 0x00, 0x0A, UInt8(rm.count)] + rm + [0x00, 0x00], .v5)
        // Payload Format Indicator 2.
        expect(.invalidPropertyValue, [0x30, 0x06, 0x00, 0x01, 0x61, 0x02, 0x01, 0x02], .v5)
    }

    func testPropertyLengthPastTheEnd() {
        expect(.truncated, [0x30, 0x05, 0x00, 0x01, 0x61, 0x10, 0x01], .v5)
        // A string property whose length runs past the property block.
        expect(.truncated, [0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x03, 0x00, 0x05], .v5)
    }

    func testTruncatedPackets() {
        expect(.truncated, [0x30, 0x03, 0x00, 0x05, 0x61])  // topic length past the end
        expect(.truncated, [0x32, 0x04, 0x00, 0x01, 0x61, 0x00])  // QoS 1 missing half the packet id
        expect(.truncated, [0x10, 0x04, 0x00, 0x04, 0x4D, 0x51])
        expect(.truncated, [0x82, 0x04, 0x00, 0x01, 0x00, 0x05])
        expect(.trailingBytes, [0x40, 0x03, 0x00, 0x01, 0x00])  // 3.1.1 PUBACK with an extra byte
        expect(.trailingBytes, [0xC0, 0x01, 0x00])
        expect(.trailingBytes, [0xE0, 0x01, 0x00], .v3_1_1)
    }

    func testOversizedPacket() {
        expect(.packetTooLarge, publishBytes(.v3_1_1, topic: "a", payload: Array(repeating: 0, count: 100)), maxPacketSize: 50)
        // Rejected from the header alone, before the body arrives.
        expect(.packetTooLarge, [0x30, 0xFF, 0xFF, 0x7F], maxPacketSize: 1 << 20)
    }

    func testConnectViolations() {
        expect(.unsupportedProtocolVersion, [0x10, 0x0C, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x58, 0x04, 0x02, 0x00, 0x0A, 0x00, 0x00])
        expect(.unsupportedProtocolVersion, [0x10, 0x0C] + MalformedInputTests.connectHeader + [0x06, 0x02, 0x00, 0x0A, 0x00, 0x00])
        expect(.protocolViolation, [0x10, 0x0C] + MalformedInputTests.connectHeader + [0x04, 0x03, 0x00, 0x0A, 0x00, 0x00])  // reserved bit
        expect(.protocolViolation, [0x10, 0x0C] + MalformedInputTests.connectHeader + [0x04, 0x22, 0x00, 0x0A, 0x00, 0x00])  // will retain without will
        expect(.protocolViolation, [0x10, 0x0E] + MalformedInputTests.connectHeader + [0x04, 0x42, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00])  // password without user
        // Will topic with a wildcard.
        expect(.invalidTopicName, [0x10, 0x11] + MalformedInputTests.connectHeader + [0x04, 0x06, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x01, 0x23, 0x00, 0x00])
    }

    func testSubscribeAndPublishViolations() {
        expect(.emptySubscriptionList, [0x82, 0x02, 0x00, 0x01])
        expect(.emptySubscriptionList, [0xA2, 0x02, 0x00, 0x01])
        expect(.invalidPacketIdentifier, [0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00])
        expect(.protocolViolation, [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x04])  // 3.1.1 reserved option bits
        expect(.protocolViolation, [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x30], .v5)  // retain handling 3
        expect(.invalidTopicName, [0x30, 0x03, 0x00, 0x01, 0x2B])  // wildcard in a topic name
        expect(.invalidTopicName, [0x30, 0x02, 0x00, 0x00])  // empty topic, 3.1.1
        expect(.invalidTopicName, [0x30, 0x03, 0x00, 0x00, 0x00], .v5)  // empty topic without alias
        expect(.invalidPacketIdentifier, [0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00])
        expect(.invalidReasonCode, [0x40, 0x03, 0x00, 0x01, 0x05], .v5)
    }

    func testErrorsMapToReasonCodes() {
        XCTAssertEqual(DecodeError.malformedVariableByteInteger.reasonCode, .malformedPacket)
        XCTAssertEqual(DecodeError.invalidUTF8.reasonCode, .malformedPacket)
        XCTAssertEqual(DecodeError.protocolViolation.reasonCode, .protocolError)
        XCTAssertEqual(DecodeError.duplicateProperty.reasonCode, .protocolError)
        XCTAssertEqual(DecodeError.packetTooLarge.reasonCode, .packetTooLarge)
        XCTAssertEqual(DecodeError.invalidTopicName.reasonCode, .topicNameInvalid)
    }
}
