// Events for the webhooks (EMQX's event hooks), sans-IO: the core appends them to `events` at the
// points EMQX fires its hooks; the runtime takes them after each loop turn and hands them to the
// webhooks' senders, off the data path. Nothing is built unless a webhook wants the event's kind
// (`BrokerConfig.eventKinds`) and, for message events, the topic matches one of the webhooks'
// filters: with no webhook, each hook point costs one test of a bit.

import Codec
import Router

/// One event for the webhooks. Owned values: it leaves the loop turn it was made in.
public struct BrokerEvent: Sendable, Equatable {
    public enum Kind: UInt8, Sendable, CaseIterable {
        case connected = 1, disconnected = 2, connack = 4, subscribed = 8, unsubscribed = 16
        case publish = 32, delivered = 64, dropped = 128

        /// EMQX's event name.
        public var name: String {
            switch self {
            case .connected: "client.connected"
            case .disconnected: "client.disconnected"
            case .connack: "client.connack"
            case .subscribed: "session.subscribed"
            case .unsubscribed: "session.unsubscribed"
            case .publish: "message.publish"
            case .delivered: "message.delivered"
            case .dropped: "message.dropped"
            }
        }

        public init?(name: String) {
            guard let k = Kind.allCases.first(where: { $0.name == name }) else { return nil }
            self = k
        }

        public var isMessage: Bool { self == .publish || self == .delivered || self == .dropped }
    }

    public var kind: Kind
    public var clientID: String
    public var username: String?
    public var topic = ""
    public var payload: [UInt8] = []
    public var qos: UInt8 = 0
    public var retain = false
    /// disconnected, connack, dropped: why (EMQX's words where it has them).
    public var reason = ""
    /// delivered: the publisher.
    public var fromClientID = ""
    public var protocolVersion: UInt8 = 0
    public var keepAlive: UInt16 = 0
    public var cleanStart = false
    /// Wall-clock milliseconds.
    public var timestamp: UInt64 = 0

    public init(kind: Kind, clientID: String, username: String?) {
        self.kind = kind; self.clientID = clientID; self.username = username
    }
}

extension ShardCore {
    @inline(__always) func wantsEvent(_ kind: BrokerEvent.Kind) -> Bool { config.eventKinds & kind.rawValue != 0 }

    /// Whether a message event on `topic` is wanted by some webhook's filter.
    func wantsMessageEvent(_ kind: BrokerEvent.Kind, topic: UnsafeRawBufferPointer) -> Bool {
        guard wantsEvent(kind) else { return false }
        if config.eventTopicFilters.isEmpty { return true }
        for filter in config.eventTopicFilters {
            let hit = filter.utf8.withContiguousStorageIfAvailable { TopicMatch.matches(filter: UnsafeRawBufferPointer($0), topic: topic) }
                ?? TopicMatch.matches(filter: filter, topic: String(decoding: topic, as: UTF8.self))
            if hit { return true }
        }
        return false
    }

    var wallMilliseconds: UInt64 { (currentTime &+ wallClockOffset) / 1_000_000 }

    func clientEvent(_ kind: BrokerEvent.Kind, slot s: Int, reason: String = "") {
        guard wantsEvent(kind) else { return }
        var e = BrokerEvent(kind: kind, clientID: connections[s].clientID, username: connections[s].username)
        e.reason = reason
        e.protocolVersion = connections[s].version.rawValue
        e.cleanStart = connections[s].cleanStart
        e.keepAlive = connections[s].keepAlive
        e.timestamp = wallMilliseconds
        events.append(e)
    }

    func subscriptionEvent(_ kind: BrokerEvent.Kind, slot s: Int, filter: String, qos: QoS) {
        guard wantsEvent(kind) else { return }
        var e = BrokerEvent(kind: kind, clientID: connections[s].clientID, username: connections[s].username)
        e.topic = filter
        e.qos = qos.rawValue
        e.timestamp = wallMilliseconds
        events.append(e)
    }

    func messageEvent(_ kind: BrokerEvent.Kind, slot s: Int?, topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                      qos: QoS, retain: Bool, reason: String = "", from: String = "") {
        guard wantsMessageEvent(kind, topic: topic) else { return }
        var e = BrokerEvent(kind: kind, clientID: s.map { connections[$0].clientID } ?? "", username: s.flatMap { connections[$0].username })
        e.topic = String(decoding: topic, as: UTF8.self)
        e.payload = Array(payload)
        e.qos = qos.rawValue
        e.retain = retain
        e.reason = reason
        e.fromClientID = from
        e.timestamp = wallMilliseconds
        events.append(e)
    }

    /// EMQX's word for why a connection ended.
    static func disconnectReason(_ code: ReasonCode?) -> String {
        guard let code else { return "sock_closed" }
        if code == .sessionTakenOver { return "takenover" }
        if code == .keepAliveTimeout { return "keepalive_timeout" }
        if code == .serverShuttingDown { return "server_shutting_down" }
        return code.name.lowercased().replacingSpaces()
    }

    /// Takes the events made since the last call (the runtime, after each loop turn).
    public func takeEvents(into other: inout [BrokerEvent]) {
        swap(&events, &other)
    }
}

extension String {
    func replacingSpaces() -> String { String(map { $0 == " " ? "_" : $0 }) }
}
