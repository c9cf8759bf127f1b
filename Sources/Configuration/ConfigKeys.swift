// Every configuration key, one row each: its name, whether it is a broker or a listener setting,
// and how its text is read, checked and stored. A new key is one line here (plus its paragraph in
// docs/configuration.md); the file, the APUS_<KEY> environment and `--set KEY=VALUE` all read it,
// and its default is the field's default in BrokerConfig or ShardGroupConfig.

import Bridge
import Broker
import Codec
import HTTPAPI
import Shards
import Transport

/// One configuration key.
public struct ConfigKey {
    public enum Scope: Sendable, Equatable {
        /// The whole broker.
        case broker
        /// The listener of the last `listener` line (the default listener before any).
        case listener
    }

    public let name: String
    public let scope: Scope
    /// Reads, checks and stores a value; the error says what the key needs.
    let set: (inout Configuration, String) throws(ConfigError) -> Void

    /// The row named `name`.
    public static func named(_ name: String) -> ConfigKey? { all.first { $0.name == name } }

    /// Every key, in the order docs/configuration.md lists them.
    public static var all: [ConfigKey] {
        [
            // Listeners
            custom("listener") { c, v throws(ConfigError) in
                // `listener PORT [ADDRESS]` as in mosquitto; several are allowed. Without ADDRESS it
                // binds every interface, as mosquitto does (only the built-in default is 127.0.0.1).
                let (host, port) = try address("listener", v, defaultHost: "0.0.0.0")
                let listener = ListenerConfig(host: host, port: port)
                if c.listenerLines == 0 {
                    c.listeners[0] = listener
                    c.currentListener = 0
                } else {
                    c.listeners.append(listener)
                    c.currentListener = c.listeners.count - 1
                }
                c.listenerLines += 1
            },
            custom("port") { c, v throws(ConfigError) in
                guard let p = UInt16(v) else { throw ConfigError("port needs a port number, got '\(v)'") }
                c.listeners[0].port = p
            },
            custom("bind_address") { c, v throws(ConfigError) in c.listeners[0].host = v },
            custom("protocol", scope: .listener) { c, v throws(ConfigError) in
                // mosquitto's `protocol mqtt | websockets`; `http` is the HTTP listener's.
                if v == "websockets" {
                    c.listeners[c.currentListener].protocolName = .mqtt
                    c.listeners[c.currentListener].webSocket.isEnabled = true
                    return
                }
                guard let p = ListenerProtocol(rawValue: v) else {
                    throw ConfigError("protocol is mqtt, websockets or http, got '\(v)'")
                }
                c.listeners[c.currentListener].protocolName = p
                c.listeners[c.currentListener].webSocket.isEnabled = false
            },
            // WebSocket, per listener (and mosquitto's global websockets_headers_size).
            custom("websockets_path", scope: .listener) { c, v throws(ConfigError) in
                guard v.hasPrefix("/") else { throw ConfigError("websockets_path must start with /, got '\(v)'") }
                c.listeners[c.currentListener].webSocket.path = v
            },
            custom("websockets_origin", scope: .listener) { c, v throws(ConfigError) in
                guard !v.isEmpty else { throw ConfigError("websockets_origin needs an origin (https://host:port)") }
                c.listeners[c.currentListener].webSocket.origins.append(v)
            },
            custom("websockets_max_frame_size", scope: .listener) { c, v throws(ConfigError) in
                c.listeners[c.currentListener].webSocket.maxFrameSize = try number("websockets_max_frame_size", v, 2...268_435_460)
            },
            custom("websockets_x_forwarded_for", scope: .listener) { c, v throws(ConfigError) in
                guard v == "true" || v == "false" else { throw ConfigError("websockets_x_forwarded_for is true or false, got '\(v)'") }
                c.listeners[c.currentListener].webSocket.trustForwardedFor = v == "true"
            },
            custom("websockets_headers_size") { c, v throws(ConfigError) in
                // 0 is mosquitto's "the default".
                let n = try number("websockets_headers_size", v, 0...1 << 20)
                c.webSocketHeadersSize = n == 0 ? WebSocketSettings().headersSize : max(n, 256)
            },
            // TLS, per listener (mosquitto's keys): on for a listener with certfile and keyfile.
            tlsPath("certfile", \.certfile),
            tlsPath("keyfile", \.keyfile),
            tlsPath("cafile", \.cafile),
            tlsPath("capath", \.capath),
            tlsPath("crlfile", \.crlfile),
            tlsText("ciphers", \.ciphers),
            tlsText("ciphers_tls1.3", \.ciphersTLS13),
            tlsFlag("require_certificate", \.requireCertificate),
            tlsFlag("use_identity_as_username", \.useIdentityAsUsername),
            tlsFlag("use_subject_as_username", \.useSubjectAsUsername),
            custom("tls_version", scope: .listener) { c, v throws(ConfigError) in
                guard let version = TLSSettings.Version(rawValue: v) else {
                    throw ConfigError("tls_version is \(TLSSettings.Version.allCases.map(\.rawValue).joined(separator: ", ")), got '\(v)'")
                }
                c.listeners[c.currentListener].tls.minimumVersion = version
            },
            seconds("tls_handshake_timeout", \.tlsHandshakeTimeoutSeconds, allowZero: false),
            integer("max_tls_handshakes", \.group.maxTLSHandshakes, 1...1_000_000),
            custom("http_listener") { c, v throws(ConfigError) in
                // Shorthand for a listener with protocol http; loopback unless an address is
                // given: the publish API is open without http_api_key.
                let (host, port) = try address("http_listener", v, defaultHost: "127.0.0.1")
                let listener = ListenerConfig(host: host, port: port, protocol: .http)
                if let i = c.listeners.firstIndex(where: { $0.protocolName == .http }) { c.listeners[i] = listener } else { c.listeners.append(listener) }
            },
            custom("http_api_key") { c, v throws(ConfigError) in
                guard let credentials = HTTPCredentials(parsing: v) else { throw ConfigError("http_api_key needs KEY:SECRET") }
                c.group.httpCredentials = credentials
            },
            boolean("set_tcp_nodelay", \.group.tcpNoDelay),
            custom("receive_buffer_size") { c, v throws(ConfigError) in
                // Each shard's provided receive buffers (1,024 of them, mapped up front, their pages
                // touched as the kernel fills them and given back after a quiet second).
                let n = try number("receive_buffer_size", v, 4096...262_144)
                guard n % 4096 == 0 else { throw ConfigError("receive_buffer_size must be a multiple of 4096, got '\(v)'") }
                c.group.receiveBufferSize = n
            },
            // Runtime
            optionalInteger("shards", \.shards, 1...63),
            custom("cpu_affinity") { c, v throws(ConfigError) in
                switch v {
                case "auto": c.cpuAffinity = nil
                case "true": c.cpuAffinity = true
                case "false": c.cpuAffinity = false
                default: throw ConfigError("cpu_affinity is auto, true or false, got '\(v)'")
                }
            },
            custom("log_level") { c, v throws(ConfigError) in
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                guard levels.contains(v) else { throw ConfigError("log_level is one of \(levels.joined(separator: ", ")), got '\(v)'") }
                c.logLevel = v
            },
            integer("sys_interval", \.group.sysIntervalSeconds, 0...Int.max),
            // Bridges, webhooks and the cluster: ConfigKeys+Integrations.swift
        ] + integrationKeys + [
            // Connections and packets
            seconds("connect_timeout", \.group.broker.connectTimeoutSeconds, allowZero: false),
            custom("max_packet_size") { c, v throws(ConfigError) in
                // 0 is mosquitto's "no limit": the protocol's maximum.
                let n = try number("max_packet_size", v, 0...268_435_460)
                guard n == 0 || n >= 2 else { throw ConfigError("max_packet_size must be 2...268435460 (0: the protocol's maximum), got '\(v)'") }
                c.group.broker.maxPacketSize = n == 0 ? 268_435_460 : n
            },
            integer("partial_packet_memory_limit", \.group.broker.partialPacketMemoryLimit, 0...Int.max),
            integer("max_connections", \.maxConnections, 0...Int.max),
            integer("max_keepalive", \.group.broker.maxKeepAlive, 10...65_535),
            // Delivery
            integer("max_inflight_messages", \.group.broker.maxInflightMessages, 1...65_535),
            integer("max_queued_messages", \.group.broker.maxQueuedMessages, 0...Int.max),
            integer("message_size_limit", \.group.broker.messageSizeLimit, 0...Int.max),
            integer("max_outbound_buffer", \.group.broker.maxOutboundBuffer, 65_536...Int.max),
            seconds("subscriber_stall_timeout", \.group.broker.subscriberStallTimeoutSeconds, allowZero: true),
            integer("receive_maximum", \.group.broker.receiveMaximum, 1...65_535),
            integer("max_topic_alias", \.group.broker.topicAliasMaximum, 0...65_535),
            integer("max_topic_alias_outbound", \.group.broker.outboundTopicAliasMaximum, 0...65_535),
            integer("match_cache_entries", \.group.broker.matchCacheEntries, 0...(1 << 20)),
            custom("response_information") { c, v throws(ConfigError) in c.group.broker.responseInformation = v },
            // Features
            boolean("retain_available", \.group.broker.retainAvailable),
            custom("max_qos") { c, v throws(ConfigError) in
                c.group.broker.maximumQoS = QoS(rawValue: UInt8(try number("max_qos", v, 0...2)))!
            },
            boolean("wildcard_subscriptions", \.group.broker.wildcardSubscriptionsAvailable),
            boolean("shared_subscriptions", \.group.broker.sharedSubscriptionsAvailable),
            boolean("subscription_identifiers", \.group.broker.subscriptionIdentifiersAvailable),
            custom("shared_subscription_strategy") { c, v throws(ConfigError) in
                guard let strategy = SharedSubscriptionStrategy(rawValue: v) else {
                    throw ConfigError("shared_subscription_strategy is round_robin, random or hash_clientid")
                }
                c.group.broker.sharedSubscriptionStrategy = strategy
            },
            // Sessions
            custom("persistent_client_expiration") { c, v throws(ConfigError) in
                c.group.broker.persistentClientExpiration = try duration("persistent_client_expiration", v)
            },
            // Persistence
            boolean("persistence", \.group.broker.persistence),
            custom("persistence_location") { c, v throws(ConfigError) in c.store.directory = v },
            custom("persistence_file") { c, v throws(ConfigError) in
                // mosquitto names one file (mosquitto.db); Apus keeps segments named after it.
                var name = Substring(v)
                if name.hasSuffix(".db") { name = name.dropLast(3) }
                guard !name.isEmpty, !name.contains("/") else { throw ConfigError("persistence_file needs a file name, got '\(v)'") }
                c.store.prefix = String(name)
            },
            seconds("autosave_interval", \.store.autosaveIntervalSeconds, allowZero: true),
            boolean("persistence_strict", \.store.strict),
            custom("persistence_durability") { c, v throws(ConfigError) in
                guard let d = StoreDurability(rawValue: v) else {
                    throw ConfigError("persistence_durability is \(StoreDurability.allCases.map(\.rawValue).joined(separator: ", ")), got '\(v)'")
                }
                c.group.broker.durability = d
            },
            // Security
            custom("password_file") { c, v throws(ConfigError) in c.passwordFile = v },
            custom("acl_file") { c, v throws(ConfigError) in c.aclFile = v },
            boolean("allow_anonymous", \.group.broker.allowAnonymous),
        ]
    }

    // MARK: row kinds

    static func custom(_ name: String, scope: Scope = .broker,
                       _ set: @escaping (inout Configuration, String) throws(ConfigError) -> Void) -> ConfigKey {
        ConfigKey(name: name, scope: scope, set: set)
    }

    /// A listener's TLS file (a path; it is read when the listener's context is made).
    static func tlsPath(_ name: String, _ path: WritableKeyPath<TLSSettings, String?>) -> ConfigKey {
        custom(name, scope: .listener) { c, v throws(ConfigError) in
            guard !v.isEmpty else { throw ConfigError("\(name) needs a path") }
            c.listeners[c.currentListener].tls[keyPath: path] = v
        }
    }

    static func tlsText(_ name: String, _ path: WritableKeyPath<TLSSettings, String?>) -> ConfigKey {
        custom(name, scope: .listener) { c, v throws(ConfigError) in c.listeners[c.currentListener].tls[keyPath: path] = v }
    }

    static func tlsFlag(_ name: String, _ path: WritableKeyPath<TLSSettings, Bool>) -> ConfigKey {
        custom(name, scope: .listener) { c, v throws(ConfigError) in
            guard v == "true" || v == "false" else { throw ConfigError("\(name) is true or false, got '\(v)'") }
            c.listeners[c.currentListener].tls[keyPath: path] = v == "true"
        }
    }

    /// An integer in `range`, stored as the field's type.
    static func integer<T: FixedWidthInteger>(_ name: String, _ path: WritableKeyPath<Configuration, T>, _ range: ClosedRange<Int>) -> ConfigKey {
        custom(name) { c, v throws(ConfigError) in c[keyPath: path] = T(try number(name, v, range)) }
    }

    static func optionalInteger<T: FixedWidthInteger>(_ name: String, _ path: WritableKeyPath<Configuration, T?>, _ range: ClosedRange<Int>) -> ConfigKey {
        custom(name) { c, v throws(ConfigError) in c[keyPath: path] = T(try number(name, v, range)) }
    }

    static func boolean(_ name: String, _ path: WritableKeyPath<Configuration, Bool>) -> ConfigKey {
        custom(name) { c, v throws(ConfigError) in
            guard v == "true" || v == "false" else { throw ConfigError("\(name) is true or false, got '\(v)'") }
            c[keyPath: path] = v == "true"
        }
    }

    /// Seconds, fractions allowed.
    static func seconds(_ name: String, _ path: WritableKeyPath<Configuration, Double>, allowZero: Bool) -> ConfigKey {
        custom(name) { c, v throws(ConfigError) in
            guard let s = Double(v), s.isFinite, s > 0 || (allowZero && s == 0) else {
                throw ConfigError("\(name) needs seconds\(allowZero ? " (0 = never)" : " above 0"), got '\(v)'")
            }
            c[keyPath: path] = s
        }
    }

    // MARK: value forms

    static func number(_ name: String, _ value: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let n = Int(value) else { throw ConfigError("\(name) needs an integer, got '\(value)'") }
        guard range.contains(n) else {
            let upper = range.upperBound == Int.max ? "" : "\(range.upperBound)"
            throw ConfigError("\(name) must be \(range.lowerBound)...\(upper), got '\(value)'")
        }
        return n
    }

    /// `PORT [ADDRESS]`.
    static func address(_ name: String, _ value: String, defaultHost: String) throws(ConfigError) -> (host: String, port: UInt16) {
        let parts = value.split(separator: " ")
        guard parts.count <= 2, let first = parts.first, let port = UInt16(first) else {
            throw ConfigError("\(name) needs PORT [ADDRESS], got '\(value)'")
        }
        return (parts.count > 1 ? String(parts[1]) : defaultHost, port)
    }

    /// mosquitto's durations: a number and a unit, h(ours) d(ays) w(eeks) m(onths) y(ears); plain seconds too.
    static func duration(_ name: String, _ value: String) throws(ConfigError) -> UInt32 {
        let units: [Character: UInt64] = ["s": 1, "h": 3600, "d": 86_400, "w": 604_800, "m": 2_592_000, "y": 31_536_000]
        var digits = Substring(value)
        var unit: UInt64 = 1
        if let last = digits.last, let u = units[last] { unit = u; digits = digits.dropLast() }
        guard let n = UInt64(digits), n <= UInt64(UInt32.max) / unit, n * unit < UInt64(UInt32.max) else {
            throw ConfigError("\(name) needs a duration like 3600, 12h, 2d, 1w, got '\(value)'")
        }
        return UInt32(n * unit)
    }
}
