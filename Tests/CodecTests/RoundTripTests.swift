// Every packet type in every version survives encode → decode unchanged.

import XCTest
@testable import Codec

final class RoundTripTests: XCTestCase {
    static var richProperties: Properties {
        var p = Properties()
        p.userProperties = [UserProperty("a", "1"), UserProperty("a", "2"), UserProperty("ü", "∑")]
        p.reasonString = "because"
        return p
    }

    func roundTrip(_ packet: Packet, _ version: ProtocolVersion, file: StaticString = #filePath, line: UInt = #line) throws {
        let bytes = packet.encoded(version: version)
        let decoded = try decodeFrame(bytes, version)
        XCTAssertEqual(Decoded(decoded), Decoded(packet), "\(packet.type) v\(version.rawValue)", file: file, line: line)
        XCTAssertEqual(decoded.encoded(version: version), bytes, file: file, line: line)
    }

    func testConnectAllVersions() throws {
        for version in [ProtocolVersion.v3_1, .v3_1_1, .v5] {
            var willProps = Properties()
            var connectProps = Properties()
            if version == .v5 {
                willProps.willDelayInterval = 5
                willProps.contentType = "text/plain"
                willProps.payloadFormatIndicator = 1
                willProps.messageExpiryInterval = 100
                willProps.responseTopic = "reply/here"
                willProps.correlationData = [1, 2, 3]
                willProps.userProperties = [UserProperty("w", "x")]
                connectProps.sessionExpiryInterval = 0xFFFF_FFFF
                connectProps.receiveMaximum = 10
                connectProps.maximumPacketSize = 1024
                connectProps.topicAliasMaximum = 5
                connectProps.requestResponseInformation = 1
                connectProps.requestProblemInformation = 0
                connectProps.authenticationMethod = "SCRAM-SHA-256"
                connectProps.authenticationData = [9, 9]
                connectProps.userProperties = [UserProperty("k", "v")]
            }
            let will = Will(topic: "last/will", payload: [0, 1, 2], qos: .exactlyOnce, retain: true, properties: willProps)
            try roundTrip(.connect(Connect(version: version, cleanStart: false, keepAlive: 300, clientID: "client-1", will: will,
                                           username: "user", password: [0xFF, 0x00], properties: connectProps)), version)
            try roundTrip(.connect(Connect(version: version, clientID: "c")), version)
        }
    }

    func testABridgesConnectKeepsItsLevelBit() throws {
        // mosquitto's try_private: bit 7 of a 3.1/3.1.1 level says "a bridge" (fuzzer-found:
        // the bit must survive a round trip).
        for version in [ProtocolVersion.v3_1, .v3_1_1] {
            var c = Connect(version: version, clientID: "edge.cloud")
            c.isBridge = true
            let bytes = Packet.connect(c).encoded(version: version)
            XCTAssertEqual(bytes[version == .v3_1 ? 10 : 8], version.rawValue | 0x80)
            guard case .connect(let back) = try decodeFrame(bytes, version) else { return XCTFail() }
            XCTAssertTrue(back.isBridge)
            XCTAssertEqual(back.version, version)
            try roundTrip(.connect(c), version)
        }
    }

    func testConnAck() throws {
        try roundTrip(.connack(ConnAck(sessionPresent: true, reasonCode: .success)), .v3_1_1)
        try roundTrip(.connack(ConnAck(reasonCode: .badUserNameOrPassword)), .v3_1_1)
        var p = RoundTripTests.richProperties
        p.assignedClientIdentifier = "assigned"
        p.serverKeepAlive = 30
        p.receiveMaximum = 100
        p.maximumQoS = 1
        p.retainAvailable = 0
        p.maximumPacketSize = 65536
        p.topicAliasMaximum = 10
        p.wildcardSubscriptionAvailable = 1
        p.subscriptionIdentifierAvailable = 0
        p.sharedSubscriptionAvailable = 1
        p.responseInformation = "resp"
        p.serverReference = "other:1883"
        p.sessionExpiryInterval = 60
        p.authenticationMethod = "m"
        p.authenticationData = [1]
        try roundTrip(.connack(ConnAck(sessionPresent: false, reasonCode: .success, properties: p)), .v5)
        try roundTrip(.connack(ConnAck(reasonCode: .quotaExceeded)), .v5)
    }

    func testPublishAllVersionsAndQoS() throws {
        for version in [ProtocolVersion.v3_1, .v3_1_1, .v5] {
            for qos in [QoS.atMostOnce, .atLeastOnce, .exactlyOnce] {
                let props: [UInt8] = version == .v5 ? [0x03, 0x00, 0x01, 0x74, 0x0B, 0x05] : []
                let bytes = publishBytes(version, topic: "a/ü/c", payload: Array(0..<200), qos: qos,
                                         packetID: qos == .atMostOnce ? 0 : 77, retain: true, dup: qos != .atMostOnce,
                                         properties: props)
                let decoded = try decodeFrame(bytes, version)
                XCTAssertEqual(Decoded(decoded), .publish(dup: qos != .atMostOnce, qos: qos, retain: true, topic: Array("a/ü/c".utf8),
                                                          packetID: qos == .atMostOnce ? 0 : 77, properties: props, payload: Array(0..<200)))
                XCTAssertEqual(decoded.encoded(version: version), bytes)
            }
        }
    }

    func testAcks() throws {
        for version in [ProtocolVersion.v3_1_1, .v5] {
            try roundTrip(.puback(PublishAck(packetID: 1)), version)
            try roundTrip(.pubrec(PublishAck(packetID: 2)), version)
            try roundTrip(.pubrel(PublishAck(packetID: 3)), version)
            try roundTrip(.pubcomp(PublishAck(packetID: 65535)), version)
        }
        try roundTrip(.puback(PublishAck(packetID: 1, reasonCode: .notAuthorized, properties: RoundTripTests.richProperties)), .v5)
        try roundTrip(.pubrec(PublishAck(packetID: 2, reasonCode: .noMatchingSubscribers)), .v5)
        try roundTrip(.pubrel(PublishAck(packetID: 3, reasonCode: .packetIdentifierNotFound)), .v5)
        try roundTrip(.pubcomp(PublishAck(packetID: 4, reasonCode: .success, properties: RoundTripTests.richProperties)), .v5)
    }

    func testSubscribeFamily() throws {
        let requests = [
            SubscriptionRequest(filter: "a/+/c", options: SubscriptionOptions(qos: .atLeastOnce)),
            SubscriptionRequest(filter: "#", options: SubscriptionOptions(qos: .exactlyOnce)),
            SubscriptionRequest(filter: "$share/g/x", options: SubscriptionOptions(qos: .atMostOnce)),
        ]
        for version in [ProtocolVersion.v3_1, .v3_1_1] {
            try roundTrip(.subscribe(Subscribe(packetID: 10, subscriptions: requests)), version)
            try roundTrip(.suback(SubAck(packetID: 10, reasonCodes: [.grantedQoS1, .grantedQoS2, .unspecifiedError])), version)
            try roundTrip(.unsubscribe(Unsubscribe(packetID: 11, filters: ["a/+/c", "#"])), version)
            try roundTrip(.unsuback(UnsubAck(packetID: 11)), version)
        }
        var p = Properties()
        p.subscriptionIdentifiers = [268_435_455]
        p.userProperties = [UserProperty("s", "t")]
        let v5Requests = requests + [SubscriptionRequest(filter: "n/l", options: SubscriptionOptions(
            qos: .atLeastOnce, noLocal: true, retainAsPublished: true, retainHandling: .doNotSend))]
        try roundTrip(.subscribe(Subscribe(packetID: 12, subscriptions: v5Requests, properties: p)), .v5)
        try roundTrip(.suback(SubAck(packetID: 12, reasonCodes: [.grantedQoS1, .topicFilterInvalid, .sharedSubscriptionsNotSupported],
                                     properties: RoundTripTests.richProperties)), .v5)
        try roundTrip(.unsubscribe(Unsubscribe(packetID: 13, filters: ["x"], properties: Properties())), .v5)
        try roundTrip(.unsuback(UnsubAck(packetID: 13, reasonCodes: [.success, .noSubscriptionExisted],
                                         properties: RoundTripTests.richProperties)), .v5)
    }

    func testPingDisconnectAuth() throws {
        for version in [ProtocolVersion.v3_1, .v3_1_1, .v5] {
            try roundTrip(.pingreq, version)
            try roundTrip(.pingresp, version)
            try roundTrip(.disconnect(Disconnect()), version)
        }
        var p = RoundTripTests.richProperties
        p.sessionExpiryInterval = 0
        p.serverReference = "elsewhere"
        try roundTrip(.disconnect(Disconnect(reasonCode: .sessionTakenOver, properties: p)), .v5)
        try roundTrip(.disconnect(Disconnect(reasonCode: .disconnectWithWill)), .v5)
        try roundTrip(.auth(Auth()), .v5)
        var a = Properties()
        a.authenticationMethod = "SCRAM-SHA-256"
        a.authenticationData = Array("n,,n=user,r=nonce".utf8)
        a.reasonString = "go on"
        try roundTrip(.auth(Auth(reasonCode: .continueAuthentication, properties: a)), .v5)
    }
}
