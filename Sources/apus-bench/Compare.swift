// `apus-bench compare BASELINE NEW`: a Markdown table per scenario and broker (throughput, p99,
// CPU per message, loss) and a non-zero exit on a regression beyond the thresholds.

import ArgumentParser
import Foundation

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compares two reports (a report or an array of reports each); exits 1 on a regression.")

    @Argument(help: "Baseline report (JSON).") var baseline: String
    @Argument(help: "New report (JSON).") var new: String
    @Option(name: .long, help: "Allowed throughput drop, percent.") var maxThroughputDrop: Double = 25
    @Option(name: .long, help: "Allowed p99 latency rise, percent.") var maxP99Rise: Double = 50
    @Option(name: .long, help: "Only gate these labels (comma-separated), e.g. apus; others are shown.") var gate: String?

    func run() throws {
        let old = try Compare.load(baseline)
        let now = try Compare.load(new)
        let gated = gate.map { Set($0.split(separator: ",").map(String.init)) }
        var failures: [String] = []
        print("| scenario | broker | QoS | msg/s baseline | msg/s new | Δ | p99 µs baseline | p99 µs new | Δ | lost | CPU s/M msgs new | verdict |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in now {
            let key = Compare.key(r)
            let base = old.first { Compare.key($0) == key }
            var verdict = "ok"
            let throughputDelta = base.map { ($0.messagesPerSecond > 0 ? r.messagesPerSecond / $0.messagesPerSecond - 1 : 0) * 100 }
            let p99Delta = base.map { $0.latencyMicroseconds.p99 > 0 ? (Double(r.latencyMicroseconds.p99) / Double($0.latencyMicroseconds.p99) - 1) * 100 : 0 }
            let isGated = gated?.contains(r.label) ?? true
            if isGated {
                if r.qos >= 1 && r.lost > 0 { verdict = "LOSS"; failures.append("\(key): \(r.lost) messages lost at QoS \(r.qos)") }
                if !r.errors.isEmpty { verdict = "ERROR"; failures.append("\(key): \(r.errors.joined(separator: "; "))") }
                if let d = throughputDelta, d < -maxThroughputDrop { verdict = "SLOWER"; failures.append("\(key): throughput \(Compare.pct(d))") }
                if let d = p99Delta, d > maxP99Rise { verdict = "P99"; failures.append("\(key): p99 \(Compare.pct(d))") }
                if base == nil { verdict = "new" }
            } else {
                verdict = "(not gated)"
            }
            let cpu = r.brokerCPUSecondsPerMillion.map { String(format: "%.2f", $0) } ?? "–"
            print("| \(r.scenario) \(r.publishers)→\(r.subscribers) | \(r.label) | \(r.qos) | \(base.map { Compare.int($0.messagesPerSecond) } ?? "–") | \(Compare.int(r.messagesPerSecond)) | \(throughputDelta.map(Compare.pct) ?? "–") | \(base.map { "\($0.latencyMicroseconds.p99)" } ?? "–") | \(r.latencyMicroseconds.p99) | \(p99Delta.map(Compare.pct) ?? "–") | \(r.lost) | \(cpu) | \(verdict) |")
        }
        if !failures.isEmpty {
            print("\nRegressions beyond thresholds (throughput −\(Int(maxThroughputDrop)) %, p99 +\(Int(maxP99Rise)) %, any loss at QoS ≥ 1):")
            for f in failures { print("- \(f)") }
            throw ExitCode(1)
        }
        print("\nNo regression beyond thresholds (throughput −\(Int(maxThroughputDrop)) %, p99 +\(Int(maxP99Rise)) %, any loss at QoS ≥ 1).")
    }

    static func load(_ path: String) throws -> [BenchReport] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        if let many = try? JSONDecoder().decode([BenchReport].self, from: data) { return many }
        return [try JSONDecoder().decode(BenchReport.self, from: data)]
    }

    static func key(_ r: BenchReport) -> String { "\(r.label) \(r.scenario) \(r.publishers)→\(r.subscribers) qos\(r.qos) \(r.size)B" }
    static func pct(_ d: Double) -> String { String(format: "%+.0f %%", d) }
    static func int(_ v: Double) -> String { String(Int(v)) }
}
