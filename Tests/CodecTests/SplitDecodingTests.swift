// The streaming decoder gives the same packets however the input is split.

import XCTest
@testable import Codec

final class SplitDecodingTests: XCTestCase {
    /// A stream of assorted packets, including one whose remaining length takes 2 bytes.
    static func stream(_ version: ProtocolVersion) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes += Packet.connect(Connect(version: version, clientID: "split")).encoded(version: version)
        bytes += publishBytes(version, topic: "t/1", payload: Array("small".utf8))
        bytes += publishBytes(version, topic: "t/2", payload: Array(repeating: 7, count: 300), qos: .atLeastOnce, packetID: 9)
        bytes += Packet.subscribe(Subscribe(packetID: 3, subscriptions: [
            SubscriptionRequest(filter: "x/#", options: SubscriptionOptions(qos: .exactlyOnce))])).encoded(version: version)
        bytes += Packet.pingreq.encoded(version: version)
        bytes += Packet.puback(PublishAck(packetID: 4)).encoded(version: version)
        bytes += publishBytes(version, topic: "t/3", payload: [], qos: .exactlyOnce, packetID: 10)
        bytes += Packet.disconnect(Disconnect()).encoded(version: version)
        return bytes
    }

    func testEveryTwoChunkSplit() throws {
        for version in [ProtocolVersion.v3_1_1, .v5] {
            let bytes = SplitDecodingTests.stream(version)
            let whole = try streamDecode([bytes], version)
            XCTAssertEqual(whole.count, 8)
            for cut in 0...bytes.count {
                let parts = [Array(bytes[0..<cut]), Array(bytes[cut...])]
                XCTAssertEqual(try streamDecode(parts, version), whole, "split at \(cut)")
            }
        }
    }

    /// A large frame takes its full storage once an eighth of it is here (no doubling on the way,
    /// which copied about the whole packet once more); before that, storage follows what came.
    func testLargeFrameStorageIsSizedOnceAnEighthArrived() throws {
        let frame = publishBytes(.v3_1_1, topic: "big", payload: Array(repeating: 1, count: 256 << 10))
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        var offset = 0
        var capacities: [Int] = []
        while offset < frame.count {
            let end = min(offset + (16 << 10), frame.count)
            let packet = try frame[offset..<end].withUnsafeBytes { chunk -> Packet? in
                decoder.feed(chunk)
                return try decoder.next()
            }
            if offset == 0 { XCTAssertLessThan(decoder.storageCapacity, 64 << 10, "one chunk of a header: no full reservation yet") }
            capacities.append(decoder.storageCapacity)
            if case .publish(let p) = packet { XCTAssertEqual(p.payload.count, 256 << 10) }
            offset = end
        }
        XCTAssertEqual(capacities.last, frame.count)
        XCTAssertEqual(Set(capacities.filter { $0 >= frame.count }), [frame.count])  // never grown past the frame
        XCTAssertLessThanOrEqual(Set(capacities).count, 4)  // 16K, 32K (doubling), then the whole frame
    }

    /// The rest of a large frame received straight into storage: lent once its full size is
    /// reserved, nothing decoded while lent, the packet whole once the room comes back.
    func testLentRoomTakesTheRestOfALargeFrame() throws {
        let payload = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = publishBytes(.v3_1_1, topic: "big", payload: payload)
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        // One 16 KiB chunk: the length is known but storage is not yet sized (an eighth not here).
        try frame[0..<(16 << 10)].withUnsafeBytes { decoder.feed($0); XCTAssertNil(try decoder.next()) }
        XCTAssertEqual(decoder.partialFrameNeed, frame.count - (16 << 10))
        XCTAssertEqual(decoder.roomToLend(minimum: 1), 0, "storage not sized yet: nothing to lend")
        try frame[(16 << 10)..<(40 << 10)].withUnsafeBytes { decoder.feed($0); XCTAssertNil(try decoder.next()) }
        XCTAssertEqual(decoder.roomToLend(minimum: 1), frame.count - (40 << 10))
        XCTAssertEqual(decoder.roomToLend(minimum: frame.count), 0, "less missing than asked for")
        let room = try XCTUnwrap(decoder.lendRoom(minimum: 64 << 10))
        XCTAssertTrue(decoder.isStorageLent)
        XCTAssertNil(try decoder.next(), "nothing is decoded while the room is lent")
        XCTAssertNil(decoder.lendRoom(minimum: 1), "lent once")
        // A short receive: part of the room, then the rest in a second lending.
        let first = 100_000
        frame[(40 << 10)..<((40 << 10) + first)].withUnsafeBytes { room.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: first) }
        decoder.returnRoom(written: first)
        XCTAssertNil(try decoder.next())
        let rest = try XCTUnwrap(decoder.lendRoom(minimum: 1))
        XCTAssertEqual(rest.count, frame.count - (40 << 10) - first)
        frame[((40 << 10) + first)...].withUnsafeBytes { rest.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        decoder.returnRoom(written: rest.count)
        guard case .publish(let p)? = try decoder.next() else { return XCTFail("no PUBLISH") }
        XCTAssertEqual(Array(p.payload), payload)
        XCTAssertEqual(decoder.partialFrameNeed, 0)
    }

    /// A first piece holding an eighth of a large frame sizes its storage at once.
    func testAFirstPieceOfAnEighthSizesTheStorage() throws {
        let frame = publishBytes(.v3_1_1, topic: "big", payload: Array(repeating: 5, count: 200_000))
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        try frame[0..<30_000].withUnsafeBytes { decoder.feed($0); XCTAssertNil(try decoder.next()) }
        XCTAssertEqual(decoder.storageCapacity, frame.count)
        XCTAssertEqual(decoder.roomToLend(minimum: 1), frame.count - 30_000)
    }

    /// A decoder whose connection ends while its room is lent forgets the storage: the borrower
    /// (the receive in flight) frees it.
    func testDeallocateWhileLentLeavesTheStorageToItsBorrower() throws {
        let frame = publishBytes(.v5, topic: "big", payload: Array(repeating: 3, count: 200_000))
        var decoder = StreamDecoder(version: .v5)
        try frame[0..<10_000].withUnsafeBytes { decoder.feed($0); XCTAssertNil(try decoder.next()) }
        XCTAssertEqual(decoder.roomToLend(minimum: 1), 0)
        try frame[10_000..<30_000].withUnsafeBytes { decoder.feed($0); XCTAssertNil(try decoder.next()) }
        let room = try XCTUnwrap(decoder.lendRoom(minimum: 1))
        let allocation = try XCTUnwrap(decoder.lentAllocation)
        XCTAssertTrue(room.baseAddress! >= allocation)
        decoder.deallocate()
        XCTAssertFalse(decoder.isStorageLent)
        XCTAssertEqual(decoder.storageCapacity, 0)
        room.baseAddress!.storeBytes(of: 1, as: UInt8.self)  // still the borrower's memory
        allocation.deallocate()
    }

    /// A large packet's storage handed over as shared bytes: the packet's pointers stay valid in
    /// it, and the decoder starts the next packet with fresh storage.
    func testReturnedLargeFrameIsHandedOver() throws {
        let payload = (0..<(100 << 10)).map { UInt8(truncatingIfNeeded: $0) }
        let frame = publishBytes(.v3_1_1, topic: "big", payload: payload) + publishBytes(.v3_1_1, topic: "small", payload: [1, 2])
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        var shared: SharedBytes? = nil
        var payloads: [[UInt8]] = []
        for start in stride(from: 0, to: frame.count, by: 16 << 10) {
            try frame[start..<min(start + (16 << 10), frame.count)].withUnsafeBytes { chunk in
                decoder.feed(chunk)
                while let packet = try decoder.next() {
                    guard case .publish(let p) = packet else { return XCTFail("not a PUBLISH") }
                    if decoder.holdsLargeReturnedFrame {
                        let frame = try XCTUnwrap(decoder.takeReturnedFrame())
                        XCTAssertTrue(frame.contains(p.payload))
                        XCTAssertFalse(decoder.holdsLargeReturnedFrame)
                        shared = frame
                    }
                    payloads.append(Array(p.payload))
                }
            }
        }
        XCTAssertEqual(payloads, [payload, [1, 2]])
        let bytes = try XCTUnwrap(shared)
        XCTAssertEqual(Array(bytes.bytes.suffix(payload.count)), payload, "the payload is still readable in the shared bytes")
        XCTAssertNil(decoder.takeReturnedFrame())
    }

    func testOneByteAtATime() throws {
        for version in [ProtocolVersion.v3_1_1, .v5] {
            let bytes = SplitDecodingTests.stream(version)
            let whole = try streamDecode([bytes], version)
            XCTAssertEqual(try streamDecode(bytes.map { [$0] }, version), whole)
        }
    }

    func testRandomChunking() throws {
        var rng = SystemRandomNumberGenerator()
        let bytes = SplitDecodingTests.stream(.v5) + SplitDecodingTests.stream(.v5)
        let whole = try streamDecode([bytes], .v5)
        for _ in 0..<200 {
            var chunks: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...40, using: &rng)
                chunks.append(Array(bytes[i..<min(bytes.count, i + n)]))
                i += n
            }
            XCTAssertEqual(try streamDecode(chunks, .v5), whole)
        }
    }

    func testBufferedBytesReportsPartialFrame() throws {
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        let bytes = publishBytes(.v3_1_1, topic: "a", payload: [1, 2, 3])
        try bytes.withUnsafeBytes { raw in
            decoder.feed(UnsafeRawBufferPointer(rebasing: raw[0..<4]))
            XCTAssertNil(try decoder.next())
            XCTAssertEqual(decoder.bufferedBytes, 4)
            decoder.feed(UnsafeRawBufferPointer(rebasing: raw[4...]))
            guard case .publish(let p)? = try decoder.next() else { return XCTFail() }
            XCTAssertEqual(Array(p.payload), [1, 2, 3])
            XCTAssertNil(try decoder.next())
            XCTAssertEqual(decoder.bufferedBytes, 0)
        }
    }

    func testRandomBytesNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let count = Int.random(in: 0...64, using: &rng)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !bytes.isEmpty && Bool.random(using: &rng) { bytes[0] = UInt8.random(in: 1...15, using: &rng) << 4 }
            for version in [ProtocolVersion.v3_1_1, .v5] {
                // Either packets or a typed error; anything else (a trap) fails the test run.
                _ = try? streamDecode([bytes], version, maxPacketSize: 1024)
            }
        }
    }
}
