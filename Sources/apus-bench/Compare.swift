// `apus-bench compare BASELINE NEW`: prints ReportComparison's Markdown tables and exits 1 on a
// regression beyond the thresholds.

import ArgumentParser
import BenchKit
import Foundation

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compares a report with a baseline: a Markdown table per scenario; exit 1 on a regression.",
        discussion: """
            Each file is a suite report (`apus-bench suite --out`), an array of
            reports, or one report (`apus-bench run --json`). Results are matched by
            broker label and scenario shape (scenario, publishers → subscribers, QoS,
            payload size, MQTT version, session kind; connections for idle and
            connect-storm). A gated result regresses when its rate (msg/s, conn/s)
            drops more than --max-throughput-drop, its p99 rises more than
            --max-p99-rise, its RSS per idle connection rises more than
            --max-rss-rise, it lost a message at QoS ≥ 1, it has errors, or it is
            missing from the new report.
            Exit status: 0 no regression, 1 regression, 2 unreadable input.
            """)

    @Argument(help: "Baseline report (JSON).") var baseline: String
    @Argument(help: "New report (JSON).") var new: String
    @Option(name: .long, help: "Allowed throughput drop (msg/s, or conn/s), percent.") var maxThroughputDrop: Double = 25
    @Option(name: .long, help: "Allowed p99 latency rise, percent.") var maxP99Rise: Double = 50
    @Option(name: .long, help: "Allowed rise of the broker's RSS per idle connection, percent.") var maxRssRise: Double = 50
    @Flag(name: .long, help: "Do not fail on messages lost at QoS ≥ 1.") var allowLoss = false
    @Option(name: .long, help: "Only gate these labels (comma-separated), e.g. apus; the others are shown, not gated.") var gate: String?
    @Option(name: .long, help: "The two labels compared side by side in each table (REFERENCE ÷ PEER).") var reference = "apus"
    @Option(name: .long, help: "See --reference.") var peer = "mosquitto"

    func run() throws {
        let old: [BenchReport]
        let now: [BenchReport]
        do {
            old = try BenchReport.load(Data(contentsOf: URL(fileURLWithPath: baseline)))
            now = try BenchReport.load(Data(contentsOf: URL(fileURLWithPath: new)))
        } catch {
            print("apus-bench compare: cannot read the reports: \(error)")
            throw ExitCode(2)
        }
        let thresholds = RegressionThresholds(maxThroughputDrop: maxThroughputDrop, maxP99Rise: maxP99Rise,
                                              maxRSSPerConnectionRise: maxRssRise, failOnLoss: !allowLoss)
        let gated = gate.map { Set($0.split(separator: ",").map(String.init)) }
        let result = ReportComparison.compare(baseline: old, new: now, thresholds: thresholds, gated: gated,
                                              reference: reference, peer: peer)
        print(result.markdown, terminator: "")
        if !result.passed { throw ExitCode(1) }
    }
}
