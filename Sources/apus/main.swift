// The `apus` executable: parses flags and the config file, starts the shard group, and stops it
// cleanly on SIGINT or SIGTERM.

import ArgumentParser
import Auth
import Broker
import CApusSys
import Logging
import Shards
@preconcurrency import Glibc

struct Apus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus",
        abstract: "A sharded, thread-per-core MQTT 3.1/3.1.1/5.0 broker on io_uring.")

    @Option(name: .long, help: "TCP port to listen on (default 1883).")
    var port: UInt16?

    @Option(name: .long, help: "IPv4 address to bind (default 127.0.0.1).")
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

    @Option(name: .customLong("scram-sha-256-entry"), help: ArgumentHelp(
        "Print a password_file line with a SCRAM-SHA-256 verifier for USER (password read from standard input), then exit.",
        valueName: "USER"))
    var scramSha256Entry: String?

    func run() throws {
        if let user = scramSha256Entry {
            guard let password = readLine(strippingNewline: true), !password.isEmpty else {
                throw ValidationError("no password on standard input")
            }
            print(PasswordFile.scramSHA256Entry(user: user, password: Array(password.utf8)))
            return
        }
        var settings = Settings()
        if let path = config { try settings.load(file: path) }
        // Precedence: flags > environment (APUS_<KEY>) > file > built-in defaults.
        let unknownVariables = try settings.applyEnvironment(Settings.processEnvironment())
        if let port { settings.port = port }
        if let bind { settings.bind = bind }
        if let shards { settings.shards = shards }
        if let logLevel { settings.logLevel = logLevel }
        if let connectTimeout { settings.connectTimeout = connectTimeout }
        if let maxPacketSize { settings.maxPacketSize = maxPacketSize == 0 ? 268_435_460 : maxPacketSize }
        if let maxConnections { settings.maxConnections = maxConnections }
        if let maxInflightMessages { settings.maxInflightMessages = maxInflightMessages }
        if let maxQueuedMessages { settings.maxQueuedMessages = maxQueuedMessages }
        if let messageSizeLimit { settings.messageSizeLimit = messageSizeLimit }
        if let sharedSubscriptionStrategy {
            try settings.apply(key: "shared_subscription_strategy", value: sharedSubscriptionStrategy, at: "--shared-subscription-strategy")
        }
        try settings.validate()

        guard let level = Logger.Level(rawValue: settings.logLevel) else {
            throw ValidationError("unknown log level \(settings.logLevel)")
        }
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

        let shardCount = settings.shards ?? Int(apus_available_cpus())
        var groupConfig = ShardGroupConfig(shards: shardCount)
        groupConfig.host = settings.bind
        groupConfig.port = settings.port
        groupConfig.extraListeners = settings.extraListeners
        groupConfig.tcpNoDelay = settings.tcpNoDelay
        if let skip = getenv("APUS_RING_SETUP_SKIP").flatMap({ Int(String(cString: $0)) }) { groupConfig.ringSetupsSkipped = skip }
        if let stall = getenv("APUS_FAULT_STALL_SHARD").flatMap({ Int(String(cString: $0)) }) {
            groupConfig.faultStallShard = stall
            groupConfig.faultStallAfterSeconds = getenv("APUS_FAULT_STALL_AFTER").flatMap({ Double(String(cString: $0)) }) ?? 0
            logger.warning("fault injection: shard \(stall) will stop ticking after \(groupConfig.faultStallAfterSeconds) s")
        }
        groupConfig.sysIntervalSeconds = settings.sysInterval
        groupConfig.httpListener = settings.httpListener
        groupConfig.httpCredentials = settings.httpCredentials
        groupConfig.broker = try settings.brokerConfig(shards: shardCount)
        let group = try ShardGroup(config: groupConfig, logger: logger)
        try group.start()
        let addresses = group.boundListeners.map { "\($0.host):\($0.port)" }.joined(separator: ", ")
        logger.info("apus listening on \(addresses) with \(shardCount) shard(s)")
        if let http = settings.httpListener, let port = group.httpPort {
            logger.info("HTTP API and metrics on http://\(http.host):\(port)/")
        }

        // systemd (Type=notify): ready now that every shard serves and every listener is bound.
        let systemd = SystemdNotifier()
        systemd.notify("READY=1\nSTATUS=listening on \(addresses) with \(shardCount) shard(s)\nMAINPID=\(getpid())")
        var received: Int32 = 0
        var watchdogWithheld = false
        while true {
            if let interval = systemd.watchdogInterval {
                // Wait for a signal at most half the watchdog period; ping only while every shard's
                // loop ticks, so a shard stuck in a loop makes systemd restart the process.
                var timeout = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - Double(Int(interval))) * 1e9))
                let signal = sigtimedwait(&mask, nil, &timeout)
                if signal < 0 {
                    let stalled = group.stalledShards(now: apus_monotonic_ns())
                    if stalled.isEmpty {
                        systemd.notify("WATCHDOG=1")
                        if watchdogWithheld { logger.notice("every shard ticks again: watchdog pings resumed") }
                        watchdogWithheld = false
                    } else if !watchdogWithheld {
                        logger.error("shard(s) \(stalled) stopped ticking: watchdog pings withheld (systemd will restart apus)")
                        watchdogWithheld = true
                    }
                    continue
                }
                received = signal
            } else {
                sigwait(&mask, &received)
            }
            guard received == SIGHUP else { break }
            // mosquitto's SIGHUP: reload the password and ACL files; a broken file keeps the old ones.
            do {
                group.reloadSecurity(try settings.securitySettings())
                logger.notice("SIGHUP: password_file and acl_file reloaded")
            } catch {
                logger.error("SIGHUP: reload failed, keeping the previous users and ACL: \(error)")
            }
        }
        logger.info("signal \(received): stopping")
        systemd.notify("STOPPING=1")
        group.stop()
        logger.info("stopped")
    }
}

Apus.main()
