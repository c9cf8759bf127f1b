// The bridge's session without sockets: the remote broker's packets in (split at every byte),
// the core's packets in, what each side gets out.

import ApusBase
import Codec
import XCTest

@testable import Bridge

final class BridgeSessionTests: XCTestCase {
    func config(version: ProtocolVersion = .v3_1_1) -> BridgeConfig {
        var c = BridgeConfig(name: "cloud", hostname: "edge1")
        c.host = "127.0.0.1"
        c.protocolVersion = version
        c.topics = [
            try! BridgeConfig.Topic(parsing: "sensors/# out 1 site1/ cloud/site1/"),
            try! BridgeConfig.Topic(parsing: "commands/# in 2 \"\" fleet/"),
        ]
        return c
    }

    /// Every packet in `bytes`, decoded as `version` (as their receiver would).
    func packets(_ bytes: [UInt8], version: ProtocolVersion) -> [String] {
        var decoder = StreamDecoder(version: version)
        var out: [String] = []
        bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            while let p = try! decoder.next() {
                switch p {
                case .connect(let c): out.append("CONNECT \(c.clientID) clean=\(c.cleanStart) will=\(c.will?.topic ?? "-")")
                case .subscribe(let s): out.append("SUBSCRIBE " + s.subscriptions.map { "\($0.filter) q\($0.options.qos.rawValue) nl=\($0.options.noLocal)" }.joined(separator: ","))
                case .publish(let p):
                    out.append("PUBLISH \(String(decoding: p.topic, as: UTF8.self)) q\(p.qos.rawValue) id\(p.packetID) r=\(p.retain) \(String(decoding: p.payload, as: UTF8.self))")
                case .puback(let a): out.append("PUBACK \(a.packetID)")
                case .pubrec(let a): out.append("PUBREC \(a.packetID)")
                case .pubrel(let a): out.append("PUBREL \(a.packetID)")
                case .pubcomp(let a): out.append("PUBCOMP \(a.packetID)")
                case .pingreq: out.append("PINGREQ")
                case .disconnect: out.append("DISCONNECT")
                default: out.append("\(p.type)")
                }
            }
        }
        return out
    }

    func encode(_ packet: Packet, _ version: ProtocolVersion) -> [UInt8] { packet.encoded(version: version) }

    func publish(_ topic: String, _ payload: String, qos: QoS, id: UInt16, retain: Bool = false, version: ProtocolVersion) -> [UInt8] {
        Array(topic.utf8).withUnsafeBytes { t in
            Array(payload.utf8).withUnsafeBytes { p in
                encode(.publish(Publish(qos: qos, retain: retain, topic: t, packetID: id, payload: p)), version)
            }
        }
    }

    /// Feeds the remote's bytes split at `cut`; returns (to core, to remote).
    func fromRemote(_ s: BridgeSession, _ bytes: [UInt8], cut: Int? = nil) -> ([String], [String]) {
        var core = ByteBuffer(), remote = ByteBuffer()
        defer { core.deallocate(); remote.deallocate() }
        let at = cut ?? bytes.count
        bytes.withUnsafeBytes { raw in
            XCTAssertEqual(s.received(UnsafeRawBufferPointer(rebasing: raw[0..<at]), now: 1, plaintext: &core, wire: &remote), .open)
            XCTAssertEqual(s.received(UnsafeRawBufferPointer(rebasing: raw[at...]), now: 1, plaintext: &core, wire: &remote), .open)
        }
        return (packets(core.readableArray(), version: .v5), packets(remote.readableArray(), version: s.config.protocolVersion))
    }

    /// Feeds the core's bytes; returns (to remote, acknowledgements back to the core).
    func fromCore(_ s: BridgeSession, _ bytes: [UInt8]) -> ([String], [String]) {
        var plain = ByteBuffer(), remote = ByteBuffer()
        defer { plain.deallocate(); remote.deallocate() }
        plain.writeBytes(bytes)
        s.send(&plain, wire: &remote)
        let back = packets(s.coreInput.readableArray(), version: .v5)
        s.coreInput.clear()
        return (packets(remote.readableArray(), version: s.config.protocolVersion), back)
    }

    func established(_ version: ProtocolVersion = .v3_1_1) -> BridgeSession {
        let s = BridgeSession(config: config(version: version))
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        s.start(now: 0, wire: &wire)
        _ = fromRemote(s, encode(.connack(ConnAck()), version))
        return s
    }

    func testConnectThenBothSidesSubscribeAndTheStateIsPublished() {
        let s = BridgeSession(config: config())
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        s.start(now: 0, wire: &wire)
        let connect = wire.readableArray()
        XCTAssertEqual(connect[8], 0x84, "try_private: protocol level 4 with bit 7")
        var patched = connect
        patched[8] = 4
        XCTAssertEqual(packets(patched, version: .v3_1_1), ["CONNECT edge1.cloud clean=false will=$SYS/broker/connection/cloud/state"])
        let ack = encode(.connack(ConnAck()), .v3_1_1)
        for cut in 0...ack.count {
            let s = BridgeSession(config: config())
            var w = ByteBuffer()
            s.start(now: 0, wire: &w)
            w.deallocate()
            let (core, remote) = fromRemote(s, ack, cut: cut)
            XCTAssertEqual(core, ["CONNECT local.edge1.cloud clean=false will=-", "SUBSCRIBE site1/sensors/# q1 nl=true"], "cut \(cut)")
            XCTAssertEqual(remote, ["SUBSCRIBE fleet/commands/# q2 nl=false", "PUBLISH $SYS/broker/connection/cloud/state q1 id2 r=true 1"])
            XCTAssertTrue(s.isEstablished)
        }
    }

    func testReadyOnlyOnceTheRemoteAcknowledgedTheSubscriptions() {
        let s = established()
        XCTAssertTrue(s.isEstablished)
        XCTAssertFalse(s.isReady, "the `in` subscription is not acknowledged yet")
        _ = fromRemote(s, encode(.suback(SubAck(packetID: 1, reasonCodes: [.grantedQoS2])), .v3_1_1))
        XCTAssertTrue(s.isReady)
    }

    func testOutboundQoS1IsAcknowledgedToTheCoreOnlyWhenTheRemoteAcknowledged() {
        let s = established()
        let (remote, back) = fromCore(s, publish("site1/sensors/t", "21.5", qos: .atLeastOnce, id: 7, version: .v5))
        XCTAssertEqual(remote, ["PUBLISH cloud/site1/sensors/t q1 id3 r=false 21.5"], "prefix swapped, the remote's own id")
        XCTAssertEqual(back, [])
        XCTAssertEqual(s.inFlight.out, 1)
        let ack = encode(.puback(PublishAck(packetID: 3)), .v3_1_1)
        for cut in 0...ack.count {
            let t = established()
            _ = fromCore(t, publish("site1/sensors/t", "x", qos: .atLeastOnce, id: 7, version: .v5))
            let (core, _) = fromRemote(t, ack, cut: cut)
            XCTAssertEqual(core, ["PUBACK 7"])
        }
    }

    func testInboundQoS2RunsEndToEnd() {
        let s = established()
        var (core, remote) = fromRemote(s, publish("fleet/commands/reboot", "now", qos: .exactlyOnce, id: 40, version: .v3_1_1))
        XCTAssertEqual(core, ["PUBLISH commands/reboot q2 id2 r=false now"])
        XCTAssertEqual(remote, [], "nothing acknowledged before the core did")
        var (toRemote, _) = fromCore(s, encode(.pubrec(PublishAck(packetID: 2)), .v5))
        XCTAssertEqual(toRemote, ["PUBREC 40"])
        (core, remote) = fromRemote(s, encode(.pubrel(PublishAck(packetID: 40)), .v3_1_1))
        XCTAssertEqual(core, ["PUBREL 2"])
        (toRemote, _) = fromCore(s, encode(.pubcomp(PublishAck(packetID: 2)), .v5))
        XCTAssertEqual(toRemote, ["PUBCOMP 40"])
        XCTAssertEqual(s.inFlight.in, 0)
    }

    func testOutboundQoS2AndRetainFlag() {
        let s = established(.v5)
        let (remote, _) = fromCore(s, publish("site1/sensors/r", "kept", qos: .exactlyOnce, id: 9, retain: true, version: .v5))
        XCTAssertEqual(remote, ["PUBLISH cloud/site1/sensors/r q2 id3 r=true kept"])
        var (core, _) = fromRemote(s, encode(.pubrec(PublishAck(packetID: 3)), .v5))
        XCTAssertEqual(core, ["PUBREC 9"])
        let (rel, _) = fromCore(s, encode(.pubrel(PublishAck(packetID: 9)), .v5))
        XCTAssertEqual(rel, ["PUBREL 3"])
        (core, _) = fromRemote(s, encode(.pubcomp(PublishAck(packetID: 3)), .v5))
        XCTAssertEqual(core, ["PUBCOMP 9"])
    }

    func testKeepAliveAndADeadRemote() {
        let s = established()
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        XCTAssertEqual(s.tick(now: 59_000_000_000, wire: &wire), .open)
        XCTAssertTrue(wire.isEmpty)
        XCTAssertEqual(s.tick(now: 61_000_000_000, wire: &wire), .open)
        XCTAssertEqual(packets(wire.readableArray(), version: .v3_1_1), ["PINGREQ"])
        guard case .failed = s.tick(now: 61_000_000_000 + 91_000_000_000, wire: &wire) else { return XCTFail("a silent remote ends the bridge") }
    }

    func testRefusalsAndProtocolErrorsEndTheBridge() {
        let s = BridgeSession(config: config())
        var core = ByteBuffer(), remote = ByteBuffer()
        defer { core.deallocate(); remote.deallocate() }
        s.start(now: 0, wire: &remote)
        let refused = encode(.connack(ConnAck(reasonCode: .notAuthorized)), .v3_1_1)
        guard case .failed = refused.withUnsafeBytes({ s.received($0, now: 1, plaintext: &core, wire: &remote) }) else { return XCTFail() }
        XCTAssertTrue(core.isEmpty, "the core never hears of a bridge the remote refused")
        let t = established()
        let subscribe = encode(.subscribe(Subscribe(packetID: 1, subscriptions: [SubscriptionRequest(filter: "x", options: SubscriptionOptions(qos: .atMostOnce))])), .v3_1_1)
        guard case .failed = subscribe.withUnsafeBytes({ t.received($0, now: 1, plaintext: &core, wire: &remote) }) else { return XCTFail() }
    }

    func testTopicLines() throws {
        XCTAssertEqual(try BridgeConfig.Topic(parsing: "a/#"), BridgeConfig.Topic(pattern: "a/#"))
        XCTAssertEqual(try BridgeConfig.Topic(parsing: "# both 2 local/ remote/"),
                       BridgeConfig.Topic(pattern: "#", direction: .both, qos: .exactlyOnce, localPrefix: "local/", remotePrefix: "remote/"))
        XCTAssertThrowsError(try BridgeConfig.Topic(parsing: "a sideways"))
        XCTAssertThrowsError(try BridgeConfig.Topic(parsing: "a out 3"))
        XCTAssertThrowsError(try BridgeConfig.Topic(parsing: "a out 1 onlyone"))
    }
}

extension BridgeSessionTests {
    /// A remote broker (or a broken connection) sending anything: the session ends with a reason
    /// or goes on; it never crashes, and what it hands the core always decodes.
    func testMangledRemoteBytesNeverCrashTheSession() {
        var random = SplitMix64(seed: 19)
        let helper = self
        let valid: [[UInt8]] = [
            helper.encode(.connack(ConnAck()), .v3_1_1),
            helper.publish("fleet/commands/x", "go", qos: .exactlyOnce, id: 9, version: .v3_1_1),
            helper.publish("fleet/commands/y", "go", qos: .atLeastOnce, id: 10, version: .v3_1_1),
            helper.encode(.puback(PublishAck(packetID: 3)), .v3_1_1),
            helper.encode(.pubrec(PublishAck(packetID: 3)), .v3_1_1),
            helper.encode(.pubrel(PublishAck(packetID: 9)), .v3_1_1),
            helper.encode(.suback(SubAck(packetID: 1, reasonCodes: [.grantedQoS2])), .v3_1_1),
        ]
        for _ in 0..<3_000 {
            let s = BridgeSession(config: helper.config())
            var core = ByteBuffer(), remote = ByteBuffer()
            s.start(now: 0, wire: &remote)
            for _ in 0..<8 {
                var bytes = valid[Int(random.next() % UInt64(valid.count))]
                if random.next() % 2 == 0 { bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next()) }
                let status = bytes.withUnsafeBytes { s.received($0, now: 1, plaintext: &core, wire: &remote) }
                if status != .open { break }
                // The core answers whatever it got with acknowledgements; the session maps them back.
                var plain = ByteBuffer()
                plain.writeBytes(helper.encode(.puback(PublishAck(packetID: UInt16(truncatingIfNeeded: random.next() % 4))), .v5))
                s.send(&plain, wire: &remote)
                plain.deallocate()
            }
            var decoder = StreamDecoder(version: .v5)
            decoder.feed(core.readableView)
            while let packet = try? decoder.next() { _ = packet }
            core.deallocate()
            remote.deallocate()
        }
    }
}
