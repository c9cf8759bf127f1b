// The keys of bridges (mosquitto's `connection` blocks), webhooks (EMQX's event hooks) and the
// cluster: rows of the one key table (ConfigKeys.swift), kept in their own file.

import Bridge
import Broker
import Codec
import Shards

extension ConfigKey {
    /// Bridges, webhooks and the cluster, in the order docs/configuration.md lists them.
    static var integrationKeys: [ConfigKey] {
        [
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
            integer("bridge_max_inflight_messages", \.group.broker.bridgeInflightMessages, 1...65_535),
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
        ]
    }

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
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var t = Substring(self)
        while t.first == set { t = t.dropFirst() }
        while t.last == set { t = t.dropLast() }
        return String(t)
    }
}
