// apus-bench: the bundled MQTT load generator. Runs a scenario (pairs, fan-in, fan-out, shared)
// against any broker, closed loop or paced, and reports throughput, loss, duplicates,
// reordering and end-to-end latency (HdrHistogram).

import ArgumentParser
import BenchKit
import CApusSys
import Codec
import Foundation
import Histogram

struct ApusBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-bench",
        abstract: "MQTT load generator on io_uring: pairs, fan-in, fan-out and shared-subscription scenarios.",
        subcommands: [Run.self, Compare.self],
        defaultSubcommand: Run.self,
        helpNames: [.long])
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs one scenario against a broker (the default subcommand: `apus-bench pairs ...`).",
        helpNames: [.long])  // -h is the broker host, as in emqtt_bench

    @Argument(help: "Scenario: pairs, fan-in, fan-out, shared.") var scenario = "pairs"

    @Option(name: .customShort("h"), help: "Broker address (IPv4).") var host = "127.0.0.1"
    @Option(name: .shortAndLong, help: "Broker port.") var port: UInt16 = 1883
    @Option(name: .long, help: "pairs: publisher → subscriber pairs (topic PREFIX/i).") var pairs = 10
    @Option(name: .long, help: "fan-in, shared: publishers.") var pubs = 10
    @Option(name: .long, help: "fan-out, shared: subscribers.") var subs = 10
    @Option(name: .shortAndLong, help: "QoS 0, 1 or 2.") var qos = 0
    @Option(name: .shortAndLong, help: "Payload size in bytes (at least 17).") var size = 64
    @Option(name: .long, help: "Closed loop: messages per pair in flight.") var window = 64
    @Option(name: .long, help: "Paced: messages per second per publisher (0 = closed loop).") var rate: Double = 0
    @Option(name: .long, help: "Seconds before measuring.") var warmup: Double = 2
    @Option(name: .long, help: "Seconds measured.") var duration: Double = 10
    @Option(name: .shortAndLong, help: "Threads (each with its own ring and a share of the pairs).") var j = 1
    @Option(name: .long, help: "MQTT version: 3 (3.1), 4 (3.1.1) or 5.") var mqttVersion = 4
    @Option(name: .customShort("t"), help: "Topic prefix.") var topic = "bench"
    @Option(name: .long, help: "MQTT 5: Topic Alias Maximum the subscribers announce, so the broker may alias topics (0 = none).")
    var topicAliasMaximum: UInt16 = 0
    @Option(name: .long, help: "Broker PID: report its CPU time per million messages and RSS.") var brokerPid: Int32?
    @Option(name: .long, help: "Label for the report (e.g. apus, mosquitto).") var label = "broker"
    @Option(name: .long, help: "Write the report as JSON to this file.") var json: String?
    @Option(name: .long, help: "Write the latency histogram (.hgrm, microseconds) to this file.") var hgrm: String?

    func run() throws {
        guard let level = QoS(rawValue: UInt8(qos)) else { throw ValidationError("QoS is 0, 1 or 2") }
        guard let version = ProtocolVersion(rawValue: UInt8(mqttVersion)) else { throw ValidationError("MQTT version is 3, 4 or 5") }
        guard let kind = Scenario(rawValue: scenario) else {
            throw ValidationError("scenario is one of \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard pairs >= 1, pubs >= 1, subs >= 1, j >= 1, size >= BenchPayload.headerSize else {
            throw ValidationError("pairs, pubs, subs, -j ≥ 1; size ≥ \(BenchPayload.headerSize)")
        }
        let config = EngineConfig(host: host, port: port, version: version, qos: level, size: size, window: window, rate: rate,
                                  warmupNanoseconds: UInt64(warmup * 1e9), durationNanoseconds: UInt64(duration * 1e9),
                                  topicPrefix: "\(topic)/\(getpid())", topicAliasMaximum: topicAliasMaximum)
        let publishers = kind == .pairs ? pairs : kind == .fanOut ? 1 : pubs
        let subscribers = kind == .pairs ? pairs : kind == .fanIn ? 1 : subs
        var engines: [Engine] = []
        for plan in ScenarioPlan.plans(kind, publishers: publishers, subscribers: subscribers, prefix: config.topicPrefix, threads: j) {
            let engine = Engine(config: config, plan: plan)
            try engine.setUp()
            engines.append(engine)
        }
        let cpuBefore = brokerPid.flatMap(BrokerStats.cpuSeconds)
        let results = ResultBox(count: engines.count)
        var workers: [Thread] = []
        for (t, engine) in engines.enumerated() {
            let worker = Thread {
                apus_pin_current_thread(Int32(t % Int(apus_available_cpus())))
                results.set(t, engine.run())
            }
            workers.append(worker)
            worker.start()
        }
        results.wait()
        let cpuAfter = brokerPid.flatMap(BrokerStats.cpuSeconds)

        var totals = StreamTotals()
        var received: UInt64 = 0
        var subscriberBytes: UInt64 = 0
        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var errors: [String] = []
        for r in results.all() {
            totals.add(r.totals)
            received += r.receivedInWindow
            subscriberBytes += r.subscriberBytes
            latency.add(r.latency)
            if let e = r.error { errors.append(e) }
        }
        let messageRate = Double(received) / duration
        var report = BenchReport(
            label: label, scenario: kind.rawValue, command: CommandLine.arguments.joined(separator: " "),
            publishers: publishers, subscribers: subscribers, qos: qos, size: size, window: rate > 0 ? nil : window, ratePerPublisher: rate > 0 ? rate : nil,
            durationSeconds: duration, messagesPerSecond: messageRate, bytesPerSecond: messageRate * Double(size),
            sent: totals.sent, received: totals.received, lost: totals.lost, duplicates: totals.duplicates,
            outOfOrder: totals.outOfOrder,
            latencyMicroseconds: .init(p50: latency.valueAtPercentile(50), p90: latency.valueAtPercentile(90),
                                       p99: latency.valueAtPercentile(99), p999: latency.valueAtPercentile(99.9), max: latency.max),
            errors: errors)
        if let before = cpuBefore, let after = cpuAfter, totals.received > 0 {
            report.brokerCPUSeconds = after - before
            report.brokerCPUSecondsPerMillion = (after - before) / Double(totals.received) * 1e6
        }
        report.brokerRSSKiB = brokerPid.flatMap(BrokerStats.rssKiB)
        if totals.received > 0 { report.subscriberWireBytesPerMessage = Double(subscriberBytes) / Double(totals.received) }
        print(report.summary)
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        }
        if let hgrm {
            var text = ""
            latency.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1)
            try text.write(toFile: hgrm, atomically: true, encoding: .utf8)
        }
        if !errors.isEmpty { throw ExitCode(2) }
    }
}

/// Results of the engine threads, collected under a lock (set-up and tear-down only).
final class ResultBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [EngineResult?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: EngineResult) { condition.lock(); results[i] = r; condition.broadcast(); condition.unlock() }
    func wait() { condition.lock(); while results.contains(where: { $0 == nil }) { condition.wait() }; condition.unlock() }
    func all() -> [EngineResult] { condition.lock(); defer { condition.unlock() }; return results.compactMap { $0 } }
}

ApusBench.main()
