// mosquitto-format ACL files: parsing, per-client resolution, and the checks ShardCore makes.

import Codec
import XCTest
@testable import Broker

final class AccessControlTests: XCTestCase {
    let text = """
        # anonymous clients
        topic read public/#
        user alice
        topic readwrite sensors/#
        topic deny sensors/secret
        topic write cmd/+/set
        user bob
        topic sensors/bob/#
        pattern readwrite devices/%c/#
        pattern read users/%u/inbox
        """

    func publish(_ a: ClientAccess, _ topic: String) -> Bool { Array(topic.utf8).withUnsafeBytes { a.canPublish($0) } }
    func receive(_ a: ClientAccess, _ topic: String) -> Bool { Array(topic.utf8).withUnsafeBytes { a.canReceive($0) } }

    func testUserRulesDenyWinsAndPatterns() throws {
        let acl = try AccessControlList(text: text)
        let alice = acl.access(username: "alice", clientID: "dev1")
        XCTAssertTrue(publish(alice, "sensors/a"))
        XCTAssertFalse(publish(alice, "sensors/secret"), "deny wins")
        XCTAssertTrue(publish(alice, "cmd/x/set"))
        XCTAssertFalse(receive(alice, "cmd/x/set"), "write only")
        XCTAssertTrue(publish(alice, "devices/dev1/t"))
        XCTAssertFalse(publish(alice, "devices/dev2/t"))
        XCTAssertTrue(receive(alice, "users/alice/inbox"))
        XCTAssertFalse(publish(alice, "public/x"), "anonymous rules are not alice's")
        XCTAssertEqual(alice.canSubscribe("sensors/#").allowed, true)
        XCTAssertEqual(alice.canSubscribe("sensors/#").needsDeliveryCheck, true, "deny overlaps")
        XCTAssertEqual(alice.canSubscribe("sensors/secret").allowed, false)
        XCTAssertEqual(alice.canSubscribe("sensors/a/+").needsDeliveryCheck, false)
        XCTAssertEqual(alice.canSubscribe("#").allowed, true, "partly readable: granted")
        XCTAssertEqual(alice.canSubscribe("#").needsDeliveryCheck, true, "and filtered")
        XCTAssertEqual(alice.canSubscribe("other/#").allowed, false, "nothing readable")
        XCTAssertEqual(alice.canSubscribe("cmd/+/set").allowed, false, "write only")
        let bob = acl.access(username: "bob", clientID: "b")
        XCTAssertTrue(publish(bob, "sensors/bob/1") && receive(bob, "sensors/bob/1"), "no access word: readwrite")
        XCTAssertFalse(publish(bob, "sensors/a"))
    }

    func testAnonymousAndUnknownUsers() throws {
        let acl = try AccessControlList(text: text)
        let anonymous = acl.access(username: nil, clientID: "x")
        XCTAssertTrue(receive(anonymous, "public/news"))
        XCTAssertFalse(publish(anonymous, "public/news"))
        XCTAssertFalse(receive(anonymous, "users//inbox"), "%u patterns skip clients without a user name")
        XCTAssertTrue(publish(anonymous, "devices/x/1"))
        let carol = acl.access(username: "carol", clientID: "c")
        XCTAssertFalse(receive(carol, "public/news"), "a named user gets only its own rules and the patterns")
        XCTAssertFalse(publish(acl.access(username: nil, clientID: "a/b"), "devices/a/b/1"), "a client id with / does not widen a pattern")
    }

    func testDollarTopicsNeedExplicitRules() throws {
        let acl = try AccessControlList(text: "topic readwrite #\ntopic read $SYS/#\n")
        let a = acl.access(username: nil, clientID: "c")
        XCTAssertFalse(publish(a, "$SYS/x"))
        XCTAssertTrue(receive(a, "$SYS/broker/uptime"))
        XCTAssertTrue(publish(a, "a/b"))
    }

    func testCoverAndOverlap() {
        func split(_ s: String) -> [Substring] { s.split(separator: "/", omittingEmptySubsequences: false) }
        XCTAssertTrue(ClientAccess.covers(split("a/#"), split("a")))
        XCTAssertTrue(ClientAccess.covers(split("a/+"), split("a/+")))
        XCTAssertFalse(ClientAccess.covers(split("a/b"), split("a/+")))
        XCTAssertFalse(ClientAccess.covers(split("a/+"), split("a/#")))
        XCTAssertTrue(ClientAccess.overlaps(split("a/+"), split("+/b")))
        XCTAssertTrue(ClientAccess.overlaps(split("a"), split("a/#")))
        XCTAssertFalse(ClientAccess.overlaps(split("a/b"), split("a/c")))
        XCTAssertFalse(ClientAccess.overlaps(split("a/b/c"), split("a/+")))
    }

    func testMalformedFileNamesTheLine() {
        XCTAssertThrowsError(try AccessControlList(text: "user a\ntopic read a/#/b\n")) { error in
            XCTAssertEqual((error as? LineError)?.line, 2)
        }
        XCTAssertThrowsError(try AccessControlList(text: "topik read a\n")) { error in
            XCTAssertEqual((error as? LineError)?.line, 1)
        }
    }

    func testShardCoreEnforces() throws {
        var config = BrokerConfig()
        config.acl = try AccessControlList(text: text)
        let h = CoreHarness(shards: 2, config: config)
        let sub = h.connect(shard: 1)
        h.send(sub, .connect(Connect(version: .v5, clientID: "s", username: "alice")), version: .v5)
        _ = h.output(sub)
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: ["sensors/#", "other/#"].map {
            SubscriptionRequest(filter: $0, options: SubscriptionOptions(qos: .atLeastOnce)) })), version: .v5)
        h.pump()
        let packet = try h.output(sub).withUnsafeBytes { try PacketDecoder.decode(frame: $0, version: .v5) }
        guard case .suback(let ack) = packet else { return XCTFail("\(packet)") }
        XCTAssertEqual(ack.reasonCodes, [.grantedQoS1, .notAuthorized])
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(version: .v5, clientID: "p", username: "alice")), version: .v5)
        _ = h.output(pub)
        let codes = try pubackCodes(h, pub, ["sensors/secret", "sensors/ok", "elsewhere"])
        XCTAssertEqual(codes, [0x87, 0x00, 0x87], "sensors/secret denied by deny, elsewhere by no grant")
        let delivered = try h.received(sub, version: .v5).compactMap { p -> String? in
            if case .publish(let topic, _, _, _, _, _) = p { return topic } else { return nil }
        }
        XCTAssertEqual(delivered, ["sensors/ok"])
    }

    /// PUBACK reason codes for QoS 1 PUBLISHes of `topics` from `client`.
    func pubackCodes(_ h: CoreHarness, _ client: CoreHarness.Client, _ topics: [String], firstID: UInt16 = 1) throws -> [UInt8] {
        for (i, topic) in topics.enumerated() {
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            Array(topic.utf8).withUnsafeBytes { t in
                ([1] as [UInt8]).withUnsafeBytes { p in
                    PublishEncoder.encode(version: .v5, dup: false, qos: .atLeastOnce, retain: false, topic: t,
                                          packetID: firstID + UInt16(i), properties: UnsafeRawBufferPointer(start: nil, count: 0),
                                          payload: p, into: &buffer)
                }
            }
            h.send(client, buffer.readableArray())
        }
        var codes: [UInt8] = []
        var decoder = StreamDecoder(version: .v5)
        defer { decoder.deallocate() }
        try h.output(client).withUnsafeBytes { raw in
            decoder.feed(raw)
            while let p = try decoder.next() { if case .puback(let a) = p { codes.append(a.reasonCode.rawValue) } }
        }
        return codes
    }

    func testReloadRecomputesAccessOfConnectedClients() throws {
        var config = BrokerConfig()
        config.acl = try AccessControlList(text: "user alice\ntopic readwrite a/#\n")
        let h = CoreHarness(shards: 1, config: config)
        let alice = h.connect(shard: 0)
        h.send(alice, .connect(Connect(version: .v5, clientID: "al", username: "alice")), version: .v5)
        _ = h.output(alice)
        XCTAssertEqual(try pubackCodes(h, alice, ["a/1", "b/1"]), [0x10, 0x87])
        let wider = try AccessControlList(text: "user alice\ntopic readwrite a/#\ntopic readwrite b/#\n")
        h.cores[0].reloadSecurity(SecuritySettings(passwords: nil, authenticators: [:], acl: wider))
        XCTAssertEqual(try pubackCodes(h, alice, ["a/1", "b/1"], firstID: 3), [0x10, 0x10], "same connection, new rules")
        h.cores[0].reloadSecurity(SecuritySettings(passwords: nil, authenticators: [:], acl: nil))
        XCTAssertEqual(try pubackCodes(h, alice, ["c/1"], firstID: 5), [0x10], "no ACL: everything allowed")
        XCTAssertFalse(h.isClosing(alice))
    }

    func testRefusedLoginsAreRecordedForTheLog() throws {
        var config = BrokerConfig()
        config.allowAnonymous = false
        let h = CoreHarness(shards: 1, config: config)
        let c = h.connect(shard: 0)
        h.send(c, .connect(Connect(version: .v5, clientID: "anon-1")), version: .v5)
        let failures = h.cores[0].takeAuthenticationFailures()
        XCTAssertEqual(failures.map(\.clientID), ["anon-1"])
        XCTAssertEqual(failures.first?.connection, c.id)
        XCTAssertTrue(h.cores[0].takeAuthenticationFailures().isEmpty, "taken once")
        XCTAssertEqual(h.cores[0].counters.authenticationFailures, 1)
    }
}
