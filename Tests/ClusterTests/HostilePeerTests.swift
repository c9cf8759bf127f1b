// What another node sends is input like a client's: damaged or hostile bytes on a link are
// refused (the runtime closes that link) and never crash the gateway or reach the shards as
// anything but well-formed records.

import ApusBase
import Codec
import ShardContract
import XCTest

@testable import Cluster

final class HostilePeerTests: XCTestCase {
    func testRandomAndMangledRecordsAreRefusedOrWellFormed() {
        var random = SplitMix64(seed: 0xC1_0000_0018)
        let g = GatewayCore(nodeID: 1, shards: 2, wallClockOffset: 0)
        // Real records of every kind the gateway takes from peers, to mangle.
        var samples: [[UInt8]] = []
        var b = ByteBuffer()
        defer { b.deallocate() }
        var filter = Array("a/+".utf8), group = Array("g".utf8), topic = Array("a/b".utf8), payload = Array("x".utf8)
        filter.withUnsafeMutableBytes { f in group.withUnsafeMutableBytes { gr in topic.withUnsafeMutableBytes { t in payload.withUnsafeMutableBytes { p in
            let fp = UnsafeRawBufferPointer(f), gp = UnsafeRawBufferPointer(gr), tp = UnsafeRawBufferPointer(t), pp = UnsafeRawBufferPointer(p)
            let publish = ForwardedPublish(qos: .atLeastOnce, retain: false, origin: ConnectionID(slot: 1, generation: 1), topic: tp,
                                           properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: pp)
            let messages: [ShardMessage] = [
                .routeAdd(filter: fp, time: .max), .routeRemove(filter: fp, time: .max), .publish(publish),
                .shareCount(filter: fp, group: gp, count: 3), .sharedPublish(publish, filter: fp, group: gp, member: 1),
                .retain(RetainedUpdate(qos: .atMostOnce, stamp: RetainedStamp(time: 5, origin: ShardAddress(node: 2, shard: 0)),
                                       topic: tp, properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: pp)),
                .client(ClientMessage(kind: .claim, clientID: "c", connection: ConnectionID(slot: 1, generation: 1))),
            ]
            for m in messages {
                b.clear()
                ShardRecordCodec.encode(m, origin: ShardAddress(node: 2, shard: 2), into: &b)
                samples.append(b.readableArray())
            }
        } } } }
        var accepted = 0
        for round in 0..<20_000 {
            var record: [UInt8]
            if round % 4 == 0 {
                record = (0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            } else {
                record = samples[Int(random.next() % UInt64(samples.count))]
                for _ in 0..<(1 + Int(random.next() % 3)) where !record.isEmpty {
                    record[Int(random.next() % UInt64(record.count))] = UInt8(truncatingIfNeeded: random.next())
                }
                if random.next() % 5 == 0 { record = Array(record.prefix(Int(random.next() % UInt64(record.count + 1)))) }
            }
            if record.withUnsafeBytes({ g.fromPeer($0, peer: Int(random.next() % 4), peerNode: 2) }) { accepted += 1 }
        }
        XCTAssertGreaterThan(g.counters.recordsRefused, 0)
        XCTAssertGreaterThan(accepted, 0)
        // Whatever was accepted left only well-formed records for the shards.
        for shard in 0..<2 {
            var view = g.shardOutbox[shard].readableView
            while view.count >= 8 {
                let length = ShardRecordCodec.recordLength(view.baseAddress!)
                XCTAssertGreaterThanOrEqual(length, 8)
                XCTAssertLessThanOrEqual(length, view.count)
                XCTAssertNoThrow(try ShardRecordCodec.decode(UnsafeRawBufferPointer(rebasing: view[0..<length])))
                view = UnsafeRawBufferPointer(rebasing: view[length...])
            }
            XCTAssertEqual(view.count, 0)
        }
    }

    /// A record that carries an address (the payload by reference, only between the shards of
    /// one process) is refused from a peer: its address would mean nothing here, or anything.
    func testAPeersSharedPublishRecordIsRefused() {
        let g = GatewayCore(nodeID: 1, shards: 2, wallClockOffset: 0)
        var record: [UInt8] = []
        withUnsafeBytes(of: UInt32(8 + 20 + 3 + 16).littleEndian) { record += $0 }
        record += [ShardMessageKind.publishShared.rawValue, 0, 2, 0]
        record += [1, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0] + Array(repeating: 0, count: 8)  // QoS 1, topic 3, payload 1
        record += Array("a/b".utf8)
        withUnsafeBytes(of: UInt64(0xDEAD_BEEF).littleEndian) { record += $0 }
        record += Array(repeating: 0, count: 8)
        XCTAssertFalse(record.withUnsafeBytes { g.fromPeer($0, peer: 0, peerNode: 2) })
        XCTAssertEqual(g.counters.recordsRefused, 1)
        XCTAssertTrue(g.shardOutbox.allSatisfy { $0.isEmpty })
    }

    func testTheFramerRefusesLengthsOutsideItsBounds() {
        var random = SplitMix64(seed: 7)
        for _ in 0..<2_000 {
            var framer = LinkFramer(maximumRecord: 4096)
            defer { framer.deallocate() }
            let bytes = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            bytes.withUnsafeBytes { framer.append($0) }
            do {
                try framer.forEachRecord { record in
                    XCTAssertTrue(record.count >= 8 && record.count <= 4096)
                    return true
                }
            } catch {
                // A bad length: the runtime closes the link.
            }
        }
    }
}
