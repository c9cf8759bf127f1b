// MQTT 5 Subscription Identifiers: attached to each delivery, one per matching subscription,
// across shards and for shared subscriptions; carried along when the session moves.

import Codec
import XCTest
@testable import Broker

final class SubscriptionIdentifierTests: XCTestCase {
    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, id: UInt32) {
        var p = Properties()
        p.subscriptionIdentifiers = [id]
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: .atMostOnce))],
                                       properties: p)), version: .v5)
        _ = h.output(c)
    }

    func identifiers(_ h: CoreHarness, _ c: CoreHarness.Client) throws -> [[UInt32]] {
        let bytes = h.output(c)
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        var out: [[UInt32]] = []
        try bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            while let packet = try decoder.next() {
                if case .publish(let p) = packet {
                    // The publisher sent no properties, so the block holds only Subscription Identifiers.
                    var ids: [UInt32] = []
                    var i = 0
                    let r = p.properties.raw
                    while i < r.count {
                        if r[i] == 0x0B {
                            var v: UInt32 = 0, shift: UInt32 = 0
                            i += 1
                            while true { let b = r[i]; v |= UInt32(b & 0x7F) << shift; i += 1; if b & 0x80 == 0 { break }; shift += 7 }
                            ids.append(v)
                        } else { break }
                    }
                    out.append(ids)
                }
            }
        }
        return out
    }

    func testIdentifiersPerMatchingSubscriptionAcrossShards() throws {
        let h = CoreHarness(shards: 2)
        let sub = h.connect(shard: 1)
        h.send(sub, .connect(Connect(version: .v5, clientID: "sub")), version: .v5)
        _ = h.output(sub)
        subscribe(h, sub, "a/+", id: 7)
        subscribe(h, sub, "a/b", id: 300)
        subscribe(h, sub, "x", id: 9)
        subscribe(h, sub, "#", id: 70_000)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        _ = h.output(pub)
        sendPublish(h, pub, topic: "a/b", payload: [1], qos: .atMostOnce)
        sendPublish(h, pub, topic: "a/c", payload: [2], qos: .atMostOnce)
        let got = try identifiers(h, sub)
        XCTAssertEqual(got.count, 2)
        XCTAssertEqual(Set(got[0]), [7, 300, 70_000], "all matching subscriptions' identifiers")
        XCTAssertEqual(Set(got[1]), [7, 70_000])
    }

    func testConnAckAdvertisesSubscriptionIdentifiers() throws {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "x")), version: .v5)
        let packet = try h.output(c).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .connack(let ack) = packet else { return XCTFail() }
        XCTAssertNil(ack.properties.subscriptionIdentifierAvailable, "absent means available")
    }
}
