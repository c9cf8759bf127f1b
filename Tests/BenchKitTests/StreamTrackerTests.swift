// The load generator's own counting: received, duplicates, out of order, lost.

import XCTest
import BenchKit

final class StreamTrackerTests: XCTestCase {
    func testInOrderNothingLost() {
        var t = StreamTracker()
        for s in 0..<1000 { t.record(UInt64(s)) }
        XCTAssertEqual(t.received, 1000)
        XCTAssertEqual(t.duplicates, 0)
        XCTAssertEqual(t.outOfOrder, 0)
        XCTAssertEqual(t.lost(sent: 1000), 0)
    }

    func testDuplicatesReorderingAndLoss() {
        var t = StreamTracker()
        for s: UInt64 in [0, 1, 3, 2, 3, 5, 5, 5, 9] { t.record(s) }
        XCTAssertEqual(t.received, 9)
        XCTAssertEqual(t.duplicates, 3)        // 3 once, 5 twice
        XCTAssertEqual(t.outOfOrder, 1)        // 2 after 3
        XCTAssertEqual(t.unique, 6)            // 0 1 2 3 5 9
        XCTAssertEqual(t.lost(sent: 10), 4)    // 4 6 7 8
    }

    func testGapsAreTheLossSoFar() {
        var t = StreamTracker()
        XCTAssertEqual(t.gaps, 0)
        for s: UInt64 in [0, 1, 4, 4] { t.record(s) }
        XCTAssertEqual(t.gaps, 2)              // 2 and 3 not here (yet)
        t.record(2)
        XCTAssertEqual(t.gaps, 1)              // a late message fills its gap
        XCTAssertEqual(t.lost(sent: 6), 2)     // 3 and 5
    }

    func testTotals() {
        var a = StreamTracker(); a.record(0); a.record(0)
        var b = StreamTracker(); b.record(1); b.record(0)
        var totals = StreamTotals()
        totals.add(a, sent: 2)
        totals.add(b, sent: 2)
        XCTAssertEqual(totals.sent, 4)
        XCTAssertEqual(totals.received, 4)
        XCTAssertEqual(totals.duplicates, 1)
        XCTAssertEqual(totals.outOfOrder, 1)
        XCTAssertEqual(totals.lost, 1)
    }

    func testPayloadRoundTrip() {
        var bytes = [UInt8](repeating: 0, count: 64)
        bytes.withUnsafeMutableBytes { BenchPayload.write(sequence: 42, sentAt: 123_456_789, measured: true, into: $0.baseAddress!) }
        let header = bytes.withUnsafeBytes { BenchPayload.read($0) }
        XCTAssertEqual(header?.sequence, 42)
        XCTAssertEqual(header?.sentAt, 123_456_789)
        XCTAssertEqual(header?.measured, true)
        XCTAssertNil([UInt8](repeating: 0, count: 5).withUnsafeBytes { BenchPayload.read($0) })
    }
}
