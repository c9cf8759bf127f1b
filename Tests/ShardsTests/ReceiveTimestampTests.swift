// The shards' receive path against the real kernel: SO_TIMESTAMPNS set on a listener reaches the
// accepted socket, and a multishot recvmsg into provided buffers leaves the payload and the
// kernel's receive time where ReceiveMessageFormat says, then an empty payload at the end of the
// stream (the subscribe replay dates a SUBSCRIBE by that time, docs/architecture.md).

import CApusSys
@preconcurrency import Glibc
import IOUring
import XCTest
@testable import Shards

final class ReceiveTimestampTests: XCTestCase {
    /// Waits for one completion.
    func next(_ ring: IOUring, _ out: UnsafeMutablePointer<Completion>) -> Completion {
        while ring.harvest(into: out, capacity: 1) == 0 { _ = ring.submitAndWait(timeoutNanoseconds: 1_000_000_000) }
        return out.pointee
    }

    func receive(timestamps: Bool) throws {
        let (client, accepted) = try loopbackPair(timestamps: timestamps)
        defer { close(accepted) }
        XCTAssertEqual(Listener.receiveTimestamps(accepted), timestamps)
        let ring = try IOUring(entries: 8, cqEntries: 16)
        let buffers = try ProvidedBufferRing(ring: ring, group: 0, count: 4, bufferSize: 4096)
        defer { buffers.unregister() }
        let format = ReceiveMessageFormat()
        let out = UnsafeMutablePointer<Completion>.allocate(capacity: 1)
        defer { out.deallocate() }
        ring.prepareMultishotRecvMessage(fd: accepted, format: format, group: 0, userData: 7)
        ring.submit()

        // The first socket of the system to ask for timestamps turns the kernel's receive
        // timestamping on through a deferred work item: segments that arrive before it ran have no
        // time (the broker's listeners turn it on before the first client connects). So with
        // `timestamps`, send until a read carries one (for at most a second), then check one more.
        let message: [UInt8] = Array("subscribe".utf8)
        func sendAndRead() throws -> (realtime: UInt64, before: UInt64, after: UInt64) {
            let before = apus_realtime_ns()
            XCTAssertEqual(send(client, message, message.count, 0), message.count)
            let after = apus_realtime_ns()
            let completion = next(ring, out)
            XCTAssertEqual(completion.userData, 7)
            XCTAssertTrue(completion.hasMore)
            let id = try XCTUnwrap(completion.bufferID)
            let parsed = format.parse(buffers.start(id: id), length: Int(completion.result))
            XCTAssertEqual(Array(parsed.payload), message)
            buffers.recycle(id: id)
            buffers.publishReturns()
            return (parsed.realtime, before, after)
        }
        if timestamps {
            var warmUps = 0
            while try sendAndRead().realtime == 0 && warmUps < 100 {
                warmUps += 1
                usleep(10_000)
            }
        }
        let read = try sendAndRead()
        if timestamps {
            // When the bytes reached the socket: after the send began, before it returned.
            XCTAssertGreaterThanOrEqual(read.realtime, read.before)
            XCTAssertLessThanOrEqual(read.realtime, read.after)
        } else {
            XCTAssertEqual(read.realtime, 0)
        }

        close(client)
        let last = next(ring, out)
        XCTAssertFalse(last.hasMore)
        if let id = last.bufferID {
            XCTAssertEqual(format.parse(buffers.start(id: id), length: Int(last.result)).payload.count, 0, "end of stream")
        } else {
            XCTAssertLessThanOrEqual(last.result, 0)
        }
    }

    /// A single recvmsg (what a connection sending large packets is read with between them) also
    /// carries the kernel's receive time, in `SingleReceive`'s control area.
    func testSingleRecvMessageCarriesTheKernelReceiveTime() throws {
        let (client, accepted) = try loopbackPair(timestamps: true)
        defer { close(client); close(accepted) }
        let ring = try IOUring(entries: 8, cqEntries: 16)
        let single = SingleReceive(capacity: 4096)
        let out = UnsafeMutablePointer<Completion>.allocate(capacity: 1)
        defer { out.deallocate() }
        let message: [UInt8] = Array("subscribe".utf8)
        var read: (realtime: UInt64, before: UInt64, after: UInt64) = (0, 0, 0)
        for _ in 0..<100 {  // until timestamping is on (see `receive`), then one more
            ring.prepareRecvMessage(fd: accepted, message: single.prepare(), userData: 9)
            ring.submit()
            let before = apus_realtime_ns()
            XCTAssertEqual(send(client, message, message.count, 0), message.count)
            let after = apus_realtime_ns()
            let completion = next(ring, out)
            XCTAssertEqual(completion.userData, 9)
            XCTAssertEqual(Int(completion.result), message.count)
            XCTAssertEqual(Array(UnsafeRawBufferPointer(start: single.bytes, count: message.count)), message)
            let previous = read.realtime
            read = (single.realtime, before, after)
            if previous != 0 { break }
            usleep(10_000)
        }
        XCTAssertGreaterThanOrEqual(read.realtime, read.before)
        XCTAssertLessThanOrEqual(read.realtime, read.after)
    }

    func testMultishotRecvMessageCarriesTheKernelReceiveTime() throws { try receive(timestamps: true) }

    func testWithoutTheOptionThereIsNoTime() throws { try receive(timestamps: false) }

    func testShortOrEmptyBuffersParseToNoPayload() {
        let format = ReceiveMessageFormat()
        var bytes = [UInt8](repeating: 0, count: format.payloadOffset + 4)
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(format.parse(raw.baseAddress!, length: 10).payload.count, 0)
            // A header claiming more payload than the completion holds is cut to what it holds.
            XCTAssertEqual(format.parse(raw.baseAddress!, length: format.payloadOffset + 4).payload.count, 0)
        }
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(100), toByteOffset: 8, as: UInt32.self)
            XCTAssertEqual(format.parse(raw.baseAddress!, length: format.payloadOffset + 4).payload.count, 4)
        }
    }
}
