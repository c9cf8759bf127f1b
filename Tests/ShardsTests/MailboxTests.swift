// The SPSC mailbox under two real threads: millions of variable-length records, none lost,
// duplicated, reordered or corrupted, across many wrap-arounds of a small ring.

import Foundation
import Synchronization
import XCTest
@testable import Shards

final class MailboxTests: XCTestCase {
    /// Builds record `sequence`: u32 length, u32 sequence, then filler bytes derived from the sequence.
    static func record(_ sequence: UInt32, into buffer: inout [UInt8]) {
        let length = 8 + Int(sequence % 57)
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: length))
        buffer.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(length), toByteOffset: start, as: UInt32.self)
            raw.storeBytes(of: sequence, toByteOffset: start + 4, as: UInt32.self)
            for i in 8..<length { raw[start + i] = UInt8(truncatingIfNeeded: sequence &+ UInt32(i)) }
        }
    }

    func testSingleThreadWrapAround() {
        let box = Mailbox(capacity: 4096)
        var expected: UInt32 = 0
        var next: UInt32 = 0
        for _ in 0..<2000 {
            var batch: [UInt8] = []
            for _ in 0..<7 { MailboxTests.record(next, into: &batch); next += 1 }
            var offset = 0
            while offset < batch.count {
                let consumed = batch.withUnsafeBytes { box.write(records: UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                offset += consumed
                while let r = box.nextRecord() {
                    XCTAssertEqual(r.load(fromByteOffset: 4, as: UInt32.self), expected)
                    expected += 1
                }
                box.release()
            }
        }
        XCTAssertEqual(expected, next)
        XCTAssertFalse(box.hasRecords)
    }

    func testTwoThreadsMillionsOfRecordsInOrder() {
        let total: UInt32 = 2_000_000
        let box = Mailbox(capacity: 1 << 16)
        let producerDone = DoneFlag()
        let producer = Thread {
            var sequence: UInt32 = 0
            var batch: [UInt8] = []
            batch.reserveCapacity(4096)
            while sequence < total {
                batch.removeAll(keepingCapacity: true)
                let end = min(total, sequence + 64)
                while sequence < end { MailboxTests.record(sequence, into: &batch); sequence += 1 }
                var offset = 0
                while offset < batch.count {
                    let consumed = batch.withUnsafeBytes { box.write(records: UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                    offset += consumed
                    if consumed == 0 { sched_yield() }
                }
            }
            producerDone.value.store(true, ordering: .releasing)
        }
        producer.start()

        var expected: UInt32 = 0
        var corrupt = 0
        while expected < total {
            var got = false
            while let r = box.nextRecord() {
                got = true
                let length = Int(r.load(as: UInt32.self))
                let sequence = r.load(fromByteOffset: 4, as: UInt32.self)
                if sequence != expected || length != 8 + Int(sequence % 57) { corrupt += 1 }
                for i in 8..<length where r.load(fromByteOffset: i, as: UInt8.self) != UInt8(truncatingIfNeeded: sequence &+ UInt32(i)) {
                    corrupt += 1
                }
                expected = sequence + 1
            }
            if got { box.release() } else { sched_yield() }
            if corrupt > 0 { break }
        }
        while !producerDone.value.load(ordering: .acquiring) { sched_yield() }
        XCTAssertEqual(corrupt, 0)
        XCTAssertEqual(expected, total)
        XCTAssertNil(box.nextRecord())
    }

    func testOversizedRecordIsNotWritten() {
        let box = Mailbox(capacity: 4096)
        var big = [UInt8](repeating: 0, count: 2000)
        big.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(2000), as: UInt32.self) }
        XCTAssertEqual(big.withUnsafeBytes { box.write(records: $0) }, 0)
        XCTAssertFalse(box.hasRecords)
    }
}

final class DoneFlag: Sendable {
    let value = Atomic<Bool>(false)
}

final class MailboxOutOfLineTests: XCTestCase {
    func testLargeRecordsTravelOnTheHeapInOrder() {
        let box = Mailbox(capacity: 4096)
        func record(_ length: Int, _ fill: UInt8) -> [UInt8] {
            var r = [UInt8](repeating: fill, count: length)
            withUnsafeBytes(of: UInt32(length).littleEndian) { r.replaceSubrange(0..<4, with: $0) }
            return r
        }
        let small = record(16, 1), large = record(3000, 2)
        XCTAssertGreaterThan(large.count, box.maximumRecordLength)
        XCTAssertEqual(small.withUnsafeBytes { box.write(records: $0) }, 16)
        XCTAssertEqual(large.withUnsafeBytes { box.write(records: $0) }, 0, "too large for the ring")
        XCTAssertTrue(large.withUnsafeBytes { box.writeOutOfLine(record: $0) })
        XCTAssertEqual(small.withUnsafeBytes { box.write(records: $0) }, 16)
        var seen: [[UInt8]] = []
        while let r = box.nextRecord() { seen.append(Array(r)) }
        box.release()
        XCTAssertEqual(seen, [small, large, small], "the consumer sees the record itself, in order")
    }
}
