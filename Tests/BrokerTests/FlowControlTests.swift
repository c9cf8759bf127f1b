// Flow control (ShardCore+FlowControl.swift), the partial-packet budget and the first-byte check,
// through the sans-IO cores: no acknowledged QoS 1 message is dropped for a connected subscriber.

import Codec
import XCTest
@testable import Broker

final class FlowControlTests: XCTestCase {
    func connected(_ h: CoreHarness, shard: Int, id: String) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
        return c
    }

    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS) {
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])))
        _ = h.output(c)
    }

    /// Packet ids of the PUBACKs in `bytes` (4 bytes each).
    func pubAckIDs(_ bytes: [UInt8]) -> [UInt16] {
        stride(from: 0, to: bytes.count, by: 4).map {
            XCTAssertEqual(bytes[$0], 0x40)
            return UInt16(bytes[$0 + 2]) << 8 | UInt16(bytes[$0 + 3])
        }
    }

    /// The subscriber takes what it was sent and acknowledges it; returns the payloads.
    func drain(_ h: CoreHarness, _ sub: CoreHarness.Client) throws -> [[UInt8]] {
        var payloads: [[UInt8]] = []
        while true {
            let batch = try h.received(sub)
            if batch.isEmpty { return payloads }
            for case .publish(_, let payload, _, _, _, let id) in batch {
                payloads.append(payload)
                h.send(sub, .puback(PublishAck(packetID: id)))
            }
        }
    }

    func publishFrame(_ topic: String, _ payload: [UInt8], qos: QoS, packetID: UInt16 = 0) -> [UInt8] {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var t = topic
        t.withUTF8 { topicBytes in
            payload.withUnsafeBytes { payloadBytes in
                PublishEncoder.encode(version: .v3_1_1, dup: false, qos: qos, retain: false, topic: UnsafeRawBufferPointer(topicBytes),
                                      packetID: packetID, properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                      payload: payloadBytes, into: &buffer)
            }
        }
        return buffer.readableArray()
    }

    func config(queued: Int, inflight: Int = 2) -> BrokerConfig {
        var config = BrokerConfig()
        config.maxQueuedMessages = queued
        config.maxInflightMessages = inflight
        return config
    }

    func testAcrossShardsNothingDroppedAndPublisherHeldUntilSubscriberDrains() throws {
        let h = CoreHarness(shards: 2, config: config(queued: 8))
        let sub = connected(h, shard: 1, id: "sub")
        subscribe(h, sub, "t", qos: .atLeastOnce)
        let pub = connected(h, shard: 0, id: "pub")
        for i in 1...40 { sendPublish(h, pub, topic: "t", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i)) }
        // Window 2 + queue: past 4 queued the subscriber throttled the publisher; what came after
        // was routed (and is queued: never dropped) but not acknowledged.
        let early = pubAckIDs(h.output(pub))
        XCTAssertEqual(early, Array(1...UInt16(early.count)))
        XCTAssertLessThan(early.count, 40)
        XCTAssertEqual(h.cores[0].counters.publishersThrottled, 1)
        XCTAssertEqual(h.cores[1].counters.droppedQueueFull, 0)
        let got = try drain(h, sub)
        XCTAssertEqual(got, (1...40).map { [UInt8($0)] }, "every message, in order")
        // Drained: unthrottled, the held PUBACKs follow in order.
        XCTAssertEqual(early + pubAckIDs(h.output(pub)), Array(1...40))
        XCTAssertEqual(h.cores[0].gauges().publishersThrottledNow, 0)
        XCTAssertEqual(h.cores[1].counters.droppedQueueFull, 0)
    }

    func testOfflineSessionStillDropsAtItsLimit() throws {
        let h = CoreHarness(shards: 1, config: config(queued: 4))
        let sub = h.connect(shard: 0)
        h.send(sub, .connect(Connect(cleanStart: false, clientID: "persistent")))
        _ = h.output(sub)
        subscribe(h, sub, "t", qos: .atLeastOnce)
        h.cores[0].connectionLost(sub.id)
        let pub = connected(h, shard: 0, id: "pub")
        for i in 1...10 { sendPublish(h, pub, topic: "t", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i)) }
        XCTAssertEqual(pubAckIDs(h.output(pub)).count, 10, "offline sessions do not throttle")
        XCTAssertEqual(h.cores[0].counters.droppedQueueFull, 6)
        XCTAssertEqual(h.cores[0].counters.publishersThrottled, 0)
    }

    func testPublisherThatIgnoresItsAcksIsPausedThenResumed() throws {
        let h = CoreHarness(shards: 1, config: config(queued: 8))
        let sub = connected(h, shard: 0, id: "sub")
        subscribe(h, sub, "t", qos: .atLeastOnce)
        let pub = connected(h, shard: 0, id: "pub")
        // 400 PUBLISHes in one chunk, not waiting for any PUBACK.
        var flood: [UInt8] = []
        for i in 1...400 {
            flood += publishFrame("t", [UInt8(truncatingIfNeeded: i)], qos: .atLeastOnce, packetID: UInt16(i))
        }
        h.send(pub, flood)
        XCTAssertTrue(h.cores[0].isInputPaused(pub.id))
        XCTAssertEqual(h.cores[0].counters.publishersPaused, 1)
        var changes: [Int32] = []
        h.cores[0].swapInputPauseChanges(&changes)
        XCTAssertEqual(changes, [pub.id.slot])
        let got = try drain(h, sub)
        XCTAssertEqual(got.count, 400, "the held input is decoded once the publisher is read again")
        XCTAssertFalse(h.cores[0].isInputPaused(pub.id))
        XCTAssertEqual(pubAckIDs(h.output(pub)), Array(1...400))
        XCTAssertEqual(h.cores[0].counters.droppedQueueFull, 0)
    }

    func testSelfSubscribedPublisherDoesNotDeadlock() throws {
        // Throttled publishers are still read: a client subscribed to its own topic acknowledges
        // its deliveries and so drains the queue that throttles it.
        let h = CoreHarness(shards: 1, config: config(queued: 8))
        let c = connected(h, shard: 0, id: "loop")
        subscribe(h, c, "self", qos: .atLeastOnce)
        var acked: [UInt16] = []
        var got = 0
        for i in 1...30 {
            sendPublish(h, c, topic: "self", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(1000 + i))
        }
        for _ in 0..<100 {
            let bytes = h.output(c)
            if bytes.isEmpty { break }
            var decoder = StreamDecoder()
            defer { decoder.deallocate() }
            try bytes.withUnsafeBytes { raw in
                decoder.feed(raw)
                while let packet = try decoder.next() {
                    switch packet {
                    case .puback(let a): acked.append(a.packetID)
                    case .publish(let p): got += 1; h.send(c, .puback(PublishAck(packetID: p.packetID)))
                    default: XCTFail("unexpected \(packet.type)")
                    }
                }
            }
        }
        XCTAssertEqual(got, 30)
        XCTAssertEqual(acked, (1...30).map { UInt16(1000 + $0) })
    }

    func testStalledSubscriberIsDisconnectedAndItsPublisherReleased() throws {
        var c = config(queued: 8)
        c.subscriberStallTimeoutSeconds = 1
        let h = CoreHarness(shards: 2, config: c)
        let sub = connected(h, shard: 1, id: "stuck")
        subscribe(h, sub, "t", qos: .atLeastOnce)
        let pub = connected(h, shard: 0, id: "pub")
        for i in 1...20 { sendPublish(h, pub, topic: "t", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i)) }
        let early = pubAckIDs(h.output(pub))
        XCTAssertLessThan(early.count, 20)
        h.cores[1].tick(now: h.now + 500_000_000)
        XCTAssertFalse(h.isClosing(sub), "not yet stalled")
        h.cores[1].tick(now: h.now + 1_500_000_000)
        XCTAssertTrue(h.isClosing(sub))
        XCTAssertEqual(h.cores[1].counters.stalledSubscribersDisconnected, 1)
        h.pump()
        XCTAssertEqual(early + pubAckIDs(h.output(pub)), Array(1...20), "the publisher's acknowledgements go out")
    }

    /// QoS 0 for a client that does not keep up is dropped past 4 MiB waiting, or past eight
    /// messages of the size delivered when they are large.
    func testQoS0DropsPastFourMiBOrEightLargeMessages() {
        for (size, delivered) in [(100_000, 42), (600_000, 8)] {
            let h = CoreHarness(shards: 1)
            let sub = connected(h, shard: 0, id: "sub")
            subscribe(h, sub, "t", qos: .atMostOnce)
            let pub = connected(h, shard: 0, id: "pub")
            for _ in 0..<60 { sendPublish(h, pub, topic: "t", payload: [UInt8](repeating: 1, count: size), qos: .atMostOnce) }
            // Nothing was taken by the socket: all that was delivered waits.
            XCTAssertEqual(h.cores[0].counters.publishesDelivered, UInt64(delivered), "size \(size)")
            XCTAssertEqual(h.cores[0].counters.droppedQoS0, UInt64(60 - delivered), "size \(size)")
        }
    }

    func testPartialPacketBudgetCutsTheLargestFirst() {
        var c = BrokerConfig()
        c.partialPacketMemoryLimit = 100_000
        let h = CoreHarness(shards: 1, config: c)
        let small = connected(h, shard: 0, id: "small")
        let large = connected(h, shard: 0, id: "large")
        // PUBLISH headers declaring 500,000 bytes, then part of the body (less than an eighth:
        // the storage holds what came, not the whole packet's size yet).
        let header: [UInt8] = [0x30, 0xA0, 0xC2, 0x1E, 0x00, 0x01, 0x74]
        h.send(small, header + [UInt8](repeating: 1, count: 20_000))
        h.send(large, header + [UInt8](repeating: 1, count: 60_000))
        XCTAssertFalse(h.isClosing(small))
        XCTAssertFalse(h.isClosing(large))
        h.send(small, [UInt8](repeating: 1, count: 30_000))  // the total passes the limit
        XCTAssertTrue(h.isClosing(large), "the largest holder is cut off")
        XCTAssertFalse(h.isClosing(small))
        XCTAssertEqual(h.cores[0].counters.partialPacketsCutOff, 1)
        XCTAssertLessThanOrEqual(h.cores[0].partialPacketBytes, 100_000)
    }

    func testLargePacketStorageIsNotKept() {
        let h = CoreHarness(shards: 1)
        let c = connected(h, shard: 0, id: "big")
        let payload = [UInt8](repeating: 7, count: 300_000)
        // A packet split in two reads goes through the decoder's storage.
        let frame = publishFrame("t", payload, qos: .atMostOnce)
        h.send(c, Array(frame[0..<1000]))
        XCTAssertGreaterThan(h.cores[0].partialPacketBytes, 0)
        h.send(c, Array(frame[1000...]) + [0xC0, 0x00])
        XCTAssertEqual(h.output(c), [0xD0, 0x00])
        XCTAssertEqual(h.cores[0].partialPacketBytes, 0, "the 300 KB storage went back after its packet")
    }

    func testFirstPacketOtherThanConnectIsRefusedAtItsFirstByte() {
        let h = CoreHarness(shards: 1)
        let c = h.connect(shard: 0)
        h.send(c, [0x30, 0xFF, 0xFF, 0x03])  // a PUBLISH header announcing 64 KB that never comes
        XCTAssertTrue(h.isClosing(c))
        XCTAssertEqual(h.output(c), [])
    }
}
