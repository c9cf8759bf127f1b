// What one run of the broker is configured with, from built-in defaults, an optional file,
// APUS_<KEY> environment variables and command-line flags (later wins: flags > environment >
// file > defaults). The file format is mosquitto's: one `key value` per line, `#` starts a comment
// (at the line's start or after whitespace), and the keys after a `listener` line that are
// listener settings apply to that listener. Every key is one row of `ConfigKey.all`
// (ConfigKeys.swift); the defaults are the ones of `BrokerConfig` and `ShardGroupConfig`.

import ApusCrypto
import Auth
import Bridge
import Broker
import HTTPAPI
import Shards
import Transport
@preconcurrency import Glibc

/// A broker run's settings, as the keys set them.
public struct Configuration {
    /// The runtime's settings, the MQTT core's (`group.broker`) among them. `group.shards` is
    /// filled in by `groupConfig(availableCPUs:)`.
    public var group = ShardGroupConfig(shards: 1)
    /// `shards`; nil: one per CPU this process may use.
    public var shards: Int? = nil
    /// cpu_affinity: true pins the shards, false does not, nil (auto) pins them only when the
    /// process was given fewer CPUs than the machine has online (CPUs set aside for it).
    public var cpuAffinity: Bool? = nil
    public var logLevel = "info"
    public var passwordFile: String? = nil
    public var aclFile: String? = nil
    /// `max_connections` for the whole broker (split over the shards); 0 = unlimited.
    public var maxConnections = 0
    /// Every listener in configuration order, HTTP ones included (`groupConfig` separates them).
    /// The first is the built-in default until a `listener` line replaces it.
    public var listeners = [ListenerConfig(host: "127.0.0.1", port: 1883)]
    /// `websockets_headers_size`: one value for every WebSocket listener, as in mosquitto.
    var webSocketHeadersSize = WebSocketSettings().headersSize
    /// `tls_handshake_timeout` (ShardGroupConfig keeps nanoseconds).
    var tlsHandshakeTimeoutSeconds: Double = 10
    /// `listener` lines read so far.
    var listenerLines = 0
    /// The listener that listener keys apply to: the last `listener` line's (before any, the default one).
    var currentListener = 0
    /// The store's files (`persistence_location`, `persistence_file`, `autosave_interval`); used
    /// when `persistence` is true.
    public var store = StoreConfig(directory: "")
    /// The cluster keys (`cluster_name` turns clustering on).
    var clusterName: String? = nil
    var nodeName: String? = nil
    var clusterListener: (host: String, port: UInt16)? = nil
    var etcdEndpoints: [(host: String, port: UInt16)] = []
    var clusterLeaseTTL = 10
    /// Bridges (`connection` blocks), in configuration order.
    public var bridges: [BridgeConfig] = []
    /// Webhooks (`webhook` blocks), in configuration order.
    public var webhooks: [WebhookConfig] = []

    /// This machine's name (a bridge's default remote client id is HOSTNAME.NAME, as mosquitto's).
    static func hostname() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        let text = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.isEmpty ? "apus" : text
    }

    public init() {}

    // MARK: sources

    /// Sets `key` from its text form; errors name `location` (a file and line, a variable, a flag).
    public mutating func apply(key: String, value: String, at location: String) throws(ConfigError) {
        guard let row = ConfigKey.named(key) else {
            throw ConfigError("\(location): unknown setting '\(key)'", unknownKey: true)
        }
        do {
            try row.set(&self, value)
        } catch {
            throw ConfigError("\(location): \(error.description)")
        }
    }

    /// Reads `key value` lines. Unknown keys are an error so that typos do not pass silently.
    public mutating func load(file path: String) throws(ConfigError) {
        let text: String
        do { text = try Self.readText(path, what: "configuration file") } catch { throw error }
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let words = Self.withoutComment(Substring(line)).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let key = words.first else { continue }
            try apply(key: String(key), value: words.dropFirst().joined(separator: " "), at: "\(path):\(lineNumber)")
        }
    }

    /// The line up to its comment: a `#` at the start of the line or after a space or tab (so a
    /// value such as a path may contain `#`, as in mosquitto, where only whole-line comments exist).
    static func withoutComment(_ line: Substring) -> Substring {
        var previous: Character = " "
        for i in line.indices {
            let c = line[i]
            if c == "#" && (previous == " " || previous == "\t") { return line[..<i] }
            previous = c
        }
        return line
    }

    /// Variables named APUS_… that are not configuration keys but the runtime's own switches.
    public static let runtimeVariables: Set<String> = ["APUS_RING_SETUP_SKIP", "APUS_FAULT_STALL_SHARD", "APUS_FAULT_STALL_AFTER", "APUS_BIN"]

    /// Every configuration key from the environment: `APUS_<KEY>` (the key in capitals, e.g.
    /// APUS_MAX_PACKET_SIZE=4096, APUS_LISTENER="1883 0.0.0.0"). Applied after the file and before
    /// the flags. Returns the APUS_ names that are no key (the caller warns: a typo should not pass
    /// silently, but other tools' variables may share the prefix).
    public mutating func applyEnvironment(_ variables: [(name: String, value: String)]) throws(ConfigError) -> [String] {
        var unknown: [String] = []
        for (name, value) in variables where name.hasPrefix("APUS_") && !Self.runtimeVariables.contains(name) {
            let key = String(name.dropFirst(5)).lowercased()
            guard ConfigKey.named(key) != nil else { unknown.append(name); continue }
            try apply(key: key, value: value, at: "environment \(name)")
        }
        return unknown
    }

    /// The process environment as (name, value) pairs.
    public static func processEnvironment() -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                out.append((String(text[..<eq]), String(text[text.index(after: eq)...])))
            }
            p += 1
        }
        return out
    }

    // MARK: results

    /// The shard group's settings: the shard count resolved, the listeners split into MQTT ones
    /// and the HTTP one, the connection quota split over the shards, users and ACL loaded.
    public func groupConfig(availableCPUs: Int, onlineCPUs: Int? = nil) throws(ConfigError) -> ShardGroupConfig {
        var config = group
        config.shards = shards ?? max(1, availableCPUs)
        // Pinned shards own their CPUs: right when the CPUs were set aside for the broker (a
        // cpuset, taskset), wrong when other busy processes share them — a pinned shard then
        // waits for its CPU while another is idle (measured: docs/architecture.md, "Pinning").
        config.pinThreads = cpuAffinity ?? (availableCPUs < (onlineCPUs ?? availableCPUs))
        config.listeners = listeners.filter { $0.protocolName == .mqtt }
        for i in config.listeners.indices { config.listeners[i].webSocket.headersSize = webSocketHeadersSize }
        let http = listeners.filter { $0.protocolName == .http }
        if http.count > 1 { throw ConfigError("only one HTTP listener is supported, \(http.count) are configured") }
        if let listener = http.first { config.httpListener = listener }
        config.store = config.broker.persistence ? store : nil
        if config.listeners.isEmpty { throw ConfigError("no MQTT listener: every listener is protocol http") }
        for listener in listeners {
            if let problem = listener.tls.problem ?? listener.webSocket.problem { throw ConfigError("listener \(listener.address): \(problem)") }
            if listener.protocolName == .http && listener.tls.isEnabled {
                throw ConfigError("listener \(listener.address): TLS on the HTTP listener is not supported")
            }
        }
        config.tlsHandshakeTimeoutNanoseconds = UInt64(tlsHandshakeTimeoutSeconds * 1e9)
        for bridge in bridges {
            if let problem = bridge.problem { throw ConfigError(problem) }
        }
        config.bridges = bridges
        for hook in webhooks { if let problem = hook.problem { throw ConfigError(problem) } }
        config.webhooks = webhooks
        if let clusterName {
            guard let nodeName else { throw ConfigError("cluster_name needs node_name (unique in the cluster)") }
            guard let listener = clusterListener else { throw ConfigError("cluster_name needs cluster_listener HOST:PORT") }
            guard !etcdEndpoints.isEmpty else { throw ConfigError("cluster_name needs etcd_endpoints") }
            var cluster = ClusterConfig(clusterName: clusterName, nodeName: nodeName, listenHost: listener.host,
                                        listenPort: listener.port, etcdEndpoints: etcdEndpoints)
            cluster.leaseTTL = clusterLeaseTTL
            config.cluster = cluster
        } else if nodeName != nil || clusterListener != nil || !etcdEndpoints.isEmpty {
            throw ConfigError("node_name, cluster_listener and etcd_endpoints need cluster_name")
        }
        if maxConnections > 0 {
            // Connections land on shards at random (SO_REUSEPORT), so the limit is split evenly.
            config.broker.maxConnectionsPerShard = max(1, (maxConnections + config.shards - 1) / config.shards)
        }
        let security = try securitySettings()
        config.broker.acl = security.acl
        config.broker.passwords = security.passwords
        config.broker.authenticators = security.authenticators
        return config
    }

    /// Users and ACL from password_file and acl_file (read at start and again on SIGHUP; errors
    /// name the file and line).
    public func securitySettings() throws(ConfigError) -> SecuritySettings {
        var security = SecuritySettings(passwords: nil, authenticators: [:], acl: nil)
        if let aclFile {
            let text = try Self.readText(aclFile, what: "acl_file")
            do {
                security.acl = try AccessControlList(text: text)
            } catch {
                throw ConfigError("\(aclFile): \(error)")
            }
        }
        if let passwordFile {
            let text = try Self.readText(passwordFile, what: "password_file")
            let passwords: PasswordFile
            do {
                passwords = try PasswordFile(text: text)
            } catch {
                throw ConfigError("\(passwordFile): \(error)")
            }
            security.passwords = passwords
            // Enhanced authentication over the same users: SCRAM-SHA-512 serves mosquitto's $7$
            // entries, SCRAM-SHA-256 the RFC 5803 entries.
            security.authenticators["SCRAM-SHA-256"] = ScramAuthenticator<SHA256>(passwordFile: passwords)
            security.authenticators["SCRAM-SHA-512"] = ScramAuthenticator<SHA512>(passwordFile: passwords)
        }
        return security
    }

    static func readText(_ path: String, what: String) throws(ConfigError) -> String {
        guard let handle = fopen(path, "r") else { throw ConfigError("cannot open \(what) \(path)") }
        defer { fclose(handle) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&chunk, 1, chunk.count, handle)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A setting that cannot be read or is out of range; the text names where it came from.
public struct ConfigError: Error, CustomStringConvertible {
    public var description: String
    /// The key is not a setting (the environment only warns about those).
    public var unknownKey = false
    public init(_ description: String, unknownKey: Bool = false) {
        self.description = description
        self.unknownKey = unknownKey
    }
}
