// `apus-bench run` (the default subcommand): the flags of one scenario run, checked, and handed
// to the pub/sub or the connection driver.

import ArgumentParser
import BenchKit
import Codec
import Foundation
@preconcurrency import Glibc

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs one scenario against a broker (the default subcommand: `apus-bench pairs ...`).",
        discussion: """
            Scenarios:
              pairs          publisher i → subscriber i on TOPIC/PID/i (--pairs N)
              fan-in         P publishers on TOPIC/PID/i → one subscriber on
                             TOPIC/PID/+ (--pubs P)
              fan-out        one publisher on TOPIC/PID/0 → S subscribers (--subs S)
              shared         P publishers → $share/bench/TOPIC/PID/+, a group of S
                             (--pubs P --subs S)
              idle           opens -c N connections, holds them for --duration;
                             the broker's RSS per connection (--broker-pid) and
                             the connect rate
              connect-storm  -c N clients CONNECT, --connect-batch at a time, each
                             disconnecting at its CONNACK: connects/s, connect
                             latency; --duration S goes on for S seconds

            Pub/sub scenarios run closed loop (--window) or paced (--rate, -I), for
            --warmup + --duration seconds or --count messages per publisher.
            A progress line goes to stderr each second unless --quiet.
            """,
        helpNames: [.long])  // -h is the broker host, as in emqtt_bench

    @Argument(help: "Scenario: pairs, fan-in, fan-out, shared, idle, connect-storm.") var scenario = "pairs"

    @Option(name: .customShort("h"), help: ArgumentHelp("Broker address (IPv4).", valueName: "host")) var host = "127.0.0.1"
    @Option(name: .shortAndLong, help: "Broker port.") var port: UInt16 = 1883
    @Option(name: .long, help: "Pub/sub scenarios: the subscribers' broker address (another node of a cluster); default: -h.")
    var subHost: String?
    @Option(name: .long, help: "Pub/sub scenarios: the subscribers' broker port; default: -p. With --sub-host or --sub-port the run first waits until the subscribers' routes reach the publishers' node.")
    var subPort: UInt16?
    @Option(name: .long, help: "pairs: publisher → subscriber pairs (topic TOPIC/PID/i).") var pairs = 10
    @Option(name: .long, help: "fan-in, shared: publishers.") var pubs = 10
    @Option(name: .long, help: "fan-out, shared: subscribers.") var subs = 10
    @Option(name: [.customShort("c"), .long], help: "idle, connect-storm: connections (idle) or clients (connect-storm).")
    var connections = 1000
    @Option(name: .long, help: "idle, connect-storm: connection attempts in flight at once, over all threads; keep it below the broker's listen backlog (Mosquitto: 100).")
    var connectBatch = 100
    @Option(name: .shortAndLong, help: "QoS 0, 1 or 2.") var qos = 0
    @Option(name: .shortAndLong, help: "Payload size in bytes (at least 17).") var size = 64
    @Option(name: .long, help: "Closed loop: messages per publisher not yet received everywhere.") var window = 64
    @Flag(name: .long, help: "Closed loop, QoS 1/2: --window counts messages not yet acknowledged (PUBACK / PUBCOMP), as a client's inflight window does, instead of those not yet received; loss then shows messages the broker acknowledged and did not deliver.")
    var ackWindow = false
    @Flag(name: .long, help: "Publish with the retain flag (each publisher overwrites its topic's retained message: with persistence, every message is a store record).")
    var retain = false
    @Option(name: .long, help: "Paced: messages per second per publisher (0 = closed loop).") var rate: Double = 0
    @Option(name: .customShort("I"), help: ArgumentHelp("Paced: milliseconds between a publisher's messages (the same as --rate 1000/ms).", valueName: "ms"))
    var interval: Double?
    @Option(name: .long, help: "Messages per publisher, then stop (instead of --warmup/--duration; all measured).")
    var count: Int?
    @Option(name: .long, help: "Seconds before measuring (pub/sub scenarios).") var warmup: Double = 2
    @Option(name: .long, help: "Seconds measured (pub/sub; default 10), connections held (idle; default 10), or storming (connect-storm; default: one CONNECT per client).")
    var duration: Double?
    @Option(name: .customShort("j"), help: ArgumentHelp("Threads, each with its own ring and a share of the pairs or connections (fan-in, fan-out, shared: one).", valueName: "threads"))
    var j = 1
    @Option(name: .long, help: "MQTT version: 3 (3.1), 4 (3.1.1) or 5.") var mqttVersion = 4
    @Option(name: .long, help: "true: clean sessions; false: persistent sessions (fixed client ids, clean session 0; v5: Clean Start 0 and --session-expiry).")
    var clean = true
    @Option(name: .long, help: "MQTT 5, --clean false: Session Expiry Interval, seconds.") var sessionExpiry: UInt32 = 300
    @Option(name: .long, help: "Client ids are PREFIX-pub-i, PREFIX-sub-i-j, PREFIX-conn-i (default: bench-PID, or bench with --clean false, so that ids stay fixed across runs).")
    var clientIdPrefix: String?
    @Option(name: .long, help: "Keep Alive, seconds (default: 300, or long enough to hold idle connections without PINGREQ).")
    var keepAlive: UInt16?
    @Option(name: .customShort("t"), help: ArgumentHelp("Topic prefix (topics are PREFIX/PID/i).", valueName: "prefix")) var topic = "bench"
    @Option(name: .long, help: "MQTT 5: Topic Alias Maximum the subscribers announce, so the broker may alias topics (0 = none).")
    var topicAliasMaximum: UInt16 = 0
    @Option(name: .long, help: "Broker PID: report its CPU time per million messages (or connections) and its RSS, from /proc.")
    var brokerPid: Int32?
    @Option(name: .long, help: "Label for the report (e.g. apus, mosquitto).") var label = "broker"
    @Option(name: .long, help: "Write the report as JSON to this file.") var json: String?
    @Option(name: .long, help: "Write the latency histogram (.hgrm, microseconds) to this file.") var hgrm: String?
    @Flag(name: .long, help: "No progress line on stderr.") var quiet = false
    @Option(name: .long, help: "Pub/sub scenarios: connect with TLS, trusting this CA file (PEM).") var cafile: String?
    @Option(name: .long, help: "TLS: the client certificate to present (PEM; with --key).") var cert: String?
    @Option(name: .long, help: "TLS: the client certificate's private key (PEM).") var key: String?
    @Flag(name: .long, help: "Pub/sub scenarios: MQTT over WebSocket (an upgrade to --ws-path, then masked binary frames); with --cafile, wss.")
    var ws = false
    @Option(name: .long, help: "WebSocket: the request path of the upgrade.") var wsPath = "/mqtt"

    func run() throws {
        guard let level = QoS(rawValue: UInt8(qos)) else { throw ValidationError("QoS is 0, 1 or 2") }
        guard let version = ProtocolVersion(rawValue: UInt8(mqttVersion)) else { throw ValidationError("MQTT version is 3, 4 or 5") }
        let all = Scenario.allCases.map(\.rawValue) + [ConnectionMode.idle.rawValue, ConnectionMode.storm.rawValue]
        guard all.contains(scenario) else { throw ValidationError("scenario is one of \(all.joined(separator: ", "))") }
        guard pairs >= 1, pubs >= 1, subs >= 1, j >= 1, connections >= 1, connectBatch >= 1, size >= BenchPayload.headerSize else {
            throw ValidationError("pairs, pubs, subs, -c, --connect-batch, -j ≥ 1; size ≥ \(BenchPayload.headerSize)")
        }
        if let count, count < 1 { throw ValidationError("--count ≥ 1") }
        if let interval, interval <= 0 { throw ValidationError("-I is a positive number of milliseconds") }
        BenchSocket.raiseOpenFileLimit()
        var session = SessionOptions()
        session.clean = clean
        session.expiry = sessionExpiry
        session.clientIDPrefix = clientIdPrefix ?? (clean ? "bench-\(getpid())" : "bench")
        session.keepAlive = keepAlive ?? 300

        var report: BenchReport
        var histogramText: String
        let tls = try benchTLSContext(cafile: cafile, cert: cert, key: key)
        if let mode = ConnectionMode(rawValue: scenario) {
            if tls != nil || ws {
                throw ValidationError("TLS (--cafile, --cert) and --ws are for the pub/sub scenarios; idle and connect-storm are plain TCP")
            }
            let hold = duration ?? (mode == .idle ? 10 : 0)
            if mode == .idle && keepAlive == nil { session.keepAlive = UInt16(min(65535, max(300, hold * 2 + 60))) }
            let driver = ConnectionRun(host: host, port: port, version: version, session: session, mode: mode,
                                       connections: connections, connectBatch: connectBatch, threads: j,
                                       seconds: hold, brokerPID: brokerPid, quiet: quiet)
            (report, histogramText) = driver.run()
        } else {
            var config = EngineConfig(host: host, port: port, version: version, qos: level, size: size, window: window,
                                      rate: interval.map { 1000 / $0 } ?? rate,
                                      warmupNanoseconds: UInt64(warmup * 1e9), durationNanoseconds: UInt64((duration ?? 10) * 1e9),
                                      topicPrefix: "\(topic)/\(getpid())", topicAliasMaximum: topicAliasMaximum,
                                      count: UInt64(count ?? 0), session: session)
            config.subscriberHost = subHost ?? host
            config.subscriberPort = subPort ?? port
            config.ackWindow = ackWindow
            config.tls = tls
            config.webSocketPath = ws ? wsPath : nil
            config.retain = retain
            let driver = PubSubRun(scenario: Scenario(rawValue: scenario)!, config: config, pairs: pairs, pubs: pubs, subs: subs,
                                   threads: j, brokerPID: brokerPid, quiet: quiet)
            (report, histogramText) = try driver.run()
        }
        report.label = label
        report.command = CommandLine.arguments.joined(separator: " ")
        report.mqttVersion = mqttVersion
        if !clean { report.cleanSession = false }
        print(report.summary)
        if let json { try BenchReport.encode(report).write(to: URL(fileURLWithPath: json)) }
        if let hgrm { try histogramText.write(toFile: hgrm, atomically: true, encoding: .utf8) }
        if !report.errors.isEmpty { throw ExitCode(2) }
    }
}
