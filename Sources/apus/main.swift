// The `apus` executable: parses flags and the config file, starts the shard group, and stops it
// cleanly on SIGINT or SIGTERM.

import ArgumentParser
import Auth
import Broker
import CApusSys
import Configuration
import Logging
import Shards
@preconcurrency import Glibc

struct Apus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus",
        abstract: "A sharded, thread-per-core MQTT 3.1/3.1.1/5.0 broker on io_uring.")

    @Option(name: .long, help: "TCP port to listen on (default 1883); the `port` key.")
    var port: UInt16?

    @Option(name: .long, help: "IPv4 address to bind (default 127.0.0.1); the `bind_address` key.")
    var bind: String?

    @Option(name: .long, help: "Number of shards (threads, one ring each); default: one per CPU.")
    var shards: Int?

    @Option(name: .long, help: "Configuration file (see docs/configuration.md).")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(name: .long, help: "Seconds a connection may stay open without sending CONNECT (default 10).")
    var connectTimeout: Double?

    @Option(name: .long, help: "Largest packet accepted from a client, in bytes (default 1048576; 0 = the protocol's 268435460).")
    var maxPacketSize: Int?

    @Option(name: .long, help: "Maximum client connections (sessions) per broker; 0 = unlimited.")
    var maxConnections: Int?

    @Option(name: .long, help: "Unacknowledged outbound QoS 1/2 messages per client (default 20).")
    var maxInflightMessages: Int?

    @Option(name: .long, help: "Outbound QoS 1/2 messages queued per client beyond the inflight window (default 1000).")
    var maxQueuedMessages: Int?

    @Option(name: .long, help: "Largest PUBLISH payload accepted, in bytes; 0 = no limit (default).")
    var messageSizeLimit: Int?

    @Option(name: .long, help: "How a shared subscription group picks a member: round_robin (default), random, hash_clientid.")
    var sharedSubscriptionStrategy: String?

    @Option(name: .long, help: "Cluster to join (no cluster when absent); the `cluster_name` key.")
    var clusterName: String?

    @Option(name: .long, help: "This node's name, unique in the cluster; the `node_name` key.")
    var nodeName: String?

    @Option(name: .long, help: "HOST:PORT the node links listen on and other nodes connect to; the `cluster_listener` key.")
    var clusterListener: String?

    @Option(name: .long, help: "etcd client URLs, comma-separated (http://127.0.0.1:2379); the `etcd_endpoints` key.")
    var etcdEndpoints: String?

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Any configuration key, as in the file (repeatable; after the named flags).", valueName: "KEY=VALUE"))
    var settings: [String] = []

    /// The named flags as configuration keys (flags > environment > file).
    var flagKeys: [(key: String, value: String?)] {
        [("port", port.map { "\($0)" }), ("bind_address", bind), ("shards", shards.map { "\($0)" }), ("log_level", logLevel),
         ("connect_timeout", connectTimeout.map { "\($0)" }), ("max_packet_size", maxPacketSize.map { "\($0)" }),
         ("max_connections", maxConnections.map { "\($0)" }), ("max_inflight_messages", maxInflightMessages.map { "\($0)" }),
         ("max_queued_messages", maxQueuedMessages.map { "\($0)" }), ("message_size_limit", messageSizeLimit.map { "\($0)" }),
         ("shared_subscription_strategy", sharedSubscriptionStrategy), ("cluster_name", clusterName), ("node_name", nodeName),
         ("cluster_listener", clusterListener), ("etcd_endpoints", etcdEndpoints)]
    }

    @Option(name: .customLong("scram-sha-256-entry"), help: ArgumentHelp(
        "Print a password_file line with a SCRAM-SHA-256 verifier for USER (password read from standard input), then exit.",
        valueName: "USER"))
    var scramSha256Entry: String?

    @Option(name: .customLong("import-mosquitto"), help: ArgumentHelp(
        "Import Mosquitto's persistence file (retained messages, persistent sessions) into the store at persistence_location (which must hold none), print a verification summary, then exit.",
        valueName: "mosquitto.db"))
    var importMosquitto: String?

    func run() throws {
        if let user = scramSha256Entry {
            guard let password = readLine(strippingNewline: true), !password.isEmpty else {
                throw ValidationError("no password on standard input")
            }
            print(PasswordFile.scramSHA256Entry(user: user, password: Array(password.utf8)))
            return
        }
        var configuration = Configuration()
        // Precedence: flags > environment (APUS_<KEY>) > file > built-in defaults.
        if let path = config { try configuration.load(file: path) }
        let unknownVariables = try configuration.applyEnvironment(Configuration.processEnvironment())
        for (key, value) in flagKeys {
            if let value { try configuration.apply(key: key, value: value, at: "--" + String(key.map { $0 == "_" ? "-" : $0 })) }
        }
        for setting in settings {
            guard let eq = setting.firstIndex(of: "=") else { throw ConfigError("--set \(setting): KEY=VALUE") }
            try configuration.apply(key: String(setting[..<eq]), value: String(setting[setting.index(after: eq)...]), at: "--set")
        }

        if let source = importMosquitto {
            let r = try StoreImport.importMosquitto(source, into: configuration.store)
            print("imported \(source) into \(r.file)")
            print("  retained messages      \(r.retained)")
            print("  persistent sessions    \(r.sessions) (\(r.subscriptions) subscriptions, \(r.messages) queued or in-flight messages, \(r.awaitingRelease) QoS 2 ids awaiting PUBREL)")
            if r.released > 0 { print("  inbound QoS 2 messages Mosquitto held until PUBREL, queued for matching sessions: \(r.released)") }
            if r.skipped > 0 { print("  skipped (expired, or naming what the file does not hold): \(r.skipped)") }
            print("  read back              \(r.readBackRetained) retained, \(r.readBackSessions) sessions, \(r.readBackMessages) messages")
            print("  checksum               imported \(hex(r.imported)), second read of the source \(hex(r.secondRead)), store read back \(hex(r.readBack))")
            print(r.verified ? "verified: the store holds what the file holds" : "VERIFICATION FAILED")
            if !r.verified { throw ExitCode.failure }
            return
        }

        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info  // the key checked the name
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "apus")
        for name in unknownVariables {
            logger.warning("environment variable \(name) names no setting (ignored); see docs/configuration.md")
        }

        // Signals are taken synchronously by this thread; shard threads inherit the blocked mask.
        signal(SIGPIPE, SIG_IGN)
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGTERM)
        sigaddset(&mask, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &mask, nil)

        var groupConfig = try configuration.groupConfig(availableCPUs: Int(apus_available_cpus()),
                                                        onlineCPUs: sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let shardCount = groupConfig.shards
        if let skip = getenv("APUS_RING_SETUP_SKIP").flatMap({ Int(String(cString: $0)) }) { groupConfig.ringSetupsSkipped = skip }
        if let stall = getenv("APUS_FAULT_STALL_SHARD").flatMap({ Int(String(cString: $0)) }) {
            groupConfig.faultStallShard = stall
            groupConfig.faultStallAfterSeconds = getenv("APUS_FAULT_STALL_AFTER").flatMap({ Double(String(cString: $0)) }) ?? 0
            logger.warning("fault injection: shard \(stall) will stop ticking after \(groupConfig.faultStallAfterSeconds) s")
        }
        if let delay = getenv("APUS_FAULT_STORE_WRITE_DELAY_MS").flatMap({ UInt64(String(cString: $0)) }) {
            groupConfig.faultStoreWriteDelayNanoseconds = delay * 1_000_000
            logger.warning("fault injection: the store's writes wait \(delay) ms")
        }
        let group = try ShardGroup(config: groupConfig, logger: logger)
        try group.start()
        let addresses = group.boundListeners.map { $0.transport == .plain ? $0.address : "\($0.address) (\($0.transport.name))" }.joined(separator: ", ")
        logger.info("apus listening on \(addresses) with \(shardCount) shard(s)")
        if let http = groupConfig.httpListener, let port = group.httpPort {
            logger.info("HTTP API and metrics on http://\(http.host):\(port)/")
        }

        // systemd (Type=notify): ready now that every shard serves and every listener is bound.
        let systemd = SystemdNotifier()
        systemd.notify("READY=1\nSTATUS=listening on \(addresses) with \(shardCount) shard(s)\nMAINPID=\(getpid())")
        var received: Int32 = 0
        var watchdogWithheld = false
        // The pings keep their schedule whatever signals arrive between them (a SIGHUP does not
        // restart the wait: reloads more often than the period would otherwise starve systemd).
        var nextPing = apus_monotonic_ns() + UInt64((systemd.watchdogInterval ?? 0) * 1e9)
        while true {
            if let interval = systemd.watchdogInterval {
                let now = apus_monotonic_ns()
                if now >= nextPing {
                    // Ping only while every shard's loop ticks, so a shard stuck in a loop makes
                    // systemd restart the process.
                    let stalled = group.stalledShards(now: now)
                    if stalled.isEmpty {
                        systemd.notify("WATCHDOG=1")
                        if watchdogWithheld { logger.notice("every shard ticks again: watchdog pings resumed") }
                        watchdogWithheld = false
                    } else if !watchdogWithheld {
                        logger.error("shard(s) \(stalled) stopped ticking: watchdog pings withheld (systemd will restart apus)")
                        watchdogWithheld = true
                    }
                    nextPing = now + UInt64(interval * 1e9)
                }
                // Wait for a signal until the next ping is due (half the watchdog period apart).
                let wait = nextPing - min(nextPing, apus_monotonic_ns())
                var timeout = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
                let signal = sigtimedwait(&mask, nil, &timeout)
                if signal < 0 { continue }
                received = signal
            } else {
                sigwait(&mask, &received)
            }
            guard received == SIGHUP else { break }
            // mosquitto's SIGHUP: reload the password and ACL files; a broken file keeps the old ones.
            do {
                group.reloadSecurity(try configuration.securitySettings())
                logger.notice("SIGHUP: password_file and acl_file reloaded")
            } catch {
                logger.error("SIGHUP: reload failed, keeping the previous users and ACL: \(error)")
            }
            // Certificates, keys and CRLs of the TLS listeners: new connections get the new ones.
            let tls = group.reloadTLS()
            for problem in tls.errors { logger.error("SIGHUP: TLS reload failed, keeping the previous certificates: \(problem)") }
            if tls.reloaded > 0 { logger.notice("SIGHUP: TLS certificates reloaded for \(tls.reloaded) listener(s)") }
        }
        logger.info("signal \(received): stopping")
        systemd.notify("STOPPING=1")
        group.stop()
        logger.info("stopped")
    }
}

Apus.main()

func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
