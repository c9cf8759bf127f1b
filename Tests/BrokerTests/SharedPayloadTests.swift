// Large QoS 1/2 payloads are held once, not copied for every session: the frame they arrived in
// (when it came through the decoder's storage), or one copy per route, passed to the other shards
// by reference. What the subscribers get, what a stored session writes and what a session carries
// to another shard are the same bytes as before.

import Codec
import XCTest
@testable import Broker

final class SharedPayloadTests: XCTestCase {
    let payload = (0..<(100 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    func subscribe(_ h: CoreHarness, shard: Int, id: String, qos: QoS = .atLeastOnce) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "big/#", options: SubscriptionOptions(qos: qos))])))
        _ = h.output(c)
        return c
    }

    func publishFrame(qos: QoS = .atLeastOnce) -> [UInt8] {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        let topic = Array("big/1".utf8)
        topic.withUnsafeBytes { t in
            payload.withUnsafeBytes { p in
                PublishEncoder.encode(version: .v3_1_1, dup: false, qos: qos, retain: false, topic: t, packetID: 9,
                                      properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, into: &buffer)
            }
        }
        return buffer.readableArray()
    }

    func inflightPayload(_ h: CoreHarness, _ c: CoreHarness.Client) -> SharedBytes? {
        h.cores[c.shard].connections[Int(c.id.slot)].session.inflight.first?.message?.sharedPayload
    }

    func payloads(_ packets: [OwnedPacket]) -> [[UInt8]] {
        packets.compactMap { if case .publish(_, let p, _, _, _, _) = $0 { return p } else { return nil } }
    }

    /// Sent in 16 KiB pieces (as the runtime's receive buffers hand it over), the frame goes
    /// through the decoder's storage and is itself the payload every session holds, on this
    /// shard and the other.
    func testTheFrameIsThePayloadOfEverySession() throws {
        let h = CoreHarness(shards: 2)
        let local = subscribe(h, shard: 0, id: "local")
        let remote = [subscribe(h, shard: 1, id: "remote-1"), subscribe(h, shard: 1, id: "remote-2")]
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        _ = h.output(pub)
        let frame = publishFrame()
        for start in stride(from: 0, to: frame.count, by: 16 << 10) {
            h.send(pub, Array(frame[start..<min(start + (16 << 10), frame.count)]), pump: false)
        }
        h.pump()
        let held = try XCTUnwrap(inflightPayload(h, local))
        XCTAssertEqual(held.count, frame.count, "the whole frame, the payload at its end")
        for c in remote { XCTAssertTrue(inflightPayload(h, c) === held, "the other shard holds the same bytes") }
        for c in [local] + remote { XCTAssertEqual(payloads(try h.received(c)), [payload]) }
    }

    /// Arrived in one piece (decoded in place, in the receive buffer), the payload is copied once
    /// for all the sessions of its route.
    func testOneCopyPerRouteWhenTheFrameWasNotStored() throws {
        let h = CoreHarness(shards: 2)
        let subscribers = [subscribe(h, shard: 0, id: "a"), subscribe(h, shard: 0, id: "b"), subscribe(h, shard: 1, id: "c")]
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        _ = h.output(pub)
        h.send(pub, publishFrame())
        let held = try XCTUnwrap(inflightPayload(h, subscribers[0]))
        XCTAssertEqual(held.count, payload.count)
        for c in subscribers { XCTAssertTrue(inflightPayload(h, c) === held) }
        for c in subscribers { XCTAssertEqual(payloads(try h.received(c)), [payload]) }
        // A second message gets its own bytes (the route's copy is not reused outside its route).
        h.send(pub, publishFrame())
        let second = try XCTUnwrap(h.cores[0].connections[Int(subscribers[0].id.slot)].session.inflight.last?.message?.sharedPayload)
        XCTAssertFalse(second === held)
    }

    /// Offline persistent sessions queue the shared payload; what the session carries to another
    /// shard (its snapshot) and what the store writes hold the whole payload.
    func testQueuedSharedPayloadSurvivesSnapshotAndStoreRecord() throws {
        let h = CoreHarness(shards: 1)
        let sub = h.connect(shard: 0)
        h.send(sub, .connect(Connect(cleanStart: false, clientID: "keeper")))
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "big/#", options: SubscriptionOptions(qos: .atLeastOnce))])))
        _ = h.output(sub)
        let a = h.connect(shard: 0), b = h.connect(shard: 0)
        h.send(a, .connect(Connect(cleanStart: false, clientID: "other")))
        h.send(a, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "big/#", options: SubscriptionOptions(qos: .atLeastOnce))])))
        _ = h.output(a)
        h.send(sub, .disconnect(Disconnect()))
        h.send(a, .disconnect(Disconnect()))
        h.send(b, .connect(Connect(clientID: "pub")))
        h.send(b, publishFrame())
        let core = h.cores[0]
        let slot = try XCTUnwrap(core.connections.indices.first { core.connections[$0].clientID == "keeper" })
        let queued = core.connections[slot].session.queue.map { $0 }
        XCTAssertEqual(queued.count, 1)
        let message = try XCTUnwrap(queued.first)
        XCTAssertNotNil(message.sharedPayload)
        XCTAssertEqual(message.payloadCount, payload.count)
        let snapshot = message.snapshot(now: 0)
        XCTAssertEqual(snapshot.payload, payload)
        XCTAssertEqual(snapshot.topic, Array("big/1".utf8))
        let restored = StoredMessage(snapshot: snapshot, now: 0)
        XCTAssertNil(restored.sharedPayload)
        restored.withParts { _, _, p in XCTAssertEqual(Array(p), payload) }
        let record = core.storedMessage(message, id: 1, packetID: 0, state: .queued)
        XCTAssertEqual(record.payload, payload)
    }

    /// A connection whose runtime sends gathered output gets large payloads spliced into its
    /// queue (its PUBLISH header there, the payload by reference), QoS 0 and 1; the stream they
    /// make is the PUBLISH a copy would have made. Others get them copied.
    func testLargePayloadsAreSplicedIntoGatheredOutput() throws {
        let h = CoreHarness(shards: 1)
        let gathered = subscribe(h, shard: 0, id: "gathered")
        h.cores[0].enableGatheredOutput(gathered.id)
        let flat = subscribe(h, shard: 0, id: "flat", qos: .atMostOnce)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        _ = h.output(pub)
        h.send(pub, publishFrame(qos: .atLeastOnce))
        h.send(pub, publishFrame(qos: .atMostOnce))
        let core = h.cores[0]
        XCTAssertNil(core.outboundSplices[flat.id.slot])
        XCTAssertEqual(core.connections[Int(gathered.id.slot)].pendingOutboundBytes,
                       core.connections[Int(gathered.id.slot)].outbound.readableBytes + 2 * payload.count)
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        var splices: [OutboundSplice] = []
        core.takeOutbound(gathered.id, swappingWith: &wire, splices: &splices)
        XCTAssertEqual(splices.count, 2)
        XCTAssertLessThan(wire.readableBytes, 100, "headers only")
        var stream: [UInt8] = []
        var offset = 0
        let bytes = wire.readableArray()
        for splice in splices {
            stream += bytes[offset..<splice.at]
            stream += UnsafeRawBufferPointer(start: splice.start, count: splice.count)
            offset = splice.at
        }
        stream += bytes[offset...]
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        var got: [(QoS, [UInt8])] = []
        try stream.withUnsafeBytes { chunk in
            decoder.feed(chunk)
            while let packet = try decoder.next() { if case .publish(let p) = packet { got.append((p.qos, Array(p.payload))) } }
        }
        XCTAssertEqual(got.map(\.0), [.atLeastOnce, .atMostOnce])
        XCTAssertEqual(got.map(\.1), [payload, payload])
        XCTAssertEqual(payloads(try h.received(flat)), [payload, payload])
        // What the runtime holds now counts, with what the core spliced after the take.
        core.setTransportBacklog(gathered.id, bytes: 1000)
        XCTAssertEqual(core.connections[Int(gathered.id.slot)].transportBacklog, 1000)
        h.send(pub, publishFrame(qos: .atMostOnce))
        XCTAssertEqual(core.connections[Int(gathered.id.slot)].transportBacklog, Int32(1000 + payload.count))
        core.setTransportBacklog(gathered.id, bytes: 10)
        XCTAssertEqual(core.connections[Int(gathered.id.slot)].transportBacklog, Int32(10 + payload.count), "the untaken splice still counts")
    }

    /// A QoS 0 payload of 16 to 64 KiB that arrived in a receive buffer is spliced when several
    /// subscribers here get it (one copy for all), copied into the queue when one does.
    func testMidSizeQoS0IsSplicedOnlyForSeveralSubscribers() throws {
        let mid = [UInt8](repeating: 3, count: 20_000)
        for subscriberCount in [1, 3] {
            let h = CoreHarness(shards: 1)
            var subscribers: [CoreHarness.Client] = []
            for i in 0..<subscriberCount {
                let c = subscribe(h, shard: 0, id: "s\(i)", qos: .atMostOnce)
                h.cores[0].enableGatheredOutput(c.id)
                subscribers.append(c)
            }
            let pub = h.connect(shard: 0)
            h.send(pub, .connect(Connect(clientID: "pub")))
            _ = h.output(pub)
            sendPublish(h, pub, topic: "big/mid", payload: mid, qos: .atMostOnce)
            let spliced = subscribers.filter { h.cores[0].outboundSplices[$0.id.slot] != nil }.count
            XCTAssertEqual(spliced, subscriberCount == 1 ? 0 : subscriberCount, "\(subscriberCount) subscribers")
            if subscriberCount > 1 {
                let held = subscribers.compactMap { h.cores[0].outboundSplices[$0.id.slot]?.first?.bytes }
                XCTAssertTrue(held.allSatisfy { $0 === held[0] }, "one copy for all of them")
            }
        }
    }
}
