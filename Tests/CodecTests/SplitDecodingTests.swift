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
