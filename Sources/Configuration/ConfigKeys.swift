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
            // Runtime
            optionalInteger("shards", \.shards, 1...63),
            custom("log_level") { c, v throws(ConfigError) in
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                guard levels.contains(v) else { throw ConfigError("log_level is one of \(levels.joined(separator: ", ")), got '\(v)'") }
                c.logLevel = v
            },
            integer("sys_interval", \.group.sysIntervalSeconds, 0...Int.max),
            // Bridges (mosquitto's `connection` blocks; docs/configuration.md, "Bridges")
            custom("connection") { c, v throws(ConfigError) in
                guard !v.isEmpty, !v.contains(" "), !v.contains("/") else { throw ConfigError("connection needs a name without spaces or '/', got '\(v)'") }
                guard !c.bridges.contains(where: { $0.name == v }) else { throw ConfigError("connection \(v) is defined twice") }
                c.bridges.append(BridgeConfig(name: v, hostname: Configuration.hostname()))
            },
            bridgeKey("address") { b, v throws(ConfigError) in
                // HOST[:PORT]; mosquitto also allows several addresses (round robin): the first is used.
                let first = String(v.split(separator: " ").first ?? "")
                if let colon = first.lastIndex(of: ":") {
                    guard let port = UInt16(first[first.index(after: colon)...]), port > 0 else { throw ConfigError("address needs HOST[:PORT], got '\(v)'") }
                    b.host = String(first[..<colon]); b.port = port
                } else {
                    b.host = first
                }
                guard !b.host.isEmpty else { throw ConfigError("address needs HOST[:PORT], got '\(v)'") }
            },
            bridgeKey("topic") { b, v throws(ConfigError) in
                do throws(BridgeConfigError) { b.topics.append(try BridgeConfig.Topic(parsing: v)) } catch { throw ConfigError(error.description) }
            },
            bridgeKey("remote_clientid") { b, v throws(ConfigError) in b.remoteClientID = try nonEmpty("remote_clientid", v) },
            bridgeKey("local_clientid") { b, v throws(ConfigError) in b.localClientID = try nonEmpty("local_clientid", v) },
            bridgeKey("remote_username") { b, v throws(ConfigError) in b.remoteUsername = v },
            bridgeKey("remote_password") { b, v throws(ConfigError) in b.remotePassword = v },
            bridgeKey("cleansession") { b, v throws(ConfigError) in b.cleanSession = try flag("cleansession", v) },
            bridgeKey("bridge_protocol_version") { b, v throws(ConfigError) in
                switch v {
                case "mqttv311": b.protocolVersion = .v3_1_1
                case "mqttv31": b.protocolVersion = .v3_1
                case "mqttv50": b.protocolVersion = .v5
                default: throw ConfigError("bridge_protocol_version is mqttv31, mqttv311 or mqttv50, got '\(v)'")
                }
            },
            bridgeKey("try_private") { b, v throws(ConfigError) in b.tryPrivate = try flag("try_private", v) },
            bridgeKey("keepalive_interval") { b, v throws(ConfigError) in
                guard let n = UInt16(v), n == 0 || n >= 5 else { throw ConfigError("keepalive_interval is 0 or 5...65535 seconds, got '\(v)'") }
                b.keepAlive = n
            },
            bridgeKey("restart_timeout") { b, v throws(ConfigError) in
                // `restart_timeout CONSTANT` or `restart_timeout BASE CAP` (mosquitto 2.0).
                let parts = v.split(separator: " ").compactMap { Double($0) }
                guard (parts.count == 1 || parts.count == 2), parts.allSatisfy({ $0 >= 1 }) else {
                    throw ConfigError("restart_timeout needs SECONDS or BASE CAP (each at least 1), got '\(v)'")
                }
                b.restartBase = parts[0]
                b.restartCap = parts.count == 2 ? parts[1] : parts[0]
            },
            bridgeKey("notifications") { b, v throws(ConfigError) in b.notifications = try flag("notifications", v) },
            bridgeKey("notification_topic") { b, v throws(ConfigError) in b.notificationTopic = try nonEmpty("notification_topic", v) },
            bridgeKey("bridge_cafile") { b, v throws(ConfigError) in b.cafile = try nonEmpty("bridge_cafile", v) },
            bridgeKey("bridge_certfile") { b, v throws(ConfigError) in b.certfile = try nonEmpty("bridge_certfile", v) },
            bridgeKey("bridge_keyfile") { b, v throws(ConfigError) in b.keyfile = try nonEmpty("bridge_keyfile", v) },
            bridgeKey("bridge_insecure") { b, v throws(ConfigError) in b.insecure = try flag("bridge_insecure", v) },
            // Webhooks (EMQX's event hooks; docs/configuration.md, "Webhooks")
            custom("webhook") { c, v throws(ConfigError) in
                guard !v.isEmpty, !v.contains(" "), !v.contains("\""), !v.contains("\\") else { throw ConfigError("webhook needs a name without spaces or quotes, got '\(v)'") }
                guard !c.webhooks.contains(where: { $0.name == v }) else { throw ConfigError("webhook \(v) is defined twice") }
                c.webhooks.append(WebhookConfig(name: v))
            },
            webhookKey("webhook_url") { h, v throws(ConfigError) in
                guard h.setURL(v) else { throw ConfigError("webhook_url needs http://HOST[:PORT][/PATH] (IPv4 or localhost, plain HTTP), got '\(v)'") }
            },
            webhookKey("webhook_events") { h, v throws(ConfigError) in
                var kinds: UInt8 = 0
                for name in v.split(separator: ",") {
                    let trimmed = name.trimmingCharacters(in: " ")
                    guard let kind = BrokerEvent.Kind(name: trimmed) else {
                        throw ConfigError("webhook_events: unknown event '\(trimmed)' (known: \(BrokerEvent.Kind.allCases.map(\.name).joined(separator: ", ")))")
                    }
                    kinds |= kind.rawValue
                }
                guard kinds != 0 else { throw ConfigError("webhook_events needs at least one event") }
                h.events = kinds
            },
            webhookKey("webhook_topic") { h, v throws(ConfigError) in
                guard TopicValidation.isValidTopicFilter(v) else { throw ConfigError("webhook_topic needs a topic filter, got '\(v)'") }
                h.topicFilter = v
            },
            webhookKey("webhook_header") { h, v throws(ConfigError) in
                guard let colon = v.firstIndex(of: ":"), colon != v.startIndex,
                      !v[..<colon].contains(" "), !v.contains("\r"), !v.contains("\n") else {
                    throw ConfigError("webhook_header needs 'NAME: VALUE', got '\(v)'")
                }
                h.headers.append((String(v[..<colon]), String(v[v.index(after: colon)...]).trimmingCharacters(in: " ")))
            },
            webhookKey("webhook_timeout") { h, v throws(ConfigError) in
                guard let s = Double(v), s > 0, s <= 300 else { throw ConfigError("webhook_timeout needs seconds (0-300], got '\(v)'") }
                h.timeoutSeconds = s
            },
            // Cluster (docs/architecture.md, "Cluster")
            custom("cluster_name") { c, v throws(ConfigError) in
                guard !v.isEmpty, !v.contains("/"), v.utf8.count <= 200 else { throw ConfigError("cluster_name needs a name without '/', got '\(v)'") }
                c.clusterName = v
            },
            custom("node_name") { c, v throws(ConfigError) in
                guard !v.isEmpty, !v.contains("/"), !v.contains(" "), v.utf8.count <= 200 else {
                    throw ConfigError("node_name needs a name without '/' or spaces, got '\(v)'")
                }
                c.nodeName = v
            },
            custom("cluster_listener") { c, v throws(ConfigError) in
                // HOST:PORT (or PORT alone: 127.0.0.1), what the node listens on and advertises.
                if let colon = v.lastIndex(of: ":") {
                    guard let port = UInt16(v[v.index(after: colon)...]) else { throw ConfigError("cluster_listener needs HOST:PORT, got '\(v)'") }
                    let host = String(v[..<colon])
                    guard !host.isEmpty, host != "0.0.0.0" else {
                        throw ConfigError("cluster_listener needs the address other nodes reach this one at (not 0.0.0.0), got '\(v)'")
                    }
                    c.clusterListener = (host == "localhost" ? "127.0.0.1" : host, port)
                } else {
                    guard let port = UInt16(v) else { throw ConfigError("cluster_listener needs HOST:PORT, got '\(v)'") }
                    c.clusterListener = ("127.0.0.1", port)
                }
            },
            custom("etcd_endpoints") { c, v throws(ConfigError) in
                guard let endpoints = ClusterConfig.parseEndpoints(v) else {
                    throw ConfigError("etcd_endpoints needs http://HOST:PORT[,http://HOST:PORT...] (IPv4, plain HTTP), got '\(v)'")
                }
                c.etcdEndpoints = endpoints
            },
            integer("cluster_lease_ttl", \.clusterLeaseTTL, 2...3600),
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

    /// A key of the last `webhook` block.
    static func webhookKey(_ name: String, _ set: @escaping (inout WebhookConfig, String) throws(ConfigError) -> Void) -> ConfigKey {
        custom(name) { c, v throws(ConfigError) in
            guard !c.webhooks.isEmpty else { throw ConfigError("\(name) belongs to a webhook: put it after a 'webhook NAME' line") }
            try set(&c.webhooks[c.webhooks.count - 1], v)
        }
    }

    /// A key of the last `connection` block (a bridge).
    static func bridgeKey(_ name: String, _ set: @escaping (inout BridgeConfig, String) throws(ConfigError) -> Void) -> ConfigKey {
        custom(name) { c, v throws(ConfigError) in
            guard !c.bridges.isEmpty else { throw ConfigError("\(name) belongs to a bridge: put it after a 'connection NAME' line") }
            try set(&c.bridges[c.bridges.count - 1], v)
        }
    }

    static func nonEmpty(_ name: String, _ v: String) throws(ConfigError) -> String {
        guard !v.isEmpty else { throw ConfigError("\(name) needs a value") }
        return v
    }

    static func flag(_ name: String, _ v: String) throws(ConfigError) -> Bool {
        switch v {
        case "true": return true
        case "false": return false
        default: throw ConfigError("\(name) is true or false, got '\(v)'")
        }
    }

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

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var t = Substring(self)
        while t.first == set { t = t.dropFirst() }
        while t.last == set { t = t.dropLast() }
        return String(t)
    }
}
