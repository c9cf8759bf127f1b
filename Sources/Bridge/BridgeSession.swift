// A bridge connection, sans-IO: an MQTT client of the remote broker on one side and, on the
// other, a client of this broker's core — a transport layer between the socket to the remote
// broker and the core, as TLS and WebSocket are between a socket and the core.
//
// To the core the bridge is an MQTT 5 client with a persistent session (`local_clientid`) that
// subscribes to the `out` topics with No Local (what the bridge itself publishes here never goes
// back) and Retain As Published. So the core queues what the remote should get while the bridge
// is down — bounded by `max_queued_messages` and counted when dropped, as for any client — and
// sends it when the bridge is back; flow control throttles this broker's publishers if the remote
// is slower than they are. To the remote broker the bridge is a client that subscribes to the
// `in` topics (v5: No Local; 3.1.1: `try_private`, protocol level with bit 7 set, after which
// mosquitto sends a bridge nothing it published).
//
// Acknowledgements go end to end: a message from the core is acknowledged to the core only when
// the remote broker acknowledged it (PUBACK, or PUBREC/PUBCOMP for QoS 2), and a message from the
// remote is acknowledged to the remote only when the core acknowledged it. Packet ids differ on
// the two sides; the session maps them. Nothing acknowledged is lost by the bridge: a message the
// remote did not acknowledge stays in flight in the core's session and is sent again (DUP) on the
// next connection.
//
// Direction of bytes, in TransportLayer's terms: `received` takes the remote's bytes and appends
// what the core must read to `plaintext` (the bridge's packets as a client of the core) and what
// the remote must get to `wire`; `send` takes the core's bytes for the bridge and appends what the
// remote must get to `wire`, and what the core must read next to `coreInput` (taken by the runtime).

import ApusBase
import Codec
import Router
import Transport

public final class BridgeSession: TransportLayer {
    public let config: BridgeConfig
    public enum State: Equatable, Sendable { case connecting, established, closed }
    public private(set) var state = State.connecting
    public private(set) var remoteSessionPresent = false

    /// Packets for the core that `send` produced (acknowledgements of what the core sent); the
    /// runtime feeds them to the core after it.
    public var coreInput = ByteBuffer()

    private var remoteDecoder: StreamDecoder
    private var coreDecoder = StreamDecoder(version: .v5)
    private var remoteVersion: ProtocolVersion { config.protocolVersion }

    // Packet ids: out (core → remote) and in (remote → core).
    private var outRemoteToCore: [UInt16: UInt16] = [:]
    private var outCoreToRemote: [UInt16: UInt16] = [:]
    private var inCoreToRemote: [UInt16: UInt16] = [:]
    private var inRemoteToCore: [UInt16: UInt16] = [:]
    /// Ids of the bridge's own PUBLISHes to the remote (the state notification): their acks stop here.
    private var ownRemoteIDs: Set<UInt16> = []
    private var nextRemoteID: UInt16 = 0
    private var nextCoreID: UInt16 = 0

    // Keep alive with the remote.
    private var lastSentToRemote: UInt64 = 0
    private var lastHeardFromRemote: UInt64 = 0
    private var pingSentAt: UInt64? = nil

    public struct Counters: Sendable, Equatable {
        public var forwardedOut = 0
        public var forwardedIn = 0
        public var droppedOut = 0
        public var droppedIn = 0
    }
    public private(set) var counters = Counters()

    public init(config: BridgeConfig) {
        self.config = config
        remoteDecoder = StreamDecoder(version: config.protocolVersion)
    }

    deinit { coreInput.deallocate() }

    public var heldBytes: Int { 0 }
    public var isEstablished: Bool { state == .established }
    /// Established and the remote acknowledged the bridge's subscriptions (SUBACK): messages
    /// published on the remote from now on come in.
    public var isReady: Bool { state == .established && !awaitingSubAck }
    private var awaitingSubAck = false

    // MARK: start and keep alive

    /// The remote CONNECT (with the state notification as its will), once TCP is up.
    public func start(now: UInt64, wire: inout ByteBuffer) {
        var properties = Properties()
        if remoteVersion == .v5 && !config.cleanSession { properties.sessionExpiryInterval = 0xFFFF_FFFF }
        let will = config.notifications ? Will(topic: config.stateTopic, payload: Array("0".utf8), qos: .atLeastOnce, retain: true) : nil
        var connect = Connect(version: remoteVersion, cleanStart: config.cleanSession, keepAlive: config.keepAlive,
                              clientID: config.remoteClientID, will: will, username: config.remoteUsername,
                              password: config.remotePassword.map { Array($0.utf8) }, properties: properties)
        connect.isBridge = config.tryPrivate  // protocol level with bit 7 set: "a bridge" (3.1/3.1.1)
        Packet.connect(connect).encode(version: remoteVersion, into: &wire)
        lastSentToRemote = now
        lastHeardFromRemote = now
    }

    /// Keep alive: a PINGREQ when nothing was sent for the keep-alive interval; the remote is
    /// given up when nothing came back for 1.5 intervals after a ping.
    public func tick(now: UInt64, wire: inout ByteBuffer) -> TransportStatus {
        guard state != .closed, config.keepAlive > 0 else { return state == .closed ? .closed : .open }
        let interval = UInt64(config.keepAlive) * 1_000_000_000
        if let sent = pingSentAt, now &- sent > interval * 3 / 2, lastHeardFromRemote < sent {
            state = .closed
            return .failed("the remote broker did not answer PINGREQ within \(config.keepAlive * 3 / 2) s")
        }
        if state == .connecting, now &- lastHeardFromRemote > interval * 3 / 2 {
            state = .closed
            return .failed("no CONNACK from the remote broker")
        }
        if state == .established, now &- lastSentToRemote >= interval, pingSentAt == nil || lastHeardFromRemote >= pingSentAt! {
            Packet.pingreq.encode(version: remoteVersion, into: &wire)
            lastSentToRemote = now
            pingSentAt = now
        }
        return .open
    }

    /// Ends the bridge cleanly (the broker stops): the state notification, then DISCONNECT.
    public func finish(wire: inout ByteBuffer) {
        guard state == .established else { state = .closed; return }
        if config.notifications { publishState("0", wire: &wire) }
        Packet.disconnect(Disconnect()).encode(version: remoteVersion, into: &wire)
        state = .closed
    }

    // MARK: from the remote broker

    public func received(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        received(bytes, now: lastSentToRemote, plaintext: &plaintext, wire: &wire)
    }

    public func received(_ bytes: UnsafeRawBufferPointer, now: UInt64, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        guard state != .closed else { return .closed }
        lastHeardFromRemote = max(now, lastHeardFromRemote)
        remoteDecoder.feed(bytes)
        while true {
            let packet: Packet?
            do { packet = try remoteDecoder.next() } catch {
                state = .closed
                return .failed("from the remote broker: \(error)")
            }
            guard let packet else { return .open }
            if let problem = fromRemote(packet, now: now, core: &plaintext, remote: &wire) {
                state = .closed
                return problem == "" ? .closed : .failed(problem)
            }
        }
    }

    /// Handles one packet from the remote; returns a reason to end the bridge ("" for a clean end).
    private func fromRemote(_ packet: Packet, now: UInt64, core: inout ByteBuffer, remote: inout ByteBuffer) -> String? {
        switch packet {
        case .connack(let ack):
            guard state == .connecting else { return "a second CONNACK" }
            guard !ack.reasonCode.isError else { return "the remote broker refused the connection: \(ack.reasonCode)" }
            remoteSessionPresent = ack.sessionPresent
            state = .established
            connectCore(receiveMaximum: ack.properties.receiveMaximum, into: &core)
            let incoming = config.topics.filter(\.bringsIn)
            if !incoming.isEmpty {
                let requests = incoming.map {
                    SubscriptionRequest(filter: $0.remoteFilter, options: SubscriptionOptions(qos: $0.qos, noLocal: remoteVersion == .v5,
                                                                                              retainAsPublished: remoteVersion == .v5))
                }
                Packet.subscribe(Subscribe(packetID: allocateRemoteID(), subscriptions: requests)).encode(version: remoteVersion, into: &remote)
                awaitingSubAck = true
            }
            if config.notifications { publishState("1", wire: &remote) }
            lastSentToRemote = now
        case .publish(let p):
            guard state == .established else { return "PUBLISH before CONNACK" }
            guard let localTopic = mapIn(p.topic) else {
                counters.droppedIn += 1
                // Not ours (a topic no `in` line maps): acknowledged so the remote does not resend.
                acknowledgeRemote(p, into: &remote)
                return nil
            }
            var coreID: UInt16 = 0
            if p.qos != .atMostOnce {
                if let known = inRemoteToCore[p.packetID] {
                    coreID = known  // the remote sent it again (DUP): the core dedupes QoS 2
                } else {
                    coreID = allocateCoreID()
                    inRemoteToCore[p.packetID] = coreID
                    inCoreToRemote[coreID] = p.packetID
                }
            }
            localTopic.withUnsafeBytes { topic in
                let properties = remoteVersion == .v5 ? p.properties : PublishProperties()
                Packet.publish(Publish(dup: p.dup, qos: p.qos, retain: p.retain, topic: topic, packetID: coreID,
                                       properties: properties, payload: p.payload)).encode(version: .v5, into: &core)
            }
            counters.forwardedIn += 1
        case .puback(let ack), .pubcomp(let ack):
            if ownRemoteIDs.remove(ack.packetID) != nil { return nil }
            guard let coreID = outRemoteToCore.removeValue(forKey: ack.packetID) else { return nil }
            outCoreToRemote.removeValue(forKey: coreID)
            let answer = PublishAck(packetID: coreID)
            if case .puback = packet { Packet.puback(answer).encode(version: .v5, into: &core) } else { Packet.pubcomp(answer).encode(version: .v5, into: &core) }
        case .pubrec(let ack):
            if ownRemoteIDs.contains(ack.packetID) { return nil }
            guard let coreID = outRemoteToCore[ack.packetID] else {
                Packet.pubrel(PublishAck(packetID: ack.packetID, reasonCode: .packetIdentifierNotFound)).encode(version: remoteVersion, into: &remote)
                return nil
            }
            if ack.reasonCode.isError {
                // The remote refused the message: the core's QoS 2 flow ends as acknowledged.
                outRemoteToCore.removeValue(forKey: ack.packetID)
                outCoreToRemote.removeValue(forKey: coreID)
                counters.droppedOut += 1
            }
            Packet.pubrec(PublishAck(packetID: coreID)).encode(version: .v5, into: &core)
        case .pubrel(let ack):
            guard let coreID = inRemoteToCore[ack.packetID] else {
                Packet.pubcomp(PublishAck(packetID: ack.packetID, reasonCode: .packetIdentifierNotFound)).encode(version: remoteVersion, into: &remote)
                return nil
            }
            Packet.pubrel(PublishAck(packetID: coreID)).encode(version: .v5, into: &core)
        case .suback(let ack):
            if ack.reasonCodes.contains(where: \.isError) {
                return "the remote broker refused a subscription of the bridge: \(ack.reasonCodes)"
            }
            awaitingSubAck = false
        case .unsuback, .pingresp:
            break
        case .disconnect(let d):
            return d.reasonCode == .success ? "" : "the remote broker disconnected the bridge: \(d.reasonCode)"
        default:
            return "unexpected \(packet.type) from the remote broker"
        }
        return nil
    }

    private func acknowledgeRemote(_ p: Publish, into remote: inout ByteBuffer) {
        switch p.qos {
        case .atMostOnce: break
        case .atLeastOnce: Packet.puback(PublishAck(packetID: p.packetID)).encode(version: remoteVersion, into: &remote)
        case .exactlyOnce: Packet.pubrec(PublishAck(packetID: p.packetID)).encode(version: remoteVersion, into: &remote)
        }
    }

    /// The bridge's CONNECT and SUBSCRIBE to the core, once the remote accepted it.
    private func connectCore(receiveMaximum: UInt16?, into core: inout ByteBuffer) {
        BridgeSession.coreConnect(config, receiveMaximum: receiveMaximum, into: &core)
        BridgeSession.coreSubscribe(config, packetID: allocateCoreID(), into: &core)
    }

    /// The bridge's CONNECT to the core: MQTT 5, its persistent session, no keep alive.
    public static func coreConnect(_ config: BridgeConfig, receiveMaximum: UInt16? = nil, into core: inout ByteBuffer) {
        var properties = Properties()
        properties.sessionExpiryInterval = 0xFFFF_FFFF
        if let receiveMaximum { properties.receiveMaximum = receiveMaximum }  // the core sends no more in flight than the remote takes
        Packet.connect(Connect(version: .v5, cleanStart: false, keepAlive: 0, clientID: config.effectiveLocalClientID,
                               properties: properties)).encode(version: .v5, into: &core)
    }

    /// The bridge's subscriptions in the core: the `out` topics, No Local, Retain As Published,
    /// retained messages only when the subscription is new.
    public static func coreSubscribe(_ config: BridgeConfig, packetID: UInt16, into core: inout ByteBuffer) {
        let outgoing = config.topics.filter(\.sendsOut)
        guard !outgoing.isEmpty else { return }
        let requests = outgoing.map {
            SubscriptionRequest(filter: $0.localFilter, options: SubscriptionOptions(qos: $0.qos, noLocal: true, retainAsPublished: true,
                                                                                   retainHandling: .sendOnNewSubscribe))
        }
        Packet.subscribe(Subscribe(packetID: packetID, subscriptions: requests)).encode(version: .v5, into: &core)
    }

    private func publishState(_ value: String, wire: inout ByteBuffer) {
        let id = allocateRemoteID()
        ownRemoteIDs.insert(id)
        let topic = Array(config.stateTopic.utf8), payload = Array(value.utf8)
        topic.withUnsafeBytes { t in
            payload.withUnsafeBytes { p in
                Packet.publish(Publish(qos: .atLeastOnce, retain: true, topic: t, packetID: id, payload: p)).encode(version: remoteVersion, into: &wire)
            }
        }
    }

    // MARK: from the core

    public func send(_ plaintext: inout ByteBuffer, wire: inout ByteBuffer) {
        defer { plaintext.clear() }
        guard state != .closed, !plaintext.isEmpty else { return }
        coreDecoder.feed(plaintext.readableView)
        while true {
            let packet: Packet?
            do { packet = try coreDecoder.next() } catch { state = .closed; return }
            guard let packet else { return }
            fromCore(packet, remote: &wire)
        }
    }

    private func fromCore(_ packet: Packet, remote: inout ByteBuffer) {
        switch packet {
        case .publish(let p):
            guard let remoteTopic = mapOut(p.topic) else {
                counters.droppedOut += 1
                acknowledgeCore(p)
                return
            }
            var remoteID: UInt16 = 0
            if p.qos != .atMostOnce {
                if let known = outCoreToRemote[p.packetID] {
                    remoteID = known
                } else {
                    remoteID = allocateRemoteID()
                    outCoreToRemote[p.packetID] = remoteID
                    outRemoteToCore[remoteID] = p.packetID
                }
            }
            remoteTopic.withUnsafeBytes { topic in
                let properties = remoteVersion == .v5 ? p.properties : PublishProperties()
                Packet.publish(Publish(dup: p.dup, qos: p.qos, retain: p.retain, topic: topic, packetID: remoteID,
                                       properties: properties, payload: p.payload)).encode(version: remoteVersion, into: &remote)
            }
            counters.forwardedOut += 1
        case .puback(let ack), .pubcomp(let ack):
            guard let remoteID = inCoreToRemote.removeValue(forKey: ack.packetID) else { return }
            inRemoteToCore.removeValue(forKey: remoteID)
            let answer = PublishAck(packetID: remoteID)
            if case .puback = packet { Packet.puback(answer).encode(version: remoteVersion, into: &remote) } else { Packet.pubcomp(answer).encode(version: remoteVersion, into: &remote) }
        case .pubrec(let ack):
            guard let remoteID = inCoreToRemote[ack.packetID] else { return }
            Packet.pubrec(PublishAck(packetID: remoteID)).encode(version: remoteVersion, into: &remote)
        case .pubrel(let ack):
            guard let remoteID = outCoreToRemote[ack.packetID] else {
                Packet.pubcomp(PublishAck(packetID: ack.packetID)).encode(version: .v5, into: &coreInput)
                return
            }
            Packet.pubrel(PublishAck(packetID: remoteID)).encode(version: remoteVersion, into: &remote)
        case .connack(let ack):
            if ack.reasonCode.isError { state = .closed }
        case .disconnect:
            // The core ended the bridge's session (shutdown, a takeover): the remote is told.
            if config.notifications { publishState("0", wire: &remote) }
            Packet.disconnect(Disconnect()).encode(version: remoteVersion, into: &remote)
            state = .closed
        default:
            break  // SUBACK, PINGRESP, AUTH: nothing to do
        }
    }

    private func acknowledgeCore(_ p: Publish) {
        switch p.qos {
        case .atMostOnce: break
        case .atLeastOnce: Packet.puback(PublishAck(packetID: p.packetID)).encode(version: .v5, into: &coreInput)
        case .exactlyOnce: Packet.pubrec(PublishAck(packetID: p.packetID)).encode(version: .v5, into: &coreInput)
        }
    }

    // MARK: topics and ids

    /// The remote topic of a local one (the first `out` line whose filter matches), or nil.
    func mapOut(_ topic: UnsafeRawBufferPointer) -> [UInt8]? { map(topic, outward: true) }

    /// The local topic of a remote one (the first `in` line whose filter matches), or nil.
    func mapIn(_ topic: UnsafeRawBufferPointer) -> [UInt8]? { map(topic, outward: false) }

    /// The first line of the direction whose filter matches `topic`: its prefix swapped.
    private func map(_ topic: UnsafeRawBufferPointer, outward: Bool) -> [UInt8]? {
        for t in config.topics where outward ? t.sendsOut : t.bringsIn {
            let (filter, from, to) = outward ? (t.localFilter, t.localPrefix, t.remotePrefix) : (t.remoteFilter, t.remotePrefix, t.localPrefix)
            let matches = filter.utf8.withContiguousStorageIfAvailable { TopicMatch.matches(filter: UnsafeRawBufferPointer($0), topic: topic) }
                ?? TopicMatch.matches(filter: filter, topic: String(decoding: topic, as: UTF8.self))
            guard matches, topic.starts(with: from.utf8) else { continue }
            return Array(to.utf8) + topic.dropFirst(from.utf8.count)
        }
        return nil
    }

    private func allocateRemoteID() -> UInt16 {
        repeat {
            nextRemoteID = nextRemoteID == 0xFFFF ? 1 : nextRemoteID + 1
        } while outRemoteToCore[nextRemoteID] != nil || ownRemoteIDs.contains(nextRemoteID)
        return nextRemoteID
    }

    private func allocateCoreID() -> UInt16 {
        repeat {
            nextCoreID = nextCoreID == 0xFFFF ? 1 : nextCoreID + 1
        } while inCoreToRemote[nextCoreID] != nil
        return nextCoreID
    }

    /// Messages in flight each way (tests, status).
    public var inFlight: (out: Int, in: Int) { (outRemoteToCore.count, inRemoteToCore.count) }
}
