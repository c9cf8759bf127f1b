// Drives the connection scenarios (idle, connect-storm): splits the connections over the engine
// threads, reads the broker's RSS and CPU time around the connect phase (idle: and while the
// connections are held), and sums the engines' results into a report.

import BenchKit
import CApusSys
import Codec
import Foundation
import Histogram

struct ConnectionRun {
    var host: String
    var port: UInt16
    var version: ProtocolVersion
    var session: SessionOptions
    var mode: ConnectionMode
    var connections: Int
    var connectBatch: Int
    var threads: Int
    /// idle: seconds the connections are held; storm: seconds of storming (0: one CONNECT per client).
    var seconds: Double
    var brokerPID: Int32?
    var quiet: Bool

    /// The report (label and command left to the caller) and the connect-latency histogram as .hgrm text.
    func run() -> (BenchReport, String) {
        let n = max(1, min(threads, connections, connectBatch))
        let control = ConnectionControl()
        var engines: [ConnectionEngine] = []
        var counters: [ProgressCounters] = []
        for t in 0..<n {
            let first = connections * t / n
            let config = ConnectionEngineConfig(
                host: host, port: port, version: version, session: session, mode: mode,
                connections: connections * (t + 1) / n - first, firstIndex: first,
                inFlight: connectBatch * (t + 1) / n - connectBatch * t / n,
                stormNanoseconds: mode == .storm ? UInt64(seconds * 1e9) : 0)
            let progress = ProgressCounters()
            engines.append(ConnectionEngine(config: config, control: control, progress: progress))
            counters.append(progress)
        }
        let rssBefore = brokerPID.flatMap(BrokerStats.rssKiB)
        let cpuBefore = brokerPID.flatMap(BrokerStats.cpuSeconds)
        let reporter = quiet ? nil : ProgressReporter(counters: counters, kind: .connections)
        reporter?.start()
        let results = ResultBox<ConnectionResult>(count: n)
        for (t, engine) in engines.enumerated() {
            Thread {
                apus_pin_current_thread(apus_allowed_cpu(Int32(t)))
                results.set(t, engine.run())
            }.start()
        }
        // idle: once every engine has connected, hold the connections and read the broker's RSS.
        var cpuConnected: Double? = nil
        var rssHeld: Int? = nil
        if mode == .idle {
            while control.connected.load(ordering: .relaxed) < n { usleep(10_000) }
            cpuConnected = brokerPID.flatMap(BrokerStats.cpuSeconds)
            let end = Date().addingTimeInterval(seconds)
            repeat {
                usleep(UInt32(min(1, max(0, end.timeIntervalSinceNow)) * 1e6))
                rssHeld = brokerPID.flatMap(BrokerStats.rssKiB) ?? rssHeld
            } while Date() < end
            control.stop.store(true, ordering: .relaxed)
        }
        results.wait()
        reporter?.stop()
        let cpuAfter = cpuConnected ?? brokerPID.flatMap(BrokerStats.cpuSeconds)

        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var connected = 0, failed = 0, closed = 0
        var start = UInt64.max, end: UInt64 = 0
        var reasons: [String] = []
        for r in results.all() {
            latency.add(r.latency)
            connected += r.connected
            failed += r.failed
            closed += r.closedByBroker
            start = min(start, r.connectStart)
            end = max(end, r.connectEnd)
            for e in r.errors where !reasons.contains(e) { reasons.append(e) }
        }
        var report = BenchReport(label: "", scenario: mode.rawValue, command: "")
        report.connections = connections
        report.connected = connected
        report.connectFailures = failed
        let connectSeconds = end > start ? Double(end - start) / 1e9 : 0
        report.connectsPerSecond = connectSeconds > 0 ? Double(connected) / connectSeconds : 0
        report.durationSeconds = mode == .idle ? seconds : connectSeconds
        report.latencyMicroseconds = .init(p50: latency.valueAtPercentile(50), p90: latency.valueAtPercentile(90),
                                           p99: latency.valueAtPercentile(99), p999: latency.valueAtPercentile(99.9), max: latency.max)
        if let before = cpuBefore, let after = cpuAfter, connected > 0 {
            report.brokerCPUSeconds = after - before
            report.brokerCPUSecondsPerMillion = (after - before) / Double(connected) * 1e6
        }
        report.brokerRSSBeforeKiB = rssBefore
        report.brokerRSSKiB = rssHeld ?? brokerPID.flatMap(BrokerStats.rssKiB)
        if mode == .idle, let before = rssBefore, let held = rssHeld, connected > 0 {
            report.rssPerConnectionKiB = Double(held - before) / Double(connected)
        }
        if failed > 0 {
            report.errors.append("\(failed) of \(connected + failed) connection attempts failed: \(reasons.joined(separator: "; "))")
        }
        if closed > 0 { report.errors.append("the broker closed \(closed) of the \(connected) held connections") }
        if failed == 0 && closed == 0 { report.errors += reasons }
        var text = ""
        latency.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1)
        return (report, text)
    }
}
