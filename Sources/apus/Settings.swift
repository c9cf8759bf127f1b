// Broker settings from built-in defaults, an optional config file, and flags (which win).
// The file format is mosquitto's: one `key value` per line, `#` starts a comment (at the line's
// start or after whitespace).

import ApusCrypto
import Auth
import Broker
import Codec
import HTTPAPI
@preconcurrency import Glibc

struct Settings {
    var port: UInt16 = 1883
    var bind = "127.0.0.1"
    /// `listener` lines after the first (mosquitto allows several).
    var extraListeners: [(host: String, port: UInt16)] = []
    var listenerLines = 0
    var tcpNoDelay = true
    /// Seconds after which a persistent session that would otherwise never expire does (0 = never).
    var persistentClientExpiration: UInt32 = 0
    /// Seconds between $SYS updates (0 = none).
    var sysInterval = 10
    var httpListener: (host: String, port: UInt16)? = nil
    var httpCredentials: HTTPCredentials? = nil
    var shards: Int? = nil
    var logLevel = "info"
    var connectTimeout = 10.0
    var maxPacketSize = BrokerConfig.defaultMaxPacketSize
    var partialPacketMemoryLimit = 64 << 20
    var subscriberStallTimeout = 10.0
    var maxConnections = 0
    var maxInflightMessages = 20
    var maxQueuedMessages = 1000
    var messageSizeLimit = 0
    var maxTopicAlias = 10
    var maxKeepAlive = 65_535
    var maxTopicAliasOutbound = 64
    var responseInformation = "response/%c"
    var receiveMaximum = 65_535
    var maxOutboundBuffer = 64 << 20
    var matchCacheEntries = 1024
    var retainAvailable = true
    var maxQoS = 2
    var wildcardSubscriptions = true
    var sharedSubscriptions = true
    var subscriptionIdentifiers = true
    var passwordFile: String? = nil
    var aclFile: String? = nil
    var allowAnonymous = true
    var sharedSubscriptionStrategy = SharedSubscriptionStrategy.roundRobin

    /// Reads `key value` lines. Unknown keys are an error so that typos do not pass silently.
    mutating func load(file path: String) throws {
        guard let handle = fopen(path, "r") else { throw SettingsError("cannot open \(path)") }
        defer { fclose(handle) }
        var lineNumber = 0
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, handle) >= 0 {
            lineNumber += 1
            let text = String(cString: line!)
            let content = Settings.withoutComment(text)
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
            guard let key = words.first else { continue }
            let value = words.dropFirst().joined(separator: " ")
            try apply(key: String(key), value: value, at: "\(path):\(lineNumber)")
        }
    }

    /// The line up to its comment: a `#` at the start of the line or after a space or tab (so a
    /// value such as a path may contain `#`, as in mosquitto, where only whole-line comments exist).
    static func withoutComment(_ line: String) -> Substring {
        var previous: Character = " "
        for i in line.indices {
            let c = line[i]
            if c == "#" && (previous == " " || previous == "\t") { return line[..<i] }
            previous = c
        }
        return line[...]
    }

    mutating func apply(key: String, value: String, at location: String) throws {
        func number<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
            guard let v = T(value) else { throw SettingsError("\(location): \(key) needs an integer, got '\(value)'") }
            return v
        }
        func duration() throws -> UInt32 {
            // mosquitto's form: a number and a unit, h(ours) d(ays) w(eeks) m(onths) y(ears); plain seconds too.
            let units: [Character: UInt64] = ["s": 1, "h": 3600, "d": 86_400, "w": 604_800, "m": 2_592_000, "y": 31_536_000]
            var digits = Substring(value)
            var unit: UInt64 = 1
            if let last = digits.last, let u = units[last] { unit = u; digits = digits.dropLast() }
            guard let n = UInt64(digits), n * unit < UInt64(UInt32.max) else {
                throw SettingsError("\(location): \(key) needs a duration like 3600, 12h, 2d, 1w, got '\(value)'")
            }
            return UInt32(n * unit)
        }
        func flag() throws -> Bool {
            guard value == "true" || value == "false" else { throw SettingsError("\(location): \(key) is true or false, got '\(value)'") }
            return value == "true"
        }
        func address(defaultHost: String) throws -> (host: String, port: UInt16) {
            let parts = value.split(separator: " ")
            guard parts.count <= 2, let first = parts.first, let p = UInt16(first) else {
                throw SettingsError("\(location): \(key) needs PORT [ADDRESS], got '\(value)'")
            }
            return (parts.count > 1 ? String(parts[1]) : defaultHost, p)
        }
        switch key {
        case "port":
            guard let p = UInt16(value) else { throw SettingsError("\(location): bad port '\(value)'") }
            port = p
        case "listener":
            // `listener PORT [ADDRESS]` as in mosquitto; several are allowed. Without ADDRESS it
            // binds every interface, as mosquitto does (only the built-in default is 127.0.0.1).
            let (host, p) = try address(defaultHost: "0.0.0.0")
            listenerLines += 1
            if listenerLines == 1 { port = p; bind = host } else { extraListeners.append((host, p)) }
        case "http_api_key":
            guard let credentials = HTTPCredentials(parsing: value) else {
                throw SettingsError("\(location): http_api_key needs KEY:SECRET")
            }
            httpCredentials = credentials
        case "http_listener":
            // Loopback unless an address is given: the publish API is open without http_api_key.
            httpListener = try address(defaultHost: "127.0.0.1")
        case "set_tcp_nodelay": tcpNoDelay = try flag()
        case "sys_interval": sysInterval = try number(Int.self)
        case "persistent_client_expiration": persistentClientExpiration = try duration()
        case "bind_address": bind = value
        case "shards": shards = try number(Int.self)
        case "log_level": logLevel = value
        case "connect_timeout": 
            guard let v = Double(value) else { throw SettingsError("\(location): connect_timeout needs seconds") }
            connectTimeout = v
        case "max_packet_size":
            // 0 is mosquitto's "no limit": the protocol's maximum.
            maxPacketSize = try number(Int.self)
            if maxPacketSize == 0 { maxPacketSize = 268_435_460 }
        case "partial_packet_memory_limit": partialPacketMemoryLimit = try number(Int.self)
        case "subscriber_stall_timeout":
            guard let v = Double(value), v >= 0 else { throw SettingsError("\(location): subscriber_stall_timeout needs seconds (0 = never)") }
            subscriberStallTimeout = v
        case "max_connections": maxConnections = try number(Int.self)
        case "max_inflight_messages": maxInflightMessages = try number(Int.self)
        case "max_queued_messages": maxQueuedMessages = try number(Int.self)
        case "message_size_limit": messageSizeLimit = try number(Int.self)
        case "max_topic_alias": maxTopicAlias = try number(Int.self)
        case "max_keepalive": maxKeepAlive = try number(Int.self)
        case "max_topic_alias_outbound": maxTopicAliasOutbound = try number(Int.self)
        case "response_information": responseInformation = value
        case "receive_maximum": receiveMaximum = try number(Int.self)
        case "max_outbound_buffer": maxOutboundBuffer = try number(Int.self)
        case "match_cache_entries": matchCacheEntries = try number(Int.self)
        case "retain_available": retainAvailable = try flag()
        case "max_qos": maxQoS = try number(Int.self)
        case "wildcard_subscriptions": wildcardSubscriptions = try flag()
        case "shared_subscriptions": sharedSubscriptions = try flag()
        case "subscription_identifiers": subscriptionIdentifiers = try flag()
        case "password_file": passwordFile = value
        case "acl_file": aclFile = value
        case "allow_anonymous": allowAnonymous = try flag()
        case "shared_subscription_strategy":
            guard let strategy = SharedSubscriptionStrategy(rawValue: value) else {
                throw SettingsError("\(location): shared_subscription_strategy is round_robin, random or hash_clientid")
            }
            sharedSubscriptionStrategy = strategy
        default:
            throw SettingsError("\(location): unknown setting '\(key)'", unknownKey: true)
        }
    }

    /// Variables named APUS_… that are not configuration keys but the runtime's own switches.
    static let runtimeVariables: Set<String> = ["APUS_RING_SETUP_SKIP", "APUS_FAULT_STALL_SHARD", "APUS_FAULT_STALL_AFTER", "APUS_BIN"]

    /// Every configuration key from the environment: `APUS_<KEY>` (the key in capitals, e.g.
    /// APUS_MAX_PACKET_SIZE=4096, APUS_LISTENER="1883 0.0.0.0"). Applied after the file and before
    /// the flags, so flags > environment > file. Returns the APUS_ names that are no key (the
    /// caller warns: a typo should not pass silently, but other tools' variables may share the prefix).
    mutating func applyEnvironment(_ variables: [(name: String, value: String)]) throws -> [String] {
        var unknown: [String] = []
        for (name, value) in variables where name.hasPrefix("APUS_") && !Settings.runtimeVariables.contains(name) {
            let key = String(name.dropFirst(5)).lowercased()
            do {
                try apply(key: key, value: value, at: "environment \(name)")
            } catch let error as SettingsError where error.unknownKey {
                unknown.append(name)
            }
        }
        return unknown
    }

    /// The process environment as (name, value) pairs.
    static func processEnvironment() -> [(name: String, value: String)] {
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

    func validate() throws {
        if let shards, shards < 1 || shards > 64 { throw SettingsError("shards must be 1...64") }
        if connectTimeout <= 0 { throw SettingsError("connect timeout must be positive") }
        if maxPacketSize < 2 || maxPacketSize > 268_435_460 { throw SettingsError("max_packet_size must be 2...268435460") }
        if partialPacketMemoryLimit < 0 { throw SettingsError("partial_packet_memory_limit must be >= 0") }
        if maxConnections < 0 { throw SettingsError("max_connections must be >= 0") }
        if maxInflightMessages < 1 || maxInflightMessages > 65_535 { throw SettingsError("max_inflight_messages must be 1...65535") }
        if maxQueuedMessages < 0 { throw SettingsError("max_queued_messages must be >= 0") }
        if messageSizeLimit < 0 { throw SettingsError("message_size_limit must be >= 0") }
        if maxTopicAlias < 0 || maxTopicAlias > 65_535 { throw SettingsError("max_topic_alias must be 0...65535") }
        if maxTopicAliasOutbound < 0 || maxTopicAliasOutbound > 65_535 { throw SettingsError("max_topic_alias_outbound must be 0...65535") }
        if sysInterval < 0 { throw SettingsError("sys_interval must be >= 0") }
        if maxOutboundBuffer < 65_536 { throw SettingsError("max_outbound_buffer must be at least 65536") }
        if matchCacheEntries < 0 || matchCacheEntries > 1 << 20 { throw SettingsError("match_cache_entries must be 0...1048576") }
        if receiveMaximum < 1 || receiveMaximum > 65_535 { throw SettingsError("receive_maximum must be 1...65535") }
        if maxQoS < 0 || maxQoS > 2 { throw SettingsError("max_qos must be 0, 1 or 2") }
        if maxKeepAlive < 10 || maxKeepAlive > 65_535 { throw SettingsError("max_keepalive must be 10...65535") }
    }

    /// Users and ACL from password_file and acl_file (read at start and again on SIGHUP; errors
    /// name the file and line).
    func securitySettings() throws -> SecuritySettings {
        var security = SecuritySettings(passwords: nil, authenticators: [:], acl: nil)
        if let aclFile {
            do {
                security.acl = try AccessControlList(text: Self.readText(aclFile, what: "acl_file"))
            } catch {
                throw SettingsError("\(aclFile): \(error)")
            }
        }
        if let passwordFile {
            let passwords = try Self.readPasswordFile(passwordFile)
            security.passwords = passwords
            // Enhanced authentication over the same users: SCRAM-SHA-512 serves mosquitto's $7$
            // entries, SCRAM-SHA-256 the RFC 5803 entries.
            security.authenticators["SCRAM-SHA-256"] = ScramAuthenticator<SHA256>(passwordFile: passwords)
            security.authenticators["SCRAM-SHA-512"] = ScramAuthenticator<SHA512>(passwordFile: passwords)
        }
        return security
    }

    /// The broker settings, users and ACL included.
    func brokerConfig(shards: Int) throws -> BrokerConfig {
        var config = BrokerConfig()
        config.allowAnonymous = allowAnonymous
        config.receiveMaximum = UInt16(receiveMaximum)
        config.maxOutboundBuffer = maxOutboundBuffer
        config.matchCacheEntries = matchCacheEntries
        config.persistentClientExpiration = persistentClientExpiration
        config.retainAvailable = retainAvailable
        config.maximumQoS = QoS(rawValue: UInt8(maxQoS)) ?? .exactlyOnce
        config.wildcardSubscriptionsAvailable = wildcardSubscriptions
        config.sharedSubscriptionsAvailable = sharedSubscriptions
        config.subscriptionIdentifiersAvailable = subscriptionIdentifiers
        let security = try securitySettings()
        config.acl = security.acl
        config.passwords = security.passwords
        config.authenticators = security.authenticators
        config.connectTimeoutSeconds = connectTimeout
        config.maxPacketSize = maxPacketSize
        config.partialPacketMemoryLimit = partialPacketMemoryLimit
        config.subscriberStallTimeoutSeconds = subscriberStallTimeout
        config.maxInflightMessages = maxInflightMessages
        config.maxQueuedMessages = maxQueuedMessages
        config.messageSizeLimit = messageSizeLimit
        config.topicAliasMaximum = UInt16(maxTopicAlias)
        config.maxKeepAlive = UInt16(maxKeepAlive)
        config.outboundTopicAliasMaximum = UInt16(maxTopicAliasOutbound)
        config.responseInformation = responseInformation
        config.sharedSubscriptionStrategy = sharedSubscriptionStrategy
        if maxConnections > 0 {
            // Connections land on shards at random (SO_REUSEPORT), so the limit is split evenly.
            config.maxConnectionsPerShard = max(1, (maxConnections + shards - 1) / shards)
        }
        return config
    }
}

extension Settings {
    static func readText(_ path: String, what: String) throws -> String {
        guard let handle = fopen(path, "r") else { throw SettingsError("cannot open \(what) \(path)") }
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

    static func readPasswordFile(_ path: String) throws -> PasswordFile {
        let text = try readText(path, what: "password_file")
        do {
            return try PasswordFile(text: text)
        } catch {
            throw SettingsError("\(path): \(error)")
        }
    }
}

struct SettingsError: Error, CustomStringConvertible {
    var description: String
    var unknownKey = false
    init(_ description: String, unknownKey: Bool = false) {
        self.description = description
        self.unknownKey = unknownKey
    }
}
