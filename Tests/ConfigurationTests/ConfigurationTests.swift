// The configuration keys: defaults from BrokerConfig and ShardGroupConfig, the file format,
// listener blocks (keys after a `listener` line apply to it), the HTTP listener, precedence of the
// environment, range checks that name their source, and that every documented key has a row.

import XCTest
import Broker
import Shards
import Transport
@testable import Configuration

final class ConfigurationTests: XCTestCase {
    func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "apus-config-\(UInt64.random(in: 0 ... .max)).conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testDefaultsAreTheModulesDefaults() throws {
        let config = try Configuration().groupConfig(availableCPUs: 3)
        XCTAssertEqual(config.shards, 3)
        XCTAssertEqual(config.listeners, [ListenerConfig(host: "127.0.0.1", port: 1883)])
        XCTAssertNil(config.httpListener)
        XCTAssertEqual(config.broker.maxPacketSize, BrokerConfig().maxPacketSize)
        XCTAssertEqual(config.broker.maxInflightMessages, BrokerConfig().maxInflightMessages)
        XCTAssertEqual(config.sysIntervalSeconds, ShardGroupConfig(shards: 1).sysIntervalSeconds)
    }

    func testFileWithListenerBlocksAndComments() throws {
        var c = Configuration()
        try c.load(file: try file("""
            # MQTT on every interface, and metrics on loopback
            listener 1884            # the first line replaces the default listener
            protocol mqtt
            listener 8081 127.0.0.1
            protocol http
            listener 1885 10.0.0.1
            max_inflight_messages 7
            persistent_client_expiration 2d
            acl_file /etc/apus/acl#2
            """))
        XCTAssertEqual(c.aclFile, "/etc/apus/acl#2", "a # inside a word is not a comment")
        c.aclFile = nil
        let config = try c.groupConfig(availableCPUs: 2)
        XCTAssertEqual(config.listeners, [ListenerConfig(host: "0.0.0.0", port: 1884), ListenerConfig(host: "10.0.0.1", port: 1885)])
        XCTAssertEqual(config.httpListener, ListenerConfig(host: "127.0.0.1", port: 8081, protocol: .http))
        XCTAssertEqual(config.broker.maxInflightMessages, 7)
        XCTAssertEqual(config.broker.persistentClientExpiration, 2 * 86_400)
    }

    func testPortAndBindAddressSetTheFirstListener() throws {
        var c = Configuration()
        try c.apply(key: "port", value: "1999", at: "t")
        try c.apply(key: "bind_address", value: "0.0.0.0", at: "t")
        try c.apply(key: "http_listener", value: "8080", at: "t")
        let config = try c.groupConfig(availableCPUs: 1)
        XCTAssertEqual(config.listeners, [ListenerConfig(host: "0.0.0.0", port: 1999)])
        XCTAssertEqual(config.httpListener, ListenerConfig(host: "127.0.0.1", port: 8080, protocol: .http))
    }

    func testErrorsNameTheirSourceAndTheRange() throws {
        var c = Configuration()
        let path = try file("max_qos 1\nmax_qos 3\n")
        XCTAssertThrowsError(try c.load(file: path)) { error in
            XCTAssertEqual("\(error)", "\(path):2: max_qos must be 0...2, got '3'")
        }
        XCTAssertThrowsError(try c.apply(key: "max_inflight_messages", value: "many", at: "--max-inflight-messages")) { error in
            XCTAssertEqual("\(error)", "--max-inflight-messages: max_inflight_messages needs an integer, got 'many'")
        }
        XCTAssertThrowsError(try c.apply(key: "protocol", value: "websocket", at: "x")) { error in
            XCTAssertEqual("\(error)", "x: protocol is mqtt, websockets or http, got 'websocket'")
        }
        XCTAssertThrowsError(try c.apply(key: "retain_available", value: "yes", at: "x"))
        XCTAssertThrowsError(try c.apply(key: "connect_timeout", value: "0", at: "x"))
        XCTAssertThrowsError(try c.apply(key: "max_outbound_buffer", value: "1024", at: "x"))
        XCTAssertThrowsError(try c.apply(key: "no_such_key", value: "1", at: "x")) { error in
            XCTAssertTrue((error as? ConfigError)?.unknownKey ?? false)
        }
        try c.apply(key: "max_packet_size", value: "0", at: "x")
        XCTAssertEqual(c.group.broker.maxPacketSize, 268_435_460, "0 is the protocol's maximum")
    }

    func testEnvironmentAppliesKnownKeysAndReturnsTheOthers() throws {
        var c = Configuration()
        let unknown = try c.applyEnvironment([("APUS_MAX_QUEUED_MESSAGES", "5"), ("APUS_LISTENER", "2883 0.0.0.0"),
                                              ("APUS_TYPO_KEY", "1"), ("APUS_BIN", "/x"), ("PATH", "/bin")])
        XCTAssertEqual(unknown, ["APUS_TYPO_KEY"])
        XCTAssertEqual(c.group.broker.maxQueuedMessages, 5)
        XCTAssertEqual(c.listeners, [ListenerConfig(host: "0.0.0.0", port: 2883)])
    }

    func testConnectionQuotaIsSplitOverShardsAndOnlyOneHTTPListener() throws {
        var c = Configuration()
        try c.apply(key: "max_connections", value: "5", at: "x")
        try c.apply(key: "shards", value: "2", at: "x")
        XCTAssertEqual(try c.groupConfig(availableCPUs: 8).broker.maxConnectionsPerShard, 3)
        try c.apply(key: "listener", value: "8080", at: "x")
        try c.apply(key: "listener", value: "8081", at: "x")
        try c.apply(key: "protocol", value: "http", at: "x")
        try c.apply(key: "http_listener", value: "8082", at: "x")  // replaces the http one
        XCTAssertEqual(try c.groupConfig(availableCPUs: 1).httpListener?.port, 8082)
        try c.apply(key: "listener", value: "8083", at: "x")
        try c.apply(key: "protocol", value: "http", at: "x")
        XCTAssertThrowsError(try c.groupConfig(availableCPUs: 1))
    }

    func testTLSKeysApplyToTheirListener() throws {
        var c = Configuration()
        try c.apply(key: "listener", value: "1883 127.0.0.1", at: "x")
        try c.apply(key: "listener", value: "8883", at: "x")
        try c.apply(key: "certfile", value: "/etc/apus/server.crt", at: "x")
        try c.apply(key: "keyfile", value: "/etc/apus/server.key", at: "x")
        try c.apply(key: "cafile", value: "/etc/apus/ca.crt", at: "x")
        try c.apply(key: "require_certificate", value: "true", at: "x")
        try c.apply(key: "use_identity_as_username", value: "true", at: "x")
        try c.apply(key: "tls_version", value: "tlsv1.3", at: "x")
        try c.apply(key: "ciphers_tls1.3", value: "TLS_AES_128_GCM_SHA256", at: "x")
        try c.apply(key: "tls_handshake_timeout", value: "2.5", at: "x")
        let g = try c.groupConfig(availableCPUs: 2)
        XCTAssertEqual(g.listeners.map(\.transport), [.plain, .tls])
        XCTAssertEqual(g.listeners[1].tls.cafile, "/etc/apus/ca.crt")
        XCTAssertEqual(g.listeners[1].tls.minimumVersion, .tls13)
        XCTAssertTrue(g.listeners[1].tls.useIdentityAsUsername)
        XCTAssertEqual(g.listeners[1].tls.ciphersTLS13, "TLS_AES_128_GCM_SHA256")
        XCTAssertEqual(g.tlsHandshakeTimeoutNanoseconds, 2_500_000_000)
        XCTAssertThrowsError(try c.apply(key: "tls_version", value: "sslv3", at: "x"))
        XCTAssertThrowsError(try c.apply(key: "require_certificate", value: "yes", at: "x"))
        // Settings that do not go together are refused with the reason.
        var d = Configuration()
        try d.apply(key: "listener", value: "8883", at: "x")
        try d.apply(key: "certfile", value: "/etc/apus/server.crt", at: "x")
        XCTAssertThrowsError(try d.groupConfig(availableCPUs: 1)) { XCTAssertTrue("\($0)".contains("keyfile"), "\($0)") }
        try d.apply(key: "keyfile", value: "/etc/apus/server.key", at: "x")
        try d.apply(key: "use_subject_as_username", value: "true", at: "x")
        XCTAssertThrowsError(try d.groupConfig(availableCPUs: 1)) { XCTAssertTrue("\($0)".contains("require_certificate"), "\($0)") }
        try d.apply(key: "require_certificate", value: "true", at: "x")
        XCTAssertThrowsError(try d.groupConfig(availableCPUs: 1)) { XCTAssertTrue("\($0)".contains("cafile"), "\($0)") }
    }

    func testEveryDocumentedKeyHasARowAndEveryRowIsDocumented() throws {
        // docs/configuration.md lists the keys in the table under "| key | same as |": each row's
        // first cell names one or more keys in backticks (`listener PORT [ADDRESS]`, `port PORT`).
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/configuration.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("| key | same as |") })
        var documented: Set<String> = []
        for line in lines[(start + 2)...] {
            guard line.hasPrefix("|") else { break }
            let firstCell = line.dropFirst().prefix { $0 != "|" || false }
            for match in firstCell.matches(of: /`([a-z_][a-z_0-9.]*)[ `]/) { documented.insert(String(match.1)) }
        }
        let rows = Set(ConfigKey.all.map(\.name))
        XCTAssertEqual(rows.count, ConfigKey.all.count, "one row per key")
        XCTAssertEqual(rows.subtracting(documented), [], "keys missing from docs/configuration.md")
        XCTAssertEqual(documented.subtracting(rows), [], "documented keys without a row")
    }

    func testReceiveBufferSize() throws {
        var c = Configuration()
        XCTAssertEqual(c.group.receiveBufferSize, 64 << 10, "the default")
        try c.apply(key: "receive_buffer_size", value: "16384", at: "test")
        XCTAssertEqual(c.group.receiveBufferSize, 16384)
        for bad in ["0", "1000", "4095", "6000", "524288", "64k"] {
            XCTAssertThrowsError(try c.apply(key: "receive_buffer_size", value: bad, at: "test"), bad)
        }
        XCTAssertEqual(c.group.receiveBufferSize, 16384, "a refused value changes nothing")
    }

    func testCPUAffinityPinsByDefaultOnlyOnCPUsSetAside() throws {
        var c = Configuration()
        XCTAssertFalse(try c.groupConfig(availableCPUs: 2, onlineCPUs: 2).pinThreads)  // shared with the machine
        XCTAssertTrue(try c.groupConfig(availableCPUs: 2, onlineCPUs: 8).pinThreads)   // a cpuset of 2 of 8
        try c.apply(key: "cpu_affinity", value: "true", at: "test")
        XCTAssertTrue(try c.groupConfig(availableCPUs: 2, onlineCPUs: 2).pinThreads)
        try c.apply(key: "cpu_affinity", value: "false", at: "test")
        XCTAssertFalse(try c.groupConfig(availableCPUs: 2, onlineCPUs: 8).pinThreads)
        try c.apply(key: "cpu_affinity", value: "auto", at: "test")
        XCTAssertTrue(try c.groupConfig(availableCPUs: 2, onlineCPUs: 8).pinThreads)
        XCTAssertThrowsError(try c.apply(key: "cpu_affinity", value: "yes", at: "test"))
    }
}
