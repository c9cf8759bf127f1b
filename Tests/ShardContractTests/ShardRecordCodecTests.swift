// Every message kind through the one codec and back; records that lie about their lengths or are
// cut anywhere are refused; the serialised session round-trips with everything a session holds.

import XCTest
import Codec
@testable import ShardContract

final class ShardRecordCodecTests: XCTestCase {
    let origin = ShardAddress(node: 7, shard: 3)

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// Encodes `message`, decodes it, and hands the result (and the record) to `check`.
    func roundTrip(_ message: ShardMessage, _ check: (ShardRecord, [UInt8]) throws -> Void) throws {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        buffer.writeBytes([0xAA, 0xBB])  // records are appended after what the outbox holds
        buffer.moveReaderIndex(forwardBy: 2)
        ShardRecordCodec.encode(message, origin: origin, into: &buffer)
        let record = buffer.readableArray()
        XCTAssertEqual(record.withUnsafeBytes { ShardRecordCodec.recordLength($0.baseAddress!) }, record.count)
        let decoded = try record.withUnsafeBytes { try ShardRecordCodec.decode($0) }
        XCTAssertEqual(decoded.origin, origin)
        try check(decoded, record)
        // Cut anywhere (the length field fixed up to claim the shorter record), it is refused.
        for cut in 0..<record.count {
            var short = Array(record[0..<cut])
            if cut >= 4 { withUnsafeBytes(of: UInt32(cut).littleEndian) { short.replaceSubrange(0..<4, with: $0) } }
            XCTAssertThrowsError(try short.withUnsafeBytes { try ShardRecordCodec.decode($0) }, "cut at \(cut)")
        }
    }

    func testPublishKinds() throws {
        let topic = bytes("sensors/7/temp"), properties: [UInt8] = [0x01, 0x01], payload = bytes("21.5")
        let id = ConnectionID(slot: 12, generation: 99)
        try topic.withUnsafeBytes { t in
            try properties.withUnsafeBytes { p in
                try payload.withUnsafeBytes { b in
                    let publish = ForwardedPublish(qos: .exactlyOnce, retain: true, origin: id, topic: t, properties: p, payload: b)
                    func same(_ q: ForwardedPublish) {
                        XCTAssertEqual(q.qos, .exactlyOnce); XCTAssertTrue(q.retain); XCTAssertEqual(q.origin, id)
                        XCTAssertEqual(Array(q.topic), topic); XCTAssertEqual(Array(q.properties), properties)
                        XCTAssertEqual(Array(q.payload), payload)
                    }
                    try roundTrip(.publish(publish)) { r, _ in
                        guard case .publish(let q) = r.message else { return XCTFail("publish") }
                        same(q)
                    }
                    let filter = bytes("sensors/+/temp"), group = bytes("g1")
                    try filter.withUnsafeBytes { f in
                        try group.withUnsafeBytes { g in
                            try roundTrip(.replayPublish(publish, filter: f)) { r, _ in
                                guard case .replayPublish(let q, let rf) = r.message else { return XCTFail("replay") }
                                same(q); XCTAssertEqual(Array(rf), filter)
                            }
                            try roundTrip(.sharedPublish(publish, filter: f, group: g, member: 5)) { r, _ in
                                guard case .sharedPublish(let q, let rf, let rg, let member) = r.message else { return XCTFail("shared") }
                                same(q); XCTAssertEqual(Array(rf), filter); XCTAssertEqual(Array(rg), group); XCTAssertEqual(member, 5)
                            }
                            try roundTrip(.shareCount(filter: f, group: g, count: 4)) { r, _ in
                                guard case .shareCount(let rf, let rg, let count) = r.message else { return XCTFail("shareCount") }
                                XCTAssertEqual(Array(rf), filter); XCTAssertEqual(Array(rg), group); XCTAssertEqual(count, 4)
                            }
                            try roundTrip(.routeAdd(filter: f, time: 123_456_789)) { r, _ in
                                guard case .routeAdd(let rf, let time) = r.message else { return XCTFail("routeAdd") }
                                XCTAssertEqual(Array(rf), filter); XCTAssertEqual(time, 123_456_789)
                            }
                            try roundTrip(.routeRemove(filter: f, time: .max)) { r, _ in
                                guard case .routeRemove(let rf, let time) = r.message else { return XCTFail("routeRemove") }
                                XCTAssertEqual(Array(rf), filter); XCTAssertEqual(time, .max)
                            }
                        }
                    }
                    try roundTrip(.retain(RetainedUpdate(qos: .atLeastOnce, stamp: RetainedStamp(time: 42, origin: ShardAddress(node: 513, shard: 3)), topic: t, properties: p, payload: b))) { r, _ in
                        guard case .retain(let u) = r.message else { return XCTFail("retain") }
                        XCTAssertEqual(u.qos, .atLeastOnce); XCTAssertEqual(u.stamp, RetainedStamp(time: 42, origin: ShardAddress(node: 513, shard: 3)))
                        XCTAssertEqual(Array(u.topic), topic); XCTAssertEqual(Array(u.payload), payload)
                    }
                }
            }
        }
    }

    /// A large payload between this process's shards: the record holds one reference to the
    /// bytes (none copied), given to the decoder's caller; the general decoder refuses it.
    func testSharedPublishCarriesTheBytesByReference() throws {
        let frame: [UInt8] = Array(repeating: 9, count: 10) + (0..<50_000).map { UInt8(truncatingIfNeeded: $0) }
        var shared: SharedBytes? = frame.withUnsafeBytes { SharedBytes(copying: $0) }
        weak var watch = shared
        let topic = bytes("big/1"), properties: [UInt8] = [0x01, 0x00]
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        try topic.withUnsafeBytes { t in
            try properties.withUnsafeBytes { p in
                let payload = UnsafeRawBufferPointer(start: shared!.start + 10, count: 50_000)
                let publish = ForwardedPublish(qos: .atLeastOnce, retain: false, origin: ConnectionID(slot: 3, generation: 4),
                                               topic: t, properties: p, payload: payload)
                ShardRecordCodec.encodePublishShared(publish, shared: shared!, offset: 10, origin: origin, into: &buffer)
            }
        }
        shared = nil
        XCTAssertNotNil(watch, "the record holds a reference")
        let record = buffer.readableArray()
        XCTAssertLessThan(record.count, 100, "the payload is not in the record")
        XCTAssertEqual(record.withUnsafeBytes { ShardRecordCodec.kind($0) }, .publishShared)
        XCTAssertThrowsError(try record.withUnsafeBytes { try ShardRecordCodec.decode($0) })
        do {
            let (from, message, bytes) = try record.withUnsafeBytes { try ShardRecordCodec.decodePublishShared($0) }
            XCTAssertEqual(from, origin)
            XCTAssertEqual(message.qos, .atLeastOnce)
            XCTAssertEqual(message.origin, ConnectionID(slot: 3, generation: 4))
            XCTAssertEqual(Array(message.topic), topic)
            XCTAssertEqual(Array(message.properties), properties)
            XCTAssertEqual(Array(message.payload), Array(frame[10...]))
            XCTAssertTrue(bytes === watch)
        }
        XCTAssertNil(watch, "the decoder's caller held the record's reference, and let it go")
    }

    func testSmallKinds() throws {
        try roundTrip(.barrier(token: 77)) { r, _ in
            guard case .barrier(let token) = r.message else { return XCTFail("barrier") }
            XCTAssertEqual(token, 77)
        }
        try roundTrip(.barrierAck(token: 78)) { r, _ in
            guard case .barrierAck(let token) = r.message else { return XCTFail("barrierAck") }
            XCTAssertEqual(token, 78)
        }
        let id = ConnectionID(slot: 3, generation: 4)
        try roundTrip(.throttle(publisher: id)) { r, _ in
            guard case .throttle(let p) = r.message else { return XCTFail("throttle") }
            XCTAssertEqual(p, id)
        }
        try roundTrip(.unthrottle(publisher: id)) { r, _ in
            guard case .unthrottle(let p) = r.message else { return XCTFail("unthrottle") }
            XCTAssertEqual(p, id)
        }
    }

    static let session = SessionSnapshot(
        nextPacketID: 4711,
        subscriptions: [.init(filter: "a/+", options: SubscriptionOptions(qos: .atLeastOnce, noLocal: true, retainAsPublished: true,
                                                                          retainHandling: .doNotSend), identifier: 9),
                        .init(filter: "$share/g/b/#", options: SubscriptionOptions(qos: .exactlyOnce))],
        awaitingRelease: [5, 6],
        inflight: [.init(packetID: 1, state: .awaitingPubAck, message: MessageSnapshot(qos: .atLeastOnce, retain: false, topic: Array("a/x".utf8),
                                                                                       properties: [], payload: [1, 2, 3], expiresIn: 5_000)),
                   .init(packetID: 2, state: .awaitingPubComp, message: nil)],
        queue: [MessageSnapshot(qos: .exactlyOnce, retain: true, topic: Array("b/y".utf8), properties: [0x02, 0, 0, 0, 60], payload: [])])

    func testClientMessagesCarryTheSessionAsBytes() throws {
        let message = ClientMessage(kind: .claimed, clientID: "a-client-id-long-enough-for-the-heap", connection: ConnectionID(slot: 1, generation: 2),
                                    otherConnection: ConnectionID(slot: 3, generation: 4), other: ShardAddress(node: 2, shard: 5), flags: 1,
                                    session: Self.session)
        try roundTrip(.client(message)) { r, _ in
            guard case .client(let m) = r.message else { return XCTFail("client") }
            XCTAssertEqual(m.kind, .claimed); XCTAssertEqual(m.clientID, message.clientID)
            XCTAssertEqual(m.connection, message.connection); XCTAssertEqual(m.otherConnection, message.otherConnection)
            XCTAssertEqual(m.other, message.other); XCTAssertEqual(m.flags, 1)
            XCTAssertEqual(m.session, Self.session)
        }
        for kind in [ClientMessageKind.claim, .release, .evict] {
            try roundTrip(.client(ClientMessage(kind: kind, clientID: "c", connection: ConnectionID(slot: 0, generation: 1)))) { r, _ in
                guard case .client(let m) = r.message else { return XCTFail("client") }
                XCTAssertEqual(m.kind, kind); XCTAssertNil(m.session)
            }
        }
        // An empty session is still a session (resume, with nothing in it).
        try roundTrip(.client(ClientMessage(kind: .claimed, clientID: "c", connection: ConnectionID(slot: 0, generation: 1),
                                            session: SessionSnapshot()))) { r, _ in
            guard case .client(let m) = r.message else { return XCTFail("client") }
            XCTAssertEqual(m.session, SessionSnapshot())
        }
    }

    func testSessionCountsThatLieAreRefused() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        Self.session.encode(into: &buffer)
        var bytes = buffer.readableArray()
        bytes[2] = 0xFF; bytes[3] = 0xFF; bytes[4] = 0xFF  // 16 million subscriptions in a few bytes
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try SessionSnapshot(decoding: $0) })
    }

    func testUnknownKindsAndWrongLengthsAreRefused() throws {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        ShardRecordCodec.encode(.barrier(token: 1), origin: origin, into: &buffer)
        var record = buffer.readableArray()
        record[4] = 200
        XCTAssertThrowsError(try record.withUnsafeBytes { try ShardRecordCodec.decode($0) })
        record[4] = ShardMessageKind.barrier.rawValue
        XCTAssertNoThrow(try record.withUnsafeBytes { try ShardRecordCodec.decode($0) })
        XCTAssertThrowsError(try (record + [0]).withUnsafeBytes { try ShardRecordCodec.decode($0) }, "the length field is not the record's")
    }

    func testTheLayoutIsLittleEndianWithTheOriginInTheHeader() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        ShardRecordCodec.encode(.barrier(token: 0x0102_0304), origin: ShardAddress(node: 0x0506, shard: 9), into: &buffer)
        XCTAssertEqual(buffer.readableArray(), [12, 0, 0, 0, ShardMessageKind.barrier.rawValue, 9, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01])
    }
}
