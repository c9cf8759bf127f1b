// The load generator's fast paths against the codec: a patched template decodes as the PUBLISH it
// stands for; the subscriber's reader agrees with the full decoder; frames split at any byte.

import ApusBase
import BenchKit
import Codec
import XCTest

final class BenchWireTests: XCTestCase {
    func testTemplateCopiesDecodeAsNumberedPublishes() throws {
        for version in [ProtocolVersion.v3_1_1, .v5] {
            for qos in [QoS.atMostOnce, .atLeastOnce, .exactlyOnce] {
                let template = PublishTemplate(version: version, qos: qos, retain: qos == .exactlyOnce, topic: "bench/7", payloadSize: 200)
                var buffer = ByteBuffer()
                defer { buffer.deallocate() }
                let next = template.write(count: 3, sequence: 40, sentAt: 1234, measured: true, packetID: 65534, into: &buffer)
                XCTAssertEqual(next, qos == .atMostOnce ? 65534 : 2)  // 65534, 65535, then 1 (0 is no packet id)
                var decoder = StreamDecoder(version: version)
                decoder.feed(buffer.readableView)
                var ids: [UInt16] = []
                for i in 0..<3 {
                    guard case .publish(let p) = try decoder.next() else { return XCTFail("not a PUBLISH") }
                    XCTAssertEqual(String(decoding: p.topic, as: UTF8.self), "bench/7")
                    XCTAssertEqual(p.qos, qos)
                    XCTAssertEqual(p.retain, qos == .exactlyOnce)
                    XCTAssertEqual(p.payload.count, 200)
                    let header = try XCTUnwrap(BenchPayload.read(p.payload))
                    XCTAssertEqual(header.sequence, 40 + UInt64(i))
                    XCTAssertEqual(header.sentAt, 1234)
                    XCTAssertTrue(header.measured)
                    ids.append(p.packetID)
                }
                XCTAssertNil(try decoder.next())
                if qos != .atMostOnce { XCTAssertEqual(ids, [65534, 65535, 1]) }
                decoder.deallocate()
            }
        }
    }

    func testPublishReaderAgreesWithTheDecoder() throws {
        let cases: [(ProtocolVersion, QoS, String, UInt16, Int)] = [
            (.v3_1_1, .atMostOnce, "a/b", 0, 17), (.v3_1_1, .atLeastOnce, "bench/12", 0, 300),
            (.v5, .atMostOnce, "x", 0, 17), (.v5, .exactlyOnce, "bench/3", 9, 1000), (.v5, .atLeastOnce, "", 9, 64),
            (.v3_1_1, .atMostOnce, "t", 0, 200_000),  // a 3-byte remaining length
        ]
        for (version, qos, topic, alias, size) in cases {
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            let payload = [UInt8](repeating: 7, count: size)
            var t = topic
            t.withUTF8 { topicBytes in
                payload.withUnsafeBytes { body in
                    PublishEncoder.encode(version: version, dup: false, qos: qos, retain: false, topic: UnsafeRawBufferPointer(topicBytes),
                                          packetID: 77, properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: body,
                                          topicAlias: alias, into: &buffer)
                }
            }
            let frame = buffer.readableView
            let fast = try XCTUnwrap(BenchPublish.read(frame: frame, version: version))
            guard case .publish(let full) = try PacketDecoder.decode(frame: frame, version: version) else { return XCTFail() }
            XCTAssertEqual(fast.qos, full.qos)
            XCTAssertEqual(fast.packetID, full.packetID)
            XCTAssertEqual(Array(fast.topic), Array(full.topic))
            XCTAssertEqual(fast.topicAlias, full.properties.topicAlias ?? 0)
            XCTAssertEqual(fast.payload.count, full.payload.count)
            XCTAssertEqual(fast.payload.baseAddress, full.payload.baseAddress)
        }
    }

    func testPublishReaderLeavesOtherPropertiesAndPacketsToTheDecoder() {
        var properties = ByteBuffer()
        defer { properties.deallocate() }
        properties.writeByte(0x02)  // Message Expiry Interval
        properties.writeUInt32(60)
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var t = "a"
        t.withUTF8 { topic in
            PublishEncoder.encode(version: .v5, dup: false, qos: .atMostOnce, retain: false, topic: UnsafeRawBufferPointer(topic),
                                  packetID: 0, properties: properties.readableView, payload: UnsafeRawBufferPointer(start: nil, count: 0),
                                  into: &buffer)
        }
        XCTAssertNil(BenchPublish.read(frame: buffer.readableView, version: .v5))
        let puback: [UInt8] = [0x40, 2, 0, 1]
        puback.withUnsafeBytes { XCTAssertNil(BenchPublish.read(frame: $0, version: .v3_1_1)) }
        let truncated: [UInt8] = [0x30, 5, 0, 9, 0x61]  // topic length past the frame
        truncated.withUnsafeBytes { XCTAssertNil(BenchPublish.read(frame: $0, version: .v3_1_1)) }
    }

    func testSplitterYieldsEveryFrameWhateverTheReadBoundaries() throws {
        let template = PublishTemplate(version: .v3_1_1, qos: .atLeastOnce, retain: false, topic: "s/1", payloadSize: 150)
        var stream = ByteBuffer()
        defer { stream.deallocate() }
        _ = template.write(count: 20, sequence: 0, sentAt: 0, measured: false, packetID: 1, into: &stream)
        let bytes = stream.readableArray()
        for chunk in [1, 2, 3, 7, 64, 151, 155, 4096] {
            var splitter = FrameSplitter()
            var sequences: [UInt64] = []
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + chunk, bytes.count)
                try bytes[offset..<end].withUnsafeBytes { piece in
                    try splitter.split(piece) { frame in
                        if let p = BenchPublish.read(frame: frame, version: .v3_1_1), let h = BenchPayload.read(p.payload) {
                            sequences.append(h.sequence)
                        }
                    }
                }
                offset = end
            }
            XCTAssertEqual(sequences, Array(0..<20), "chunks of \(chunk)")
            XCTAssertTrue(splitter.pending.isEmpty)
            splitter.deallocate()
        }
    }

    func testLargePublishesArriveAsTheirHeadsWhateverTheReadBoundaries() throws {
        var stream = ByteBuffer()
        defer { stream.deallocate() }
        let large = PublishTemplate(version: .v5, qos: .atLeastOnce, retain: false, topic: "big/2", payloadSize: 300_000)
        let small = PublishTemplate(version: .v5, qos: .atLeastOnce, retain: false, topic: "big/2", payloadSize: 100)
        var id: UInt16 = 1
        for s in 0..<6 {  // large and small interleaved
            id = (s % 2 == 0 ? large : small).write(count: 1, sequence: UInt64(s), sentAt: 0, measured: false, packetID: id, into: &stream)
        }
        let bytes = stream.readableArray()
        for chunk in [1000, 4095, 4096, 16384, 65536, 300_017, 1 << 20] {
            var splitter = FrameSplitter()
            var seen: [UInt64] = []
            var ids: [UInt16] = []
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + chunk, bytes.count)
                try bytes[offset..<end].withUnsafeBytes { piece in
                    try splitter.split(piece) { frame in
                        guard let p = BenchPublish.read(frame: frame, version: .v5), let h = BenchPayload.read(p.payload) else { return }
                        XCTAssertEqual(String(decoding: p.topic, as: UTF8.self), "big/2")
                        seen.append(h.sequence)
                        ids.append(p.packetID)
                    }
                }
                offset = end
            }
            XCTAssertEqual(seen, Array(0..<6), "chunks of \(chunk)")
            XCTAssertEqual(ids, [1, 2, 3, 4, 5, 6])
            XCTAssertEqual(splitter.skipping, 0)
            XCTAssertTrue(splitter.pending.isEmpty)
            splitter.deallocate()
        }
    }

    func testSplitterRejectsAReservedPacketType() {
        var splitter = FrameSplitter()
        defer { splitter.deallocate() }
        let bad: [UInt8] = [0x00, 0]
        XCTAssertThrowsError(try bad.withUnsafeBytes { try splitter.split($0) { _ in } })
    }
}
