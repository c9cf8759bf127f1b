// Gathered output: the wire's bytes with large payloads spliced in leave in order, whatever
// sizes the kernel takes per send, and through a real socket with sendmsg.

import ApusBase
import Broker
@preconcurrency import Glibc
import XCTest
@testable import Shards

final class OutboundGatherTests: XCTestCase {
    /// Wire bytes and splices at `positions`, and the stream they make.
    func make(wireCount: Int, splices positions: [(at: Int, count: Int)], seed: UInt8)
        -> (wire: [UInt8], splices: [OutboundSplice], expected: [UInt8]) {
        let wire = (0..<wireCount).map { UInt8(truncatingIfNeeded: $0 &+ Int(seed)) }
        var splices: [OutboundSplice] = []
        var expected: [UInt8] = []
        var offset = 0
        for (i, p) in positions.enumerated() {
            expected += wire[offset..<p.at]
            offset = p.at
            let payload = (0..<p.count).map { UInt8(truncatingIfNeeded: $0 &* 3 &+ i &+ 100) }
            let shared = ([0xEE, 0xEE] + payload).withUnsafeBytes { SharedBytes(copying: $0) }
            splices.append(OutboundSplice(at: p.at, bytes: shared, start: shared.start + 2, count: p.count))
            expected += payload
        }
        expected += wire[offset...]
        return (wire, splices, expected)
    }

    /// Plays the kernel: takes at most `limit` bytes of what the msghdr describes.
    func take(_ header: UnsafePointer<msghdr>, limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        let vectors = header.pointee.msg_iov!
        for i in 0..<Int(header.pointee.msg_iovlen) where out.count < limit {
            let v = vectors[i]
            let n = min(v.iov_len, limit - out.count)
            out += UnsafeRawBufferPointer(start: v.iov_base, count: n)
        }
        return out
    }

    func testEverySplitOfTheStreamLeavesInOrder() {
        var random = SplitMix64(seed: 21)
        for round in 0..<120 {
            // Up to 100 splices (more than one send's iovecs), some back to back with the wire's ends.
            let spliceCount = Int(random.next() % 100) + 1
            let wireCount = spliceCount * 8 + Int(random.next() % 50)
            var positions = (0..<spliceCount).map { _ in Int(random.next() % UInt64(wireCount + 1)) }.sorted()
            if round % 3 == 0 { positions[0] = 0; positions[positions.count - 1] = wireCount }
            let spec = positions.map { (at: $0, count: Int(random.next() % 3000) + 1) }
            var (wire, splices, expected) = make(wireCount: wireCount, splices: spec, seed: UInt8(truncatingIfNeeded: round))
            let gather = OutboundGather()
            gather.begin(splices: &splices, wireBytes: wireCount)
            XCTAssertTrue(splices.isEmpty)
            XCTAssertEqual(gather.remaining, expected.count)
            var received: [UInt8] = []
            var done = false
            while !done {
                let limit = round % 2 == 0 ? Int(random.next() % 5000) + 1 : Int.max
                let got = wire.withUnsafeBytes { take(gather.prepare(wire: $0), limit: limit) }
                XCTAssertFalse(got.isEmpty)
                received += got
                done = gather.advance(by: got.count)
                XCTAssertEqual(gather.isActive, !done)
            }
            XCTAssertEqual(received, expected, "round \(round)")
            XCTAssertEqual(gather.splices.count, 0, "the payloads are let go once sent")
        }
    }

    func testSendmsgOverASocket() throws {
        let (client, accepted) = try loopbackPair()
        defer { close(client); close(accepted) }
        var (wire, splices, expected) = make(wireCount: 300, splices: [(10, 40_000), (100, 70_000), (300, 5)], seed: 1)
        let gather = OutboundGather()
        gather.begin(splices: &splices, wireBytes: wire.count)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while gather.isActive {
            let n = wire.withUnsafeBytes { sendmsg(accepted, gather.prepare(wire: $0), Int32(MSG_DONTWAIT)) }
            if n > 0 { _ = gather.advance(by: n) }
            let r = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if r > 0 { received += buffer[0..<r] }
        }
        while received.count < expected.count {
            let r = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            XCTAssertGreaterThan(r, 0)
            if r <= 0 { break }
            received += buffer[0..<r]
        }
        XCTAssertEqual(received, expected)
    }
}
