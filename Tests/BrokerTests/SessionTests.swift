// Persistent sessions: offline queueing, session present, re-sending in-flight messages with DUP,
// moving a session between shards on reconnect or takeover, clean starts, v5 expiry, and input
// that follows CONNECT while the session is on its way.

import Codec
import XCTest
@testable import Broker

final class SessionTests: XCTestCase {
    typealias Delivery = (id: UInt16, payload: [UInt8], dup: Bool)

    /// Connects and returns the client, whether CONNACK said session present, and the PUBLISHes
    /// that followed the CONNACK.
    func connect(_ h: CoreHarness, shard: Int, id: String, clean: Bool, version: ProtocolVersion = .v3_1_1,
                 expiry: UInt32? = nil) throws -> (client: CoreHarness.Client, present: Bool, after: [Delivery]) {
        let c = h.connect(shard: shard)
        var props = Properties()
        props.sessionExpiryInterval = expiry
        h.send(c, .connect(Connect(version: version, cleanStart: clean, clientID: id, properties: props)), version: version)
        let bytes = h.output(c)
        XCTAssertEqual(bytes.first, 0x20, "CONNACK first")
        XCTAssertEqual(bytes.count > 3 ? bytes[3] : 0xFF, 0x00, "accepted")
        let present = bytes.count > 2 && bytes[2] & 1 == 1
        var decoder = StreamDecoder(version: version)
        defer { decoder.deallocate() }
        var after: [Delivery] = []
        try bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            while let packet = try decoder.next() {
                if case .publish(let p) = packet { after.append((p.packetID, Array(p.payload), p.dup)) }
            }
        }
        return (c, present, after)
    }

    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS = .atLeastOnce) {
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])))
        _ = h.output(c)
    }

    func publishes(_ h: CoreHarness, _ c: CoreHarness.Client) throws -> [Delivery] {
        try h.received(c).compactMap { if case .publish(_, let p, _, _, let dup, let id) = $0 { return (id, p, dup) } else { return nil } }
    }

    func testOfflineMessagesDeliveredOnReconnectOnEveryShardPair() throws {
        for first in 0..<2 {
            for second in 0..<2 {
                let h = CoreHarness(shards: 2)
                let (sub, present, _) = try connect(h, shard: first, id: "p", clean: false)
                XCTAssertFalse(present, "no session yet")
                subscribe(h, sub, "s/#")
                h.send(sub, [0xE0, 0x00])
                let pub = try connect(h, shard: 0, id: "pub", clean: true).client
                for i in 0..<3 { sendPublish(h, pub, topic: "s/x", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1)) }
                sendPublish(h, pub, topic: "s/x", payload: [99], qos: .atMostOnce)
                let (again, present2, queued) = try connect(h, shard: second, id: "p", clean: false)
                XCTAssertTrue(present2, "session present \(first)→\(second)")
                XCTAssertEqual(queued.map(\.payload), [[0], [1], [2]], "QoS 0 is not queued offline; \(first)→\(second)")
                // The subscription moved with the session.
                sendPublish(h, pub, topic: "s/y", payload: [7], qos: .atLeastOnce, packetID: 9)
                XCTAssertEqual(try publishes(h, again).map(\.payload), [[7]])
                XCTAssertEqual(h.cores[first].offlineSessions + h.cores[1 - first].offlineSessions, 0)
            }
        }
    }

    func testInflightResentWithDupAndSamePacketID() throws {
        let h = CoreHarness(shards: 2)
        let sub = try connect(h, shard: 1, id: "d", clean: false).client
        subscribe(h, sub, "t")
        let pub = try connect(h, shard: 0, id: "pub", clean: true).client
        sendPublish(h, pub, topic: "t", payload: [1], qos: .atLeastOnce, packetID: 1)
        sendPublish(h, pub, topic: "t", payload: [2], qos: .atLeastOnce, packetID: 2)
        let sent = try publishes(h, sub)
        XCTAssertEqual(sent.map(\.payload), [[1], [2]])
        h.send(sub, .puback(PublishAck(packetID: sent[0].id)))
        h.cores[1].connectionLost(sub.id)  // dies with message 2 unacknowledged
        h.pump()
        let (_, present, resent) = try connect(h, shard: 0, id: "d", clean: false)
        XCTAssertTrue(present)
        XCTAssertEqual(resent.count, 1)
        XCTAssertEqual(resent[0].payload, [2])
        XCTAssertEqual(resent[0].id, sent[1].id)
        XCTAssertTrue(resent[0].dup)
    }

    func testCleanSessionDiscardsPreviousSession() throws {
        let h = CoreHarness(shards: 2)
        let sub = try connect(h, shard: 0, id: "c", clean: false).client
        subscribe(h, sub, "t")
        h.send(sub, [0xE0, 0x00])
        let pub = try connect(h, shard: 1, id: "pub", clean: true).client
        sendPublish(h, pub, topic: "t", payload: [1], qos: .atLeastOnce, packetID: 1)
        let (clean, present, queued) = try connect(h, shard: 1, id: "c", clean: true)
        XCTAssertFalse(present)
        XCTAssertEqual(queued.count, 0)
        sendPublish(h, pub, topic: "t", payload: [2], qos: .atLeastOnce, packetID: 2)
        XCTAssertEqual(try publishes(h, clean).count, 0, "the old subscription is gone")
        XCTAssertTrue(h.cores[0].trie.matches(topic: "t").isEmpty)
        XCTAssertTrue(h.cores[1].trie.matches(topic: "t").isEmpty)
    }

    func testTakeoverOfLiveConnectionHandsSessionOver() throws {
        let h = CoreHarness(shards: 2)
        let old = try connect(h, shard: 0, id: "live", clean: false).client
        subscribe(h, old, "k")
        let (new, present, _) = try connect(h, shard: 1, id: "live", clean: false)
        XCTAssertTrue(present)
        XCTAssertTrue(h.isClosing(old))
        let pub = try connect(h, shard: 0, id: "pub", clean: true).client
        sendPublish(h, pub, topic: "k", payload: [5], qos: .atLeastOnce, packetID: 1)
        XCTAssertEqual(try publishes(h, new).map(\.payload), [[5]])
    }

    func testInputAfterConnectIsHeldUntilConnAck() throws {
        let h = CoreHarness(shards: 2)
        // Find a client id whose home is shard 1 while the client connects on shard 0, so the
        // CONNACK waits for a mailbox round trip.
        let id = (0..<100).map { "held-\($0)" }.first { h.cores[0].homeShard(of: $0) == 1 }!
        let c = h.connect(shard: 0)
        let bytes = Packet.connect(Connect(clientID: id)).encoded(version: .v3_1_1)
            + Packet.subscribe(Subscribe(packetID: 4, subscriptions: [SubscriptionRequest(filter: "h", options: SubscriptionOptions(qos: .atMostOnce))])).encoded(version: .v3_1_1)
            + [0xC0, 0x00]
        h.send(c, bytes, pump: false)
        XCTAssertEqual(h.output(c), [], "nothing before the home shard answered")
        h.pump()
        let out = h.output(c)
        XCTAssertEqual(Array(out.prefix(4)), [0x20, 0x02, 0x00, 0x00], "CONNACK before anything else")
        // The SUBACK waits for the route barrier, so the PINGRESP may overtake it.
        XCTAssertTrue([[0x90, 0x03, 0x00, 0x04, 0x00, 0xD0, 0x00], [0xD0, 0x00, 0x90, 0x03, 0x00, 0x04, 0x00]].contains(Array(out.dropFirst(4))),
                      "\(out)")
    }

    func testV5SessionExpiry() throws {
        let h = CoreHarness(shards: 1)
        let sub = try connect(h, shard: 0, id: "exp", clean: true, version: .v5, expiry: 2).client
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "e", options: SubscriptionOptions(qos: .atLeastOnce))])), version: .v5)
        h.cores[0].connectionLost(sub.id)
        h.cores[0].release(sub.id)  // the runtime closed the socket; the session stays
        XCTAssertEqual(h.cores[0].offlineSessions, 1)
        h.cores[0].tick(now: h.now + 1_000_000_000)
        XCTAssertEqual(h.cores[0].offlineSessions, 1)
        h.cores[0].tick(now: h.now + 3_000_000_000)
        XCTAssertEqual(h.cores[0].offlineSessions, 0)
        XCTAssertTrue(h.cores[0].trie.matches(topic: "e").isEmpty)
        XCTAssertFalse(try connect(h, shard: 0, id: "exp", clean: false, version: .v5, expiry: 10).present)
    }

    func testV5ZeroExpiryEndsWithConnection() throws {
        let h = CoreHarness(shards: 1)
        let c = try connect(h, shard: 0, id: "zero", clean: false, version: .v5).client
        h.send(c, [0xE0, 0x00])
        XCTAssertEqual(h.cores[0].offlineSessions, 0)
        XCTAssertFalse(try connect(h, shard: 0, id: "zero", clean: false, version: .v5).present)
    }

    func testOfflineQueueIsBounded() throws {
        var config = BrokerConfig()
        config.maxQueuedMessages = 3
        let h = CoreHarness(shards: 1, config: config)
        let sub = try connect(h, shard: 0, id: "b", clean: false).client
        subscribe(h, sub, "t")
        h.send(sub, [0xE0, 0x00])
        let pub = try connect(h, shard: 0, id: "pub", clean: true).client
        for i in 0..<10 { sendPublish(h, pub, topic: "t", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i + 1)) }
        XCTAssertEqual(h.cores[0].counters.droppedQueueFull, 7)
        XCTAssertEqual(try connect(h, shard: 0, id: "b", clean: false).after.map(\.payload), [[0], [1], [2]])
    }
}
