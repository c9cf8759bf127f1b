// Drives a pub/sub scenario (pairs, fan-in, fan-out, shared): sets up the engines, runs one
// pinned thread each, and sums their results into a report.

import BenchKit
import CApusSys
import Foundation
import Histogram

struct PubSubRun {
    var scenario: Scenario
    var config: EngineConfig
    var pairs: Int
    var pubs: Int
    var subs: Int
    var threads: Int
    var brokerPID: Int32?
    var quiet: Bool

    /// The report (label and command left to the caller) and the latency histogram as .hgrm text.
    func run() throws -> (BenchReport, String) {
        let publishers = scenario == .pairs ? pairs : scenario == .fanOut ? 1 : pubs
        let subscribers = scenario == .pairs ? pairs : scenario == .fanIn ? 1 : subs
        var engines: [Engine] = []
        var counters: [ProgressCounters] = []
        for plan in ScenarioPlan.plans(scenario, publishers: publishers, subscribers: subscribers, prefix: config.topicPrefix, threads: threads) {
            let progress = ProgressCounters()
            let engine = Engine(config: config, plan: plan, progress: progress)
            try engine.setUp()
            engines.append(engine)
            counters.append(progress)
        }
        if config.subscriberHost != config.host || config.subscriberPort != config.port {
            let ms = try RouteProbe.waitForRoutes(config: config)
            if !quiet { FileHandle.standardError.write("routes reached \(config.host):\(config.port) after \(Int(ms)) ms\n".data(using: .utf8)!) }
        }
        let reporter = quiet ? nil : ProgressReporter(counters: counters, kind: .messages, warmup: config.count > 0 ? 0 : Double(config.warmupNanoseconds) / 1e9)
        let cpuBefore = brokerPID.flatMap(BrokerStats.cpuSeconds)
        let ownCPUBefore = BrokerStats.ownCPUSeconds()
        reporter?.start()
        let results = ResultBox<EngineResult>(count: engines.count)
        for (t, engine) in engines.enumerated() {
            Thread {
                apus_pin_current_thread(apus_allowed_cpu(Int32(t)))
                results.set(t, engine.run())
            }.start()
        }
        results.wait()
        reporter?.stop()
        let cpuAfter = brokerPID.flatMap(BrokerStats.cpuSeconds)
        let ownCPU = BrokerStats.ownCPUSeconds() - ownCPUBefore

        var totals = StreamTotals()
        var receivedInWindow: UInt64 = 0
        var subscriberBytes: UInt64 = 0
        var elapsed: UInt64 = 0
        var stalls: UInt64 = 0
        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var errors: [String] = []
        for r in results.all() {
            totals.add(r.totals)
            receivedInWindow += r.receivedInWindow
            subscriberBytes += r.subscriberBytes
            elapsed = max(elapsed, r.elapsedNanoseconds)
            stalls += r.stalledWindows
            latency.add(r.latency)
            if let e = r.error { errors.append(e) }
        }
        let counting = config.count > 0
        let seconds = counting ? Double(elapsed) / 1e9 : Double(config.durationNanoseconds) / 1e9
        let delivered = counting ? totals.received - totals.duplicates : receivedInWindow
        let messageRate = seconds > 0 ? Double(delivered) / seconds : 0

        var report = BenchReport(label: "", scenario: scenario.rawValue, command: "")
        report.publishers = publishers
        report.subscribers = subscribers
        report.qos = Int(config.qos.rawValue)
        report.size = config.size
        report.window = config.rate > 0 ? nil : config.window
        report.ratePerPublisher = config.rate > 0 ? config.rate : nil
        report.countPerPublisher = counting ? Int(config.count) : nil
        report.durationSeconds = seconds
        report.messagesPerSecond = messageRate
        report.bytesPerSecond = messageRate * Double(config.size)
        report.sent = totals.sent
        report.received = totals.received
        report.lost = totals.lost
        report.duplicates = totals.duplicates
        report.outOfOrder = totals.outOfOrder
        report.latencyMicroseconds = .init(p50: latency.valueAtPercentile(50), p90: latency.valueAtPercentile(90),
                                           p99: latency.valueAtPercentile(99), p999: latency.valueAtPercentile(99.9), max: latency.max)
        report.errors = errors
        if stalls > 0 { report.stalledWindows = stalls }
        if let before = cpuBefore, let after = cpuAfter, totals.received > 0 {
            report.brokerCPUSeconds = after - before
            report.brokerCPUSecondsPerMillion = (after - before) / Double(totals.received) * 1e6
            report.brokerCPUSecondsPerGB = (after - before) / (Double(totals.received) * Double(config.size)) * 1e9
        }
        if totals.received > 0 { report.toolCPUSecondsPerMillion = ownCPU / Double(totals.received) * 1e6 }
        report.brokerRSSKiB = brokerPID.flatMap(BrokerStats.rssKiB)
        if totals.received > 0 { report.subscriberWireBytesPerMessage = Double(subscriberBytes) / Double(totals.received) }
        var text = ""
        latency.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1)
        return (report, text)
    }
}

/// Results of the engine threads, collected under a lock (set-up and tear-down only).
final class ResultBox<Result: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [Result?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result) { condition.lock(); results[i] = r; condition.broadcast(); condition.unlock() }
    func wait() { condition.lock(); while results.contains(where: { $0 == nil }) { condition.wait() }; condition.unlock() }
    func all() -> [Result] { condition.lock(); defer { condition.unlock() }; return results.compactMap { $0 } }
}
