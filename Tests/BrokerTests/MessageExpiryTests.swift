// MQTT 5 Message Expiry Interval: a queued message that expired is not sent; one that waited is
// sent with the interval it has left; retained messages expire too.

import Codec
import XCTest
@testable import Broker

final class MessageExpiryTests: XCTestCase {
    func expiringPublish(_ h: CoreHarness, _ c: CoreHarness.Client, topic: String, seconds: UInt32, retain: Bool = false, packetID: UInt16) {
        let props: [UInt8] = [0x02, UInt8(seconds >> 24), UInt8((seconds >> 16) & 0xFF), UInt8((seconds >> 8) & 0xFF), UInt8(seconds & 0xFF)]
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Array(topic.utf8).withUnsafeBytes { t in
            ([1] as [UInt8]).withUnsafeBytes { p in
                props.withUnsafeBytes { pr in
                    PublishEncoder.encode(version: .v5, dup: false, qos: .atLeastOnce, retain: retain, topic: t, packetID: packetID,
                                          properties: pr, payload: p, into: &buffer)
                }
            }
        }
        h.send(c, buffer.readableArray())
        _ = h.output(c)
    }

    func v5(_ h: CoreHarness, id: String, clean: Bool = true, expiry: UInt32? = nil) -> CoreHarness.Client {
        let c = h.connect(shard: 0)
        var p = Properties()
        p.sessionExpiryInterval = expiry
        h.send(c, .connect(Connect(version: .v5, cleanStart: clean, clientID: id, properties: p)), version: .v5)
        _ = h.output(c)
        return c
    }

    func expiries(_ h: CoreHarness, _ c: CoreHarness.Client) throws -> [UInt32?] {
        let bytes = h.output(c)
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        var out: [UInt32?] = []
        try bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            while let packet = try decoder.next() {
                if case .publish(let p) = packet { out.append(p.properties.messageExpiryInterval) }
            }
        }
        return out
    }

    func testQueuedMessageExpiresOrGetsRemainingInterval() throws {
        let h = CoreHarness(shards: 1)
        let sub = v5(h, id: "sub", clean: true, expiry: 600)
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "e/#", options: SubscriptionOptions(qos: .atLeastOnce))])), version: .v5)
        _ = h.output(sub)
        h.send(sub, [0xE0, 0x00])  // offline: messages queue
        let pub = v5(h, id: "pub")
        expiringPublish(h, pub, topic: "e/short", seconds: 2, packetID: 1)
        expiringPublish(h, pub, topic: "e/long", seconds: 100, packetID: 2)
        h.now += 10_000_000_000  // ten seconds later the client comes back
        h.cores[0].tick(now: h.now)
        let back = h.connect(shard: 0)
        var p = Properties()
        p.sessionExpiryInterval = 600
        h.send(back, .connect(Connect(version: .v5, cleanStart: false, clientID: "sub", properties: p)), version: .v5)
        XCTAssertEqual(try expiries(h, back), [90], "the 2 s message expired; the 100 s one has 90 s left")
        XCTAssertEqual(h.cores[0].counters.droppedExpired, 1)
    }

    func testRetainedMessageExpires() throws {
        let h = CoreHarness(shards: 1)
        let pub = v5(h, id: "pub")
        expiringPublish(h, pub, topic: "r", seconds: 5, retain: true, packetID: 1)
        h.now += 3_000_000_000
        let early = v5(h, id: "early")
        h.send(early, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "r", options: SubscriptionOptions(qos: .atLeastOnce))])), version: .v5)
        XCTAssertEqual(try expiries(h, early), [2])
        h.now += 3_000_000_000
        let late = v5(h, id: "late")
        h.send(late, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "r", options: SubscriptionOptions(qos: .atLeastOnce))])), version: .v5)
        XCTAssertEqual(try expiries(h, late), [])
    }
}
