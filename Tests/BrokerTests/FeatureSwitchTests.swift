// retain_available, max_qos, wildcard/shared subscriptions and subscription identifiers switched off.

import Codec
import XCTest
@testable import Broker

final class FeatureSwitchTests: XCTestCase {
    func restricted() -> BrokerConfig {
        var config = BrokerConfig()
        config.retainAvailable = false
        config.maximumQoS = .atLeastOnce
        config.wildcardSubscriptionsAvailable = false
        config.sharedSubscriptionsAvailable = false
        config.subscriptionIdentifiersAvailable = false
        return config
    }

    func connack(_ h: CoreHarness, _ c: CoreHarness.Client, version: ProtocolVersion) throws -> ConnAck {
        h.send(c, .connect(Connect(version: version, clientID: "f")), version: version)
        let packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: version) }
        guard case .connack(let ack) = packet else { throw DecodeError.truncated }
        return ack
    }

    func testConnAckAnnouncesWhatIsOff() throws {
        let h = CoreHarness(shards: 1, config: restricted())
        let p = try connack(h, h.connect(shard: 0), version: .v5).properties
        XCTAssertEqual([p.retainAvailable, p.maximumQoS, p.wildcardSubscriptionAvailable, p.sharedSubscriptionAvailable,
                        p.subscriptionIdentifierAvailable], [0, 1, 0, 0, 0])
        let plain = CoreHarness(shards: 1)
        let defaults = try connack(plain, plain.connect(shard: 0), version: .v5).properties
        XCTAssertNil(defaults.retainAvailable)
        XCTAssertNil(defaults.maximumQoS)
    }

    func testSubAckCodes() throws {
        for version in [ProtocolVersion.v5, .v3_1_1] {
            let h = CoreHarness(shards: 1, config: restricted())
            let c = h.connect(shard: 0)
            _ = try connack(h, c, version: version)
            h.send(c, .subscribe(Subscribe(packetID: 2, subscriptions: ["a/+", "$share/g/a", "a/b"].map {
                SubscriptionRequest(filter: $0, options: SubscriptionOptions(qos: .exactlyOnce))
            })), version: version)
            let packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: version) }
            guard case .suback(let ack) = packet else { return XCTFail("\(packet)") }
            XCTAssertEqual(ack.reasonCodes, version == .v5 ? [.wildcardSubscriptionsNotSupported, .sharedSubscriptionsNotSupported, .grantedQoS1]
                                                            : [.unspecifiedError, .unspecifiedError, .grantedQoS1])
        }
    }

    func testPublishAboveMaxQoSOrRetainedEndsConnection() throws {
        for (qos, retain, reason) in [(QoS.exactlyOnce, false, ReasonCode.qosNotSupported), (.atMostOnce, true, .retainNotSupported)] {
            let h = CoreHarness(shards: 1, config: restricted())
            let c = h.connect(shard: 0)
            _ = try connack(h, c, version: .v5)
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            Array("t".utf8).withUnsafeBytes { t in
                ([1] as [UInt8]).withUnsafeBytes { p in
                    PublishEncoder.encode(version: .v5, dup: false, qos: qos, retain: retain, topic: t, packetID: 1,
                                          properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
                }
            }
            h.send(c, buffer.readableArray())
            XCTAssertEqual(h.disconnect(c)?.code, reason)
            XCTAssertTrue(h.isClosing(c))
        }
    }
}
