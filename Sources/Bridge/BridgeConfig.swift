// A bridge to another MQTT broker: mosquitto's `connection` block and its keys, as one value.
//
//   connection NAME
//   address HOST[:PORT]
//   topic PATTERN [in|out|both] [QOS] [LOCAL-PREFIX REMOTE-PREFIX]     (repeatable)
//   remote_clientid, local_clientid, remote_username, remote_password, cleansession,
//   bridge_protocol_version mqttv311|mqttv50, try_private, keepalive_interval, restart_timeout,
//   notifications, notification_topic, bridge_cafile, bridge_certfile, bridge_keyfile, bridge_insecure

import Codec

public struct BridgeConfig: Sendable, Equatable {
    public enum Direction: String, Sendable, Equatable {
        case `in`, out, both
    }

    /// One `topic` line.
    public struct Topic: Sendable, Equatable {
        public var pattern: String
        public var direction: Direction
        public var qos: QoS
        public var localPrefix: String
        public var remotePrefix: String

        public init(pattern: String, direction: Direction = .out, qos: QoS = .atMostOnce, localPrefix: String = "", remotePrefix: String = "") {
            self.pattern = pattern; self.direction = direction; self.qos = qos
            self.localPrefix = localPrefix; self.remotePrefix = remotePrefix
        }

        /// The filter subscribed on this broker (out) and on the remote one (in).
        public var localFilter: String { localPrefix + pattern }
        public var remoteFilter: String { remotePrefix + pattern }
        public var sendsOut: Bool { direction != .in }
        public var bringsIn: Bool { direction != .out }

        /// Parses `PATTERN [in|out|both] [QOS] [LOCAL-PREFIX REMOTE-PREFIX]` (mosquitto's `""` for an
        /// empty pattern or prefix).
        public init(parsing text: String) throws(BridgeConfigError) {
            let words = text.split(separator: " ", omittingEmptySubsequences: true).map { $0 == "\"\"" ? "" : String($0) }
            guard !words.isEmpty, words.count != 4, words.count <= 5 else {
                throw BridgeConfigError("topic needs PATTERN [in|out|both] [QOS] [LOCAL-PREFIX REMOTE-PREFIX], got '\(text)'")
            }
            var topic = Topic(pattern: words[0])
            if words.count > 1 {
                guard let d = Direction(rawValue: words[1]) else { throw BridgeConfigError("topic direction is in, out or both, got '\(words[1])'") }
                topic.direction = d
            }
            if words.count > 2 {
                guard let n = UInt8(words[2]), let q = QoS(rawValue: n) else { throw BridgeConfigError("topic QoS is 0, 1 or 2, got '\(words[2])'") }
                topic.qos = q
            }
            if words.count == 5 { topic.localPrefix = words[3]; topic.remotePrefix = words[4] }
            guard !(topic.pattern.isEmpty && topic.localPrefix.isEmpty && topic.remotePrefix.isEmpty) else {
                throw BridgeConfigError("topic with an empty pattern needs prefixes")
            }
            self = topic
        }
    }

    public var name: String
    public var host: String = ""
    public var port: UInt16 = 1883
    public var topics: [Topic] = []
    /// The client id on the remote broker (mosquitto's default: HOSTNAME.NAME).
    public var remoteClientID: String
    /// The client id of the bridge's session on this broker (mosquitto's default: local.REMOTE-ID).
    public var localClientID: String?
    public var remoteUsername: String? = nil
    public var remotePassword: String? = nil
    /// Clean session on the remote broker (mosquitto's default: false, so the remote keeps what
    /// was queued for the bridge while it was away).
    public var cleanSession = false
    public var protocolVersion: ProtocolVersion = .v3_1_1
    /// Tell the remote broker (protocol level with bit 7 set, 3.1.1) that this is a bridge, so
    /// that it does not send back what the bridge publishes (mosquitto's default: true).
    public var tryPrivate = true
    public var keepAlive: UInt16 = 60
    /// Seconds before reconnecting: the first wait, then doubling up to the second (mosquitto's
    /// `restart_timeout BASE CAP`, default 5 30).
    public var restartBase: Double = 5
    public var restartCap: Double = 30
    /// Publish the bridge's state ("1" connected, "0" not) as a retained message here and on the
    /// remote broker (as its will while connected).
    public var notifications = true
    public var notificationTopic: String? = nil
    /// TLS to the remote broker (mosquitto's `bridge_cafile`, `bridge_certfile`, `bridge_keyfile`,
    /// `bridge_insecure`): the CA its certificate must chain to, a client certificate to present,
    /// and whether to skip the check that the certificate names `host`.
    public var cafile: String? = nil
    public var certfile: String? = nil
    public var keyfile: String? = nil
    public var insecure = false

    public var usesTLS: Bool { cafile != nil }

    public init(name: String, hostname: String = "apus") {
        self.name = name
        self.remoteClientID = "\(hostname).\(name)"
    }

    public var effectiveLocalClientID: String { localClientID ?? "local.\(remoteClientID)" }
    public var stateTopic: String { notificationTopic ?? "$SYS/broker/connection/\(name)/state" }

    /// What is wrong with the block taken together, if anything.
    public var problem: String? {
        if host.isEmpty { return "connection \(name): no address" }
        if topics.isEmpty { return "connection \(name): no topic" }
        if (certfile == nil) != (keyfile == nil) { return "connection \(name): bridge_certfile and bridge_keyfile go together" }
        if (certfile != nil || insecure) && cafile == nil { return "connection \(name): bridge_certfile and bridge_insecure need bridge_cafile" }
        return nil
    }
}

public struct BridgeConfigError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
