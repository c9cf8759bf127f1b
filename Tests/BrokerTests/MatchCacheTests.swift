// The per-shard cache of topic matches: lookups, admission, and that routing through it follows
// every subscription change (local, other shards', shared groups, sessions that end).

import Codec
import Router
import XCTest
@testable import Broker

final class MatchCacheTests: XCTestCase {
    func withBytes<R>(_ s: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        Array(s.utf8).withUnsafeBytes(body)
    }

    func testStoredAtSecondMissAndCurrentOnlyAtItsGeneration() {
        var cache = MatchCache(capacity: 16)
        let subscriber = LocalSubscriber(connection: ConnectionID(slot: 3, generation: 1), options: SubscriptionOptions(qos: .atLeastOnce))
        withBytes("a/b") { topic in
            let h = MatchCache.hash(topic)
            XCTAssertNil(cache.lookup(topic, hash: h, generation: 7))
            XCTAssertFalse(cache.admits(hash: h), "a topic seen once is not stored")
            XCTAssertNil(cache.lookup(topic, hash: h, generation: 7))
            XCTAssertTrue(cache.admits(hash: h), "the second miss in a row stores it")
            cache.store(topic, hash: h, generation: 7, local: [subscriber], remote: ShardSet(rawValue: 0b10), shared: [])
            let e = cache.lookup(topic, hash: h, generation: 7)
            XCTAssertNotNil(e)
            XCTAssertEqual(cache.entries[e!].local.map(\.connection), [subscriber.connection])
            XCTAssertEqual(cache.entries[e!].remote, ShardSet(rawValue: 0b10))
            XCTAssertNil(cache.lookup(topic, hash: h, generation: 8), "a trie change makes it stale")
            XCTAssertTrue(cache.admits(hash: h), "a stale entry of the same topic is refilled at once")
        }
        XCTAssertEqual(cache.hits, 1)
        XCTAssertEqual(cache.misses, 3)
    }

    func testSameHashDifferentTopicIsAMiss() {
        var cache = MatchCache(capacity: 4)
        withBytes("x/1") { first in
            let h = MatchCache.hash(first)
            cache.store(first, hash: h, generation: 1, local: [], remote: .empty, shared: [])
            // Another topic presented under the same hash (a collision) must not hit.
            withBytes("x/2") { XCTAssertNil(cache.lookup($0, hash: h, generation: 1)) }
            withBytes("x/10") { XCTAssertNil(cache.lookup($0, hash: h, generation: 1)) }
            XCTAssertNotNil(cache.lookup(first, hash: h, generation: 1))
        }
    }

    func testHashUsesEveryByte() {
        let topics = ["", "a", "ab", "abcdefgh", "abcdefgi", "abcdefghi", "abcdefghj", "sensors/room-1/temperature",
                      "sensors/room-1/temperaturf", "sensors/room-2/temperature"]
        let hashes = Set(topics.map { t in withBytes(t) { MatchCache.hash($0) } })
        XCTAssertEqual(hashes.count, topics.count)
    }

    func testEqualityAndHashSeeADifferenceAtEveryPosition() {
        for n in 1...24 {
            let a = (0..<n).map { UInt8(65 + $0) }
            for position in 0..<n {
                var b = a
                b[position] ^= 0x20
                a.withUnsafeBytes { x in
                    b.withUnsafeBytes { y in
                        XCTAssertFalse(MatchCache.equal(x, y), "length \(n), byte \(position)")
                        XCTAssertNotEqual(MatchCache.hash(x), MatchCache.hash(y), "length \(n), byte \(position)")
                    }
                    XCTAssertTrue(MatchCache.equal(x, x))
                }
            }
        }
    }

    func testDisabledCacheStoresNothing() {
        let cache = MatchCache(capacity: 0)
        XCTAssertFalse(cache.isEnabled)
        XCTAssertEqual(MatchCache(capacity: 1000).entries.count, 1024)
    }

    // MARK: routing through the cache

    func connected(_ h: CoreHarness, shard: Int, id: String) -> CoreHarness.Client {
        let c = h.connect(shard: shard)
        h.send(c, .connect(Connect(clientID: id)))
        XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
        return c
    }

    func subscribe(_ h: CoreHarness, _ c: CoreHarness.Client, _ filter: String, qos: QoS = .atMostOnce) {
        h.send(c, .subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])))
        _ = h.output(c)
    }

    func payloads(_ h: CoreHarness, _ c: CoreHarness.Client) throws -> [[UInt8]] {
        try h.received(c).compactMap { p -> [UInt8]? in
            guard case .publish(_, let payload, _, _, _, _) = p else { return nil }
            return payload
        }
    }

    /// Publishes `count` messages on `topic` (enough for the cache to hold the topic's match).
    func publish(_ h: CoreHarness, _ pub: CoreHarness.Client, _ topic: String, _ first: UInt8, count: Int = 3) {
        for i in 0..<count { sendPublish(h, pub, topic: topic, payload: [first + UInt8(i)], qos: .atMostOnce) }
    }

    func testCachedMatchFollowsSubscribeAndUnsubscribeOnEveryShard() throws {
        let h = CoreHarness(shards: 2)
        let pub = connected(h, shard: 0, id: "pub")
        let local = connected(h, shard: 0, id: "local")
        let remote = connected(h, shard: 1, id: "remote")
        subscribe(h, local, "t/+")
        publish(h, pub, "t/1", 0)
        XCTAssertEqual(try payloads(h, local), [[0], [1], [2]])
        XCTAssertGreaterThan(h.cores[0].matchCache.hits, 0, "the repeated topic was answered from the cache")

        // A subscriber on the other shard: the cached match (local only) must not be used.
        subscribe(h, remote, "t/1")
        publish(h, pub, "t/1", 10)
        XCTAssertEqual(try payloads(h, local), [[10], [11], [12]])
        XCTAssertEqual(try payloads(h, remote), [[10], [11], [12]])

        // Unsubscribe on this shard.
        h.send(local, .unsubscribe(Unsubscribe(packetID: 2, filters: ["t/+"])))
        _ = h.output(local)
        publish(h, pub, "t/1", 20)
        XCTAssertEqual(try payloads(h, local), [])
        XCTAssertEqual(try payloads(h, remote), [[20], [21], [22]])

        // The remote subscriber leaves: its route goes, and so does the forwarding.
        h.send(remote, [0xE0, 0x00])
        let forwardedBefore = h.cores[0].counters.publishesForwarded
        publish(h, pub, "t/1", 30)
        XCTAssertEqual(h.cores[0].counters.publishesForwarded, forwardedBefore)
    }

    func testCachedMatchFollowsSharedGroupsAndOverlaps() throws {
        let h = CoreHarness(shards: 1)
        let pub = connected(h, shard: 0, id: "pub")
        let a = connected(h, shard: 0, id: "a")
        let b = connected(h, shard: 0, id: "b")
        subscribe(h, a, "$share/g/s/#")
        publish(h, pub, "s/x", 0)
        XCTAssertEqual(try payloads(h, a), [[0], [1], [2]])
        // A second member joins the group: messages alternate between the two.
        subscribe(h, b, "$share/g/s/#")
        publish(h, pub, "s/x", 10, count: 4)
        XCTAssertEqual(try payloads(h, a).count, 2)
        XCTAssertEqual(try payloads(h, b).count, 2)
        // Overlapping subscriptions of one client added while the topic is cached: still one
        // delivery per message, at the highest QoS.
        subscribe(h, b, "s/x", qos: .atLeastOnce)
        subscribe(h, b, "s/+")
        h.send(a, .unsubscribe(Unsubscribe(packetID: 2, filters: ["$share/g/s/#"])))
        h.send(b, .unsubscribe(Unsubscribe(packetID: 3, filters: ["$share/g/s/#"])))
        _ = h.output(a); _ = h.output(b)
        publish(h, pub, "s/x", 20)
        let got = try h.received(b)
        XCTAssertEqual(got.count, 3)
        for p in got {
            guard case .publish(_, _, let qos, _, _, _) = p else { return XCTFail("not a publish") }
            XCTAssertEqual(qos, .atMostOnce, "the message was QoS 0: min(0, granted 1)")
        }
        XCTAssertEqual(try payloads(h, a), [])
    }

    func testEndedSessionIsNotDeliveredFromTheCache() throws {
        let h = CoreHarness(shards: 1)
        let pub = connected(h, shard: 0, id: "pub")
        let sub = connected(h, shard: 0, id: "sub")
        subscribe(h, sub, "e/1")
        publish(h, pub, "e/1", 0)
        XCTAssertEqual(try payloads(h, sub).count, 3)
        h.send(sub, [0xE0, 0x00])
        XCTAssertTrue(h.isClosing(sub))
        // A new connection in the freed slot must not receive the old subscriber's messages.
        h.cores[0].release(sub.id)
        let next = connected(h, shard: 0, id: "next")
        publish(h, pub, "e/1", 10)
        XCTAssertEqual(try payloads(h, next), [])
    }

    func testWithoutCacheRoutingIsTheSame() throws {
        var config = BrokerConfig()
        config.matchCacheEntries = 0
        let h = CoreHarness(shards: 2, config: config)
        let pub = connected(h, shard: 0, id: "pub")
        let sub = connected(h, shard: 1, id: "sub")
        subscribe(h, sub, "n/#")
        publish(h, pub, "n/1", 0)
        XCTAssertEqual(try payloads(h, sub), [[0], [1], [2]])
        XCTAssertEqual(h.cores[0].matchCache.hits, 0)
    }
}
