// ByteBuffer: writes, reads, compaction before growth, the big-endian and variable-length writers.

import XCTest
import ApusBase

final class ByteBufferTests: XCTestCase {
    func testWritesAreReadableInOrder() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        XCTAssertEqual(buffer.capacity, 0, "nothing is allocated before the first write")
        buffer.writeByte(0x30)
        buffer.writeUInt16(0x0102)
        buffer.writeUInt32(0x0304_0506)
        buffer.writeBytes([7, 8])
        buffer.writeString("ab")
        XCTAssertEqual(buffer.readableArray(), [0x30, 1, 2, 3, 4, 5, 6, 7, 8, 0, 2, 0x61, 0x62])
        buffer.moveReaderIndex(forwardBy: 3)
        XCTAssertEqual(buffer.readableBytes, 10)
        buffer.moveReaderIndex(forwardBy: 10)
        XCTAssertTrue(buffer.isEmpty)
        XCTAssertEqual(buffer.readerIndex, 0, "an emptied buffer starts again at its front")
    }

    func testVariableByteIntegers() {
        // MQTT 1.5.5's boundaries: 1 to 4 bytes.
        let cases: [(Int, [UInt8])] = [
            (0, [0]), (127, [0x7F]), (128, [0x80, 0x01]), (16_383, [0xFF, 0x7F]), (16_384, [0x80, 0x80, 0x01]),
            (2_097_151, [0xFF, 0xFF, 0x7F]), (2_097_152, [0x80, 0x80, 0x80, 0x01]), (268_435_455, [0xFF, 0xFF, 0xFF, 0x7F]),
        ]
        for (value, bytes) in cases {
            var buffer = ByteBuffer()
            buffer.writeVariableByteInteger(value)
            XCTAssertEqual(buffer.readableArray(), bytes, "\(value)")
            XCTAssertEqual(variableByteIntegerLength(value), bytes.count)
            buffer.deallocate()
        }
    }

    func testConsumedBytesAreReclaimedBeforeGrowing() {
        var buffer = ByteBuffer(capacity: 64)
        defer { buffer.deallocate() }
        buffer.writeBytes([UInt8](repeating: 1, count: 60))
        buffer.moveReaderIndex(forwardBy: 50)
        buffer.writeBytes([UInt8](repeating: 2, count: 40))
        XCTAssertEqual(buffer.capacity, 64, "the 50 consumed bytes made room: no reallocation")
        XCTAssertEqual(buffer.readableArray(), [UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 40))
        buffer.writeBytes([UInt8](repeating: 3, count: 100))
        XCTAssertGreaterThanOrEqual(buffer.capacity, 150)
        XCTAssertEqual(buffer.readableBytes, 150)
    }

    func testDeallocateLeavesAnEmptyReusableBuffer() {
        var buffer = ByteBuffer()
        buffer.writeBytes([1, 2, 3])
        buffer.deallocate()
        XCTAssertEqual(buffer.capacity, 0)
        XCTAssertTrue(buffer.isEmpty)
        buffer.writeByte(9)
        XCTAssertEqual(buffer.readableArray(), [9])
        buffer.deallocate()
    }
}

final class FNV1aTests: XCTestCase {
    func testPublishedVectors() {
        // The FNV reference's 64-bit FNV-1a test vectors.
        XCTAssertEqual(FNV1a.hash([UInt8]()), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a.hash(Array("a".utf8)), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(FNV1a.hash(Array("foobar".utf8)), 0x8594_4171_f739_67e8)
    }

    func testRangeAndSequenceFormsAgree() {
        let bytes = Array("sensors/7/temp".utf8)
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(FNV1a.hash(raw, 8, 9), FNV1a.hash(Array("7".utf8)))
            XCTAssertEqual(FNV1a.hash(raw, 0, raw.count), FNV1a.hash("sensors/7/temp".utf8))
        }
    }
}

final class SystemCallErrorTests: XCTestCase {
    func testDescriptionNamesTheCallAndErrno() {
        let error = SystemCallError("bind 127.0.0.1:1883", errno: 98)
        XCTAssertEqual(error.description, "bind 127.0.0.1:1883: Address already in use (errno 98)")
    }
}

final class SplitMix64Tests: XCTestCase {
    func testReferenceSequenceAndSeeding() {
        // SplitMix64's reference output for seed 0 (as in Vigna's splitmix64.c).
        var generator = SplitMix64(seed: 0)
        XCTAssertEqual(generator.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(generator.next(), 0x6E78_9E6A_A1B9_65F4)
        var a = SplitMix64(seed: 42), b = SplitMix64(seed: 42)
        XCTAssertEqual((0..<8).map { _ in Int.random(in: 0..<1000, using: &a) }, (0..<8).map { _ in Int.random(in: 0..<1000, using: &b) })
    }
}
