// The node gateway's routing without sockets: records from shards and peers in, records out.

import ApusBase
import Codec
import Router
import ShardContract
import XCTest

@testable import Cluster

final class GatewayCoreTests: XCTestCase {
    let hello = NodeHello(clusterName: "c", nodeName: "a", incarnation: 7, shards: 2)

    func record(_ message: ShardMessage, from origin: ShardAddress) -> [UInt8] {
        var b = ByteBuffer()
        defer { b.deallocate() }
        ShardRecordCodec.encode(message, origin: origin, into: &b)
        return b.readableArray()
    }

    func routeRecord(_ add: Bool, _ filter: String, from origin: ShardAddress) -> [UInt8] {
        var f = Array(filter.utf8)
        return f.withUnsafeMutableBytes { raw in
            let p = UnsafeRawBufferPointer(raw)
            return record(add ? .routeAdd(filter: p, time: 5) : .routeRemove(filter: p, time: 5), from: origin)
        }
    }

    func publishRecord(_ topic: String, payload: String, qos: QoS = .atLeastOnce, from origin: ShardAddress) -> [UInt8] {
        var t = Array(topic.utf8), p = Array(payload.utf8)
        return t.withUnsafeMutableBytes { tb in
            p.withUnsafeMutableBytes { pb in
                record(.publish(ForwardedPublish(qos: qos, retain: false, origin: ConnectionID(slot: 3, generation: 1),
                                                 topic: UnsafeRawBufferPointer(tb), properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                                 payload: UnsafeRawBufferPointer(pb))), from: origin)
            }
        }
    }

    /// Every record in a buffer, decoded as (origin, kind, filter or topic).
    func drain(_ buffer: inout ByteBuffer) -> [(ShardAddress, ShardMessageKind?, NodeFrameKind?, String)] {
        var out: [(ShardAddress, ShardMessageKind?, NodeFrameKind?, String)] = []
        var view = buffer.readableView
        while view.count >= 8 {
            let length = ShardRecordCodec.recordLength(view.baseAddress!)
            let r = UnsafeRawBufferPointer(rebasing: view[0..<length])
            if let nodeKind = NodeFrame.kind(r) {
                out.append((ShardAddress(node: 0, shard: 0), nil, nodeKind, ""))
            } else {
                let decoded = try! ShardRecordCodec.decode(r)
                var text = ""
                switch decoded.message {
                case .routeAdd(let f, _), .routeRemove(let f, _): text = String(decoding: f, as: UTF8.self)
                case .publish(let p): text = String(decoding: p.topic, as: UTF8.self) + "=" + String(decoding: p.payload, as: UTF8.self)
                case .retain(let u): text = String(decoding: u.topic, as: UTF8.self) + "@\(u.stamp.time)/\(u.stamp.origin.node)"
                case .barrierAck(let t): text = "\(t)"
                case .storeBarrierAck(let t): text = "\(t)"
                default: break
                }
                out.append((decoded.origin, ShardRecordCodec.kind(r), nil, text))
            }
            view = UnsafeRawBufferPointer(rebasing: view[length...])
        }
        buffer.clear()
        return out
    }

    func testLocalRoutesGoToPeersOncePerFilterAndSnapshotOnLinkUp() {
        let g = GatewayCore(nodeID: 10, shards: 2, wallClockOffset: 0)
        routeRecord(true, "a/+", from: ShardAddress(node: 10, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        // No link yet: nothing queued; the link's snapshot carries it.
        XCTAssertTrue(g.peerOutbox[1].isEmpty)
        g.peerLinkUp(1, hello: hello)
        var out = drain(&g.peerOutbox[1])
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(out[0].2, .hello)
        XCTAssertEqual(out[1].1, .routeAdd)
        XCTAssertEqual(out[1].3, "a/+")
        XCTAssertEqual(out[1].0, ShardAddress(node: 10, shard: 2))
        // A second shard on the same filter: no new route for the peer.
        routeRecord(true, "a/+", from: ShardAddress(node: 10, shard: 1)).withUnsafeBytes { g.fromShard($0, shard: 1) }
        XCTAssertTrue(g.peerOutbox[1].isEmpty)
        // The first leaves: still one; the second leaves: routeRemove.
        routeRecord(false, "a/+", from: ShardAddress(node: 10, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        XCTAssertTrue(g.peerOutbox[1].isEmpty)
        routeRecord(false, "a/+", from: ShardAddress(node: 10, shard: 1)).withUnsafeBytes { g.fromShard($0, shard: 1) }
        out = drain(&g.peerOutbox[1])
        XCTAssertEqual(out.map(\.1), [.routeRemove])
    }

    func testPeerRoutesBecomeGatewayRoutesOnEveryShardAndPublishesFollowThem() {
        let g = GatewayCore(nodeID: 10, shards: 2, wallClockOffset: 0)
        g.peerLinkUp(3, hello: hello)
        _ = drain(&g.peerOutbox[3])
        XCTAssertTrue(routeRecord(true, "s/#", from: ShardAddress(node: 20, shard: 2)).withUnsafeBytes { g.fromPeer($0, peer: 3, peerNode: 20) })
        for shard in 0..<2 {
            let out = drain(&g.shardOutbox[shard])
            XCTAssertEqual(out.map(\.1), [.routeAdd])
            XCTAssertEqual(out[0].0, ShardAddress(node: 10, shard: 2), "from the gateway's index")
        }
        // A publish from a shard that matches goes to the peer, one that does not stays.
        publishRecord("s/1", payload: "x", from: ShardAddress(node: 10, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        publishRecord("t/1", payload: "y", from: ShardAddress(node: 10, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        XCTAssertEqual(drain(&g.peerOutbox[3]).map(\.3), ["s/1=x"])
        XCTAssertEqual(g.counters.publishesToPeers, 1)
        // The peer leaves: every shard loses the gateway's route; nothing goes to it any more.
        g.dropRoutes(of: 3)
        g.peerLinkDown(3)
        for shard in 0..<2 { XCTAssertEqual(drain(&g.shardOutbox[shard]).map(\.1), [.routeRemove]) }
        publishRecord("s/1", payload: "x", from: ShardAddress(node: 10, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        XCTAssertTrue(g.peerOutbox[3].isEmpty)
    }

    func testPublishFromPeerGoesToSubscribedShardsFromTheGateway() {
        let g = GatewayCore(nodeID: 10, shards: 3, wallClockOffset: 0)
        routeRecord(true, "s/+", from: ShardAddress(node: 10, shard: 2)).withUnsafeBytes { g.fromShard($0, shard: 2) }
        routeRecord(true, "s/1", from: ShardAddress(node: 10, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        XCTAssertTrue(publishRecord("s/1", payload: "p", from: ShardAddress(node: 20, shard: 1)).withUnsafeBytes { g.fromPeer($0, peer: 0, peerNode: 20) })
        let to0 = drain(&g.shardOutbox[0]), to1 = drain(&g.shardOutbox[1]), to2 = drain(&g.shardOutbox[2])
        XCTAssertEqual(to0.map(\.3), ["s/1=p"])
        XCTAssertEqual(to0[0].0, ShardAddress(node: 10, shard: 3), "re-addressed from the gateway")
        XCTAssertTrue(to1.isEmpty)
        XCTAssertEqual(to2.map(\.3), ["s/1=p"])
    }

    func testBarriersAreAnsweredAtOnce() {
        let g = GatewayCore(nodeID: 10, shards: 2, wallClockOffset: 0)
        record(.barrier(token: 9), from: ShardAddress(node: 10, shard: 1)).withUnsafeBytes { g.fromShard($0, shard: 1) }
        record(.storeBarrier(token: 11), from: ShardAddress(node: 10, shard: 1)).withUnsafeBytes { g.fromShard($0, shard: 1) }
        let out = drain(&g.shardOutbox[1])
        XCTAssertEqual(out.map(\.1), [.barrierAck, .storeBarrierAck])
        XCTAssertEqual(out.map(\.3), ["9", "11"])
    }

    func testRetainedStampsCrossAsWallClockTime() {
        let a = GatewayCore(nodeID: 10, shards: 1, wallClockOffset: 1_000)
        let b = GatewayCore(nodeID: 20, shards: 2, wallClockOffset: 400)
        a.peerLinkUp(0, hello: hello)
        _ = drain(&a.peerOutbox[0])
        var topic = Array("r/1".utf8), payload = Array("v".utf8)
        let rec = topic.withUnsafeMutableBytes { t in
            payload.withUnsafeMutableBytes { p in
                record(.retain(RetainedUpdate(qos: .atMostOnce, stamp: RetainedStamp(time: 50, origin: ShardAddress(node: 10, shard: 0)),
                                              topic: UnsafeRawBufferPointer(t), properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                              payload: UnsafeRawBufferPointer(p))), from: ShardAddress(node: 10, shard: 0))
            }
        }
        rec.withUnsafeBytes { a.fromShard($0, shard: 0) }
        let wire = a.peerOutbox[0].readableArray()
        XCTAssertEqual(drain(&a.peerOutbox[0]).map(\.3), ["r/1@1050/10"], "wall clock: 50 + 1000")
        XCTAssertTrue(wire.withUnsafeBytes { b.fromPeer($0, peer: 5, peerNode: 10) })
        for shard in 0..<2 { XCTAssertEqual(drain(&b.shardOutbox[shard]).map(\.3), ["r/1@650/10"], "b's monotonic: 1050 - 400") }
    }

    func testDamagedPeerRecordIsRefused() {
        let g = GatewayCore(nodeID: 10, shards: 1, wallClockOffset: 0)
        var bad = routeRecord(true, "x", from: ShardAddress(node: 20, shard: 0))
        bad[0] = 200  // length field lies
        XCTAssertFalse(bad.withUnsafeBytes { g.fromPeer($0, peer: 0, peerNode: 20) })
        XCTAssertEqual(g.counters.recordsRefused, 1)
    }
}

final class GatewayClientTests: XCTestCase {
    let hello = NodeHello(clusterName: "c", nodeName: "a", incarnation: 1, shards: 2)

    func records(_ buffer: inout ByteBuffer) -> [ShardRecord] {
        var out: [ShardRecord] = []
        var view = buffer.readableView
        while view.count >= 8 {
            let length = ShardRecordCodec.recordLength(view.baseAddress!)
            let r = UnsafeRawBufferPointer(rebasing: view[0..<length])
            if NodeFrame.kind(r) == nil { out.append(try! ShardRecordCodec.decode(r)) }
            view = UnsafeRawBufferPointer(rebasing: view[length...])
        }
        buffer.clear()
        return out
    }

    func client(_ r: ShardRecord) -> ClientMessage? {
        if case .client(let m) = r.message { return m }
        return nil
    }

    func encode(_ m: ClientMessage, from origin: ShardAddress) -> [UInt8] {
        var b = ByteBuffer()
        defer { b.deallocate() }
        ShardRecordCodec.encode(.client(m), origin: origin, into: &b)
        return b.readableArray()
    }

    /// Two gateways, A (claimant) and B (holder), wired by hand.
    func testAClaimAsksEveryNodeAndTheSessionComesBack() throws {
        let a = GatewayCore(nodeID: 1, shards: 2, wallClockOffset: 0)
        a.peerLinkUp(4, hello: hello)
        a.peerLinkUp(5, hello: hello)
        _ = records(&a.peerOutbox[4]); _ = records(&a.peerOutbox[5])
        // A's home shard 1 found no holder; shard 0's connection claims "dev-1".
        let conn = ConnectionID(slot: 7, generation: 3)
        encode(ClientMessage(kind: .claim, clientID: "dev-1", connection: conn, other: ShardAddress(node: 1, shard: 0)),
               from: ShardAddress(node: 1, shard: 1)).withUnsafeBytes { a.fromShard($0, shard: 1) }
        let asked = records(&a.peerOutbox[4])
        XCTAssertEqual(asked.count, 1)
        XCTAssertEqual(client(asked[0])?.kind, .claim)
        XCTAssertEqual(records(&a.peerOutbox[5]).count, 1, "every linked node is asked")

        // B receives the claim: it goes to B's home shard for the id, from B's gateway.
        let b = GatewayCore(nodeID: 2, shards: 3, wallClockOffset: 0)
        b.peerLinkUp(0, hello: hello)
        _ = records(&b.peerOutbox[0])
        XCTAssertTrue(encode(client(asked[0])!, from: ShardAddress(node: 1, shard: 2)).withUnsafeBytes { b.fromPeer($0, peer: 0, peerNode: 1) })
        let home = GatewayCore.homeShard(of: "dev-1", shards: 3)
        let toHome = records(&b.shardOutbox[home])
        XCTAssertEqual(toHome.map { client($0)?.kind }, [.claim])
        XCTAssertEqual(toHome[0].origin.shard, 3, "from B's gateway")
        // B's holder answers with its session; B's gateway relays it to A.
        let session = SessionSnapshot(nextPacketID: 9)
        encode(ClientMessage(kind: .claimed, clientID: "dev-1", connection: conn, session: session),
               from: ShardAddress(node: 2, shard: 0)).withUnsafeBytes { b.fromShard($0, shard: 0) }
        let answer = records(&b.peerOutbox[0])
        XCTAssertEqual(answer.map { client($0)?.kind }, [.claimed])

        // A: one answer of two: the claimant still waits; the second (no session) completes it.
        XCTAssertTrue(encode(client(answer[0])!, from: ShardAddress(node: 2, shard: 3)).withUnsafeBytes { a.fromPeer($0, peer: 4, peerNode: 2) })
        XCTAssertTrue(a.shardOutbox[0].isEmpty)
        encode(ClientMessage(kind: .claimed, clientID: "dev-1", connection: conn), from: ShardAddress(node: 3, shard: 3))
            .withUnsafeBytes { _ = a.fromPeer($0, peer: 5, peerNode: 3) }
        let done = records(&a.shardOutbox[0])
        XCTAssertEqual(done.count, 1)
        XCTAssertEqual(client(done[0])?.kind, .claimed)
        XCTAssertEqual(client(done[0])?.connection, conn)
        XCTAssertEqual(client(done[0])?.session?.nextPacketID, 9, "the holder's session")
        XCTAssertEqual(a.pendingClaimCount, 0)
    }

    func testAClaimGoesOnWhenANodeLeavesOrTimesOut() {
        let a = GatewayCore(nodeID: 1, shards: 1, wallClockOffset: 0)
        a.peerLinkUp(0, hello: hello)
        a.peerLinkUp(1, hello: hello)
        a.currentTime = 1_000
        let conn = ConnectionID(slot: 1, generation: 1)
        encode(ClientMessage(kind: .claim, clientID: "x", connection: conn, other: ShardAddress(node: 1, shard: 0)),
               from: ShardAddress(node: 1, shard: 0)).withUnsafeBytes { a.fromShard($0, shard: 0) }
        a.peerLinkDown(0)
        XCTAssertEqual(a.pendingClaimCount, 1)
        a.tick(now: 1_000 + GatewayCore.claimTimeout - 1)
        XCTAssertEqual(a.pendingClaimCount, 1)
        a.tick(now: 1_000 + GatewayCore.claimTimeout)
        XCTAssertEqual(a.pendingClaimCount, 0)
        XCTAssertEqual(records(&a.shardOutbox[0]).map { client($0)?.kind }, [.claimed])
        XCTAssertEqual(a.counters.claimsTimedOut, 1)
        // With no node linked, a claim is answered at once.
        a.peerLinkDown(1)
        encode(ClientMessage(kind: .claim, clientID: "y", connection: conn, other: ShardAddress(node: 1, shard: 0)),
               from: ShardAddress(node: 1, shard: 0)).withUnsafeBytes { a.fromShard($0, shard: 0) }
        XCTAssertEqual(records(&a.shardOutbox[0]).map { client($0)?.kind }, [.claimed])
    }
}

final class GatewayRetainedTests: XCTestCase {
    func testAPeerLinkingLateGetsEveryRetainedMessageAndOlderUpdatesLose() {
        let g = GatewayCore(nodeID: 10, shards: 1, wallClockOffset: 100)
        func retain(_ topic: String, _ payload: String, time: UInt64) -> [UInt8] {
            var t = Array(topic.utf8), p = Array(payload.utf8)
            var b = ByteBuffer()
            defer { b.deallocate() }
            t.withUnsafeMutableBytes { tb in
                p.withUnsafeMutableBytes { pb in
                    ShardRecordCodec.encode(.retain(RetainedUpdate(qos: .atLeastOnce, stamp: RetainedStamp(time: time, origin: ShardAddress(node: 10, shard: 0)),
                                                                   topic: UnsafeRawBufferPointer(tb), properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                                                   payload: UnsafeRawBufferPointer(pb))), origin: ShardAddress(node: 10, shard: 0), into: &b)
                }
            }
            return b.readableArray()
        }
        retain("r/1", "one", time: 5).withUnsafeBytes { g.fromShard($0, shard: 0) }
        retain("r/2", "two", time: 6).withUnsafeBytes { g.fromShard($0, shard: 0) }
        retain("r/2", "", time: 7).withUnsafeBytes { g.fromShard($0, shard: 0) }       // deleted
        retain("r/1", "stale", time: 4).withUnsafeBytes { g.fromShard($0, shard: 0) }  // older: kept out
        XCTAssertEqual(g.retainedCount, 1)
        g.peerLinkUp(2, hello: NodeHello(clusterName: "c", nodeName: "a", incarnation: 1, shards: 1))
        var topics: [String] = []
        var view = g.peerOutbox[2].readableView
        while view.count >= 8 {
            let length = ShardRecordCodec.recordLength(view.baseAddress!)
            let r = UnsafeRawBufferPointer(rebasing: view[0..<length])
            if NodeFrame.kind(r) == nil, case .retain(let u) = try! ShardRecordCodec.decode(r).message {
                topics.append(String(decoding: u.topic, as: UTF8.self) + "=" + String(decoding: u.payload, as: UTF8.self) + "@\(u.stamp.time)")
            }
            view = UnsafeRawBufferPointer(rebasing: view[length...])
        }
        XCTAssertEqual(topics, ["r/1=one@105"], "wall-clock stamp: 5 + 100")
    }
}

final class GatewaySharedTests: XCTestCase {
    func decodeAll(_ buffer: inout ByteBuffer) -> [ShardRecord] {
        var out: [ShardRecord] = []
        var view = buffer.readableView
        while view.count >= 8 {
            let length = ShardRecordCodec.recordLength(view.baseAddress!)
            let r = UnsafeRawBufferPointer(rebasing: view[0..<length])
            if NodeFrame.kind(r) == nil { out.append(try! ShardRecordCodec.decode(r)) }
            view = UnsafeRawBufferPointer(rebasing: view[length...])
        }
        buffer.clear()
        return out
    }

    func shareCount(_ count: Int, from origin: ShardAddress) -> [UInt8] {
        var f = Array("jobs/#".utf8), g = Array("workers".utf8)
        var b = ByteBuffer()
        defer { b.deallocate() }
        f.withUnsafeMutableBytes { fb in
            g.withUnsafeMutableBytes { gb in
                ShardRecordCodec.encode(.shareCount(filter: UnsafeRawBufferPointer(fb), group: UnsafeRawBufferPointer(gb), count: count),
                                        origin: origin, into: &b)
            }
        }
        return b.readableArray()
    }

    func sharedPublish(member: Int, from origin: ShardAddress) -> [UInt8] {
        var f = Array("jobs/#".utf8), g = Array("workers".utf8), t = Array("jobs/1".utf8), p = Array("x".utf8)
        var b = ByteBuffer()
        defer { b.deallocate() }
        f.withUnsafeMutableBytes { fb in g.withUnsafeMutableBytes { gb in t.withUnsafeMutableBytes { tb in p.withUnsafeMutableBytes { pb in
            let message = ForwardedPublish(qos: .atLeastOnce, retain: false, origin: ConnectionID(slot: 1, generation: 1),
                                           topic: UnsafeRawBufferPointer(tb), properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                           payload: UnsafeRawBufferPointer(pb))
            ShardRecordCodec.encode(.sharedPublish(message, filter: UnsafeRawBufferPointer(fb), group: UnsafeRawBufferPointer(gb), member: member),
                                    origin: origin, into: &b)
        } } } }
        return b.readableArray()
    }

    func testOtherNodesMembersAreTheGatewaysShareAndIndexesMapToNodesThenShards() {
        let g = GatewayCore(nodeID: 1, shards: 2, wallClockOffset: 0)
        let hello = NodeHello(clusterName: "c", nodeName: "n", incarnation: 1, shards: 2)
        g.peerLinkUp(0, hello: hello)
        g.peerLinkUp(1, hello: hello)
        _ = decodeAll(&g.peerOutbox[0]); _ = decodeAll(&g.peerOutbox[1])
        // Local members: 2 on shard 0, 1 on shard 1 -> peers hear 2, then 3.
        shareCount(2, from: ShardAddress(node: 1, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        shareCount(1, from: ShardAddress(node: 1, shard: 1)).withUnsafeBytes { g.fromShard($0, shard: 1) }
        let told = decodeAll(&g.peerOutbox[0]).compactMap { r -> Int? in
            if case .shareCount(_, _, let n) = r.message { return n } else { return nil }
        }
        XCTAssertEqual(told, [2, 3])
        // Peers: slot 0 has 1 member, slot 1 has 4: every shard hears 1, then 5.
        XCTAssertTrue(shareCount(1, from: ShardAddress(node: 7, shard: 2)).withUnsafeBytes { g.fromPeer($0, peer: 0, peerNode: 7) })
        XCTAssertTrue(shareCount(4, from: ShardAddress(node: 8, shard: 2)).withUnsafeBytes { g.fromPeer($0, peer: 1, peerNode: 8) })
        for shard in 0..<2 {
            let counts = decodeAll(&g.shardOutbox[shard]).compactMap { r -> Int? in
                if case .shareCount(_, _, let n) = r.message { return n } else { return nil }
            }
            XCTAssertEqual(counts, [1, 5])
        }
        // Member 0 of the gateway's share is peer 0's; member 3 is peer 1's member 2.
        sharedPublish(member: 0, from: ShardAddress(node: 1, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        sharedPublish(member: 3, from: ShardAddress(node: 1, shard: 0)).withUnsafeBytes { g.fromShard($0, shard: 0) }
        func members(_ b: inout ByteBuffer) -> [Int] {
            decodeAll(&b).compactMap { r -> Int? in if case .sharedPublish(_, _, _, let m) = r.message { return m } else { return nil } }
        }
        XCTAssertEqual(members(&g.peerOutbox[0]), [0])
        XCTAssertEqual(members(&g.peerOutbox[1]), [2])
        // From a peer, member 2 of this node's 3: shard 1's member 0.
        XCTAssertTrue(sharedPublish(member: 2, from: ShardAddress(node: 7, shard: 2)).withUnsafeBytes { g.fromPeer($0, peer: 0, peerNode: 7) })
        XCTAssertEqual(members(&g.shardOutbox[0]), [])
        XCTAssertEqual(members(&g.shardOutbox[1]), [0])
        // Peer 1 leaves: the shards hear the other nodes' share drop to 1.
        g.dropRoutes(of: 1)
        for shard in 0..<2 {
            let counts = decodeAll(&g.shardOutbox[shard]).compactMap { r -> Int? in
                if case .shareCount(_, _, let n) = r.message { return n } else { return nil }
            }
            XCTAssertEqual(counts, [1])
        }
    }
}
