// etcd's JSON gateway answers (as etcd 3.4 writes them) and the HTTP/1.1 responses around them,
// split at every byte; the node protocol's frames and a member's record.

import ApusBase
import ShardContract
import HTTP1
import XCTest

@testable import Cluster

final class EtcdTests: XCTestCase {
    func feedSplit(_ bytes: [UInt8], at cut: Int) throws -> [HTTPResponseParser.Event] {
        var parser = HTTPResponseParser()
        var events = try parser.feed(bytes[0..<cut])
        events += try parser.feed(bytes[cut...])
        return events
    }

    /// Body bytes joined, so splits compare equal however the body was cut.
    func normalized(_ events: [HTTPResponseParser.Event]) -> [HTTPResponseParser.Event] {
        var out: [HTTPResponseParser.Event] = []
        var body: [UInt8] = []
        for e in events {
            if case .body(let b) = e { body += b; continue }
            if !body.isEmpty { out.append(.body(body)); body = [] }
            out.append(e)
        }
        if !body.isEmpty { out.append(.body(body)) }
        return out
    }

    func testContentLengthResponseSplitAtEveryByte() throws {
        let body = #"{"header":{"revision":"4"},"ID":"7587899404585536522","TTL":"3"}"#
        let response = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        for cut in 0...response.count {
            let events = normalized(try feedSplit(response, at: cut))
            XCTAssertEqual(events, [.head(status: 200), .body(Array(body.utf8)), .end], "cut at \(cut)")
        }
        let grant = try Etcd.decodeGrant(Array(body.utf8))
        XCTAssertEqual(grant.lease, 7587899404585536522)
        XCTAssertEqual(grant.ttl, 3)
    }

    func testChunkedWatchStreamSplitAtEveryByte() throws {
        let created = #"{"result":{"header":{"revision":"4"},"created":true}}"# + "\n"
        let events = #"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"Yw==","create_revision":"3","mod_revision":"3","version":"1","value":"Yg==","lease":"75"}},{"type":"DELETE","kv":{"key":"Yw==","mod_revision":"4"}}]}}"# + "\n"
        func chunk(_ s: String) -> String { String(s.utf8.count, radix: 16) + "\r\n" + s + "\r\n" }
        let response = Array(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(created) + chunk(events) + "0\r\n\r\n").utf8)
        for cut in 0...response.count {
            let got = normalized(try feedSplit(response, at: cut))
            XCTAssertEqual(got, [.head(status: 200), .body(Array((created + events).utf8)), .end], "cut at \(cut)")
        }
        var splitter = LineSplitter()
        let lines = try splitter.feed(Array((created + events).utf8))
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(try Etcd.decodeWatch(lines[0]), [.created])
        XCTAssertEqual(try Etcd.decodeWatch(lines[1]), [
            .put(Etcd.KeyValue(key: "c", value: Array("b".utf8), modRevision: 3)),
            .delete(key: "c", revision: 4),
        ])
    }

    func testWatchCanceledByCompaction() throws {
        let line = Array(#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#.utf8)
        XCTAssertEqual(try Etcd.decodeWatch(line), [.canceled(compactedAt: 4)])
    }

    func testKeepAliveOfAnExpiredLeaseHasNoTTL() throws {
        let alive = Array(#"{"result":{"header":{"revision":"2"},"ID":"75","TTL":"3"}}"#.utf8)
        let dead = Array(#"{"result":{"header":{"revision":"2"},"ID":"123"}}"#.utf8)
        XCTAssertEqual(try Etcd.decodeKeepAlive(alive), 3)
        XCTAssertNil(try Etcd.decodeKeepAlive(dead))
    }

    func testRangeAndRequests() throws {
        let body = Array(#"{"header":{"revision":"9"},"kvs":[{"key":"L2FwdXMvYy9tZW1iZXJzL2E=","mod_revision":"8","value":"eA=="}],"count":"1"}"#.utf8)
        let range = try Etcd.decodeRange(body)
        XCTAssertEqual(range.revision, 9)
        XCTAssertEqual(range.kvs, [Etcd.KeyValue(key: "/apus/c/members/a", value: Array("x".utf8), modRevision: 8)])
        // An empty range has no kvs field at all.
        XCTAssertEqual(try Etcd.decodeRange(Array(#"{"header":{"revision":"2"}}"#.utf8)).kvs, [])
        XCTAssertEqual(Etcd.prefixEnd("/a/"), Array("/a0".utf8))
        let request = String(decoding: Etcd.keepAlive(lease: 42).bytes(host: "127.0.0.1:2379"), as: UTF8.self)
        XCTAssertTrue(request.hasPrefix("POST /v3/lease/keepalive HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"))
        XCTAssertTrue(request.hasSuffix("\r\n\r\n{\"ID\":\"42\"}"))
        XCTAssertThrowsError(try Etcd.decodeGrant(Array(#"{"error":"etcdserver: too many requests","code":14}"#.utf8)))
    }

    func testParserRefusesGarbage() {
        var p = HTTPResponseParser()
        XCTAssertThrowsError(try p.feed(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)))
        var q = HTTPResponseParser()
        XCTAssertThrowsError(try q.feed(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8)))
        var r = HTTPResponseParser()
        XCTAssertThrowsError(try r.feed(Array(repeating: UInt8(ascii: "a"), count: HTTPResponseParser.maximumHead + 10)))
    }

    func testMemberRecordRoundTripAndNodeIDs() {
        let m = ClusterMember(name: "apus-b", linkHost: "127.0.0.1", linkPort: 7001, shards: 2, incarnation: 1_765_000_000_000_000_001)
        XCTAssertEqual(ClusterMember(json: Array(m.json.utf8)), m)
        XCTAssertNil(ClusterMember(json: Array(#"{"name":"x"}"#.utf8)))
        XCTAssertNotEqual(m.nodeID, 0)
        XCTAssertNotEqual(ClusterMember.nodeID(forName: "a"), ClusterMember.nodeID(forName: "b"))
    }

    func testHelloAndStatusFramesAndTheFramer() throws {
        var b = ByteBuffer()
        defer { b.deallocate() }
        let hello = NodeHello(clusterName: "prod", nodeName: "node-é", incarnation: 99, shards: 4)
        hello.encode(origin: ShardAddress(node: 7, shard: 4), into: &b)
        let status = NodeStatus(connections: 12345, uptimeMilliseconds: 6789)
        status.encode(origin: ShardAddress(node: 7, shard: 4), into: &b)
        let bytes = b.readableArray()
        for cut in 0...bytes.count {
            var framer = LinkFramer(maximumRecord: 1 << 20)
            defer { framer.deallocate() }
            var records: [[UInt8]] = []
            bytes.withUnsafeBytes { all in
                framer.append(UnsafeRawBufferPointer(rebasing: all[0..<cut]))
                try? framer.forEachRecord { records.append(Array($0)); return true }
                framer.append(UnsafeRawBufferPointer(rebasing: all[cut...]))
                try? framer.forEachRecord { records.append(Array($0)); return true }
            }
            XCTAssertEqual(records.count, 2, "cut at \(cut)")
            XCTAssertEqual(records[0].withUnsafeBytes { NodeHello.decode($0) }, hello)
            XCTAssertEqual(records[1].withUnsafeBytes { NodeStatus.decode($0) }, status)
        }
        var framer = LinkFramer(maximumRecord: 64)
        defer { framer.deallocate() }
        [UInt8]([0xFF, 0, 0, 0, 1, 0, 0, 0]).withUnsafeBytes { framer.append($0) }
        XCTAssertThrowsError(try framer.forEachRecord { _ in true })
        // A truncated hello is not a hello.
        XCTAssertNil(Array(bytes[0..<20]).withUnsafeBytes { NodeHello.decode($0) })
    }
}
