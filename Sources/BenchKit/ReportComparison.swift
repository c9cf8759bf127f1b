// The comparison behind `apus-bench compare`: a new set of reports against a baseline, one
// Markdown table per scenario (each broker vs its baseline, and Apus vs Mosquitto), and the list
// of regressions beyond the thresholds. Pure, so that the gate itself is unit-tested.

import Foundation

/// How much worse than the baseline a gated result may be before it counts as a regression.
public struct RegressionThresholds: Sendable, Equatable {
    /// Allowed drop of msg/s (connects/s for connection scenarios), percent.
    public var maxThroughputDrop: Double = 25
    /// Allowed rise of the p99 latency, percent.
    public var maxP99Rise: Double = 50
    /// Allowed rise of the broker's RSS per idle connection, percent.
    public var maxRSSPerConnectionRise: Double = 50
    /// Any message lost at QoS ≥ 1 is a regression.
    public var failOnLoss = true

    public init(maxThroughputDrop: Double = 25, maxP99Rise: Double = 50, maxRSSPerConnectionRise: Double = 50,
                failOnLoss: Bool = true) {
        self.maxThroughputDrop = maxThroughputDrop; self.maxP99Rise = maxP99Rise
        self.maxRSSPerConnectionRise = maxRSSPerConnectionRise; self.failOnLoss = failOnLoss
    }

    public var description: String {
        "throughput −\(Self.number(maxThroughputDrop)) % (also relative to the other broker when both reports have it), "
            + "p99 +\(Self.number(maxP99Rise)) %, "
            + "RSS per idle connection +\(Self.number(maxRSSPerConnectionRise)) %"
            + (failOnLoss ? ", any loss at QoS ≥ 1" : "")
    }

    static func number(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
}

/// The outcome of a comparison: the Markdown to print and the regressions found.
public struct ComparisonResult: Sendable {
    public var markdown: String
    public var regressions: [String]
    public var passed: Bool { regressions.isEmpty }
}

public enum ReportComparison {
    /// Compares `new` with `baseline`. Only labels in `gated` (nil: all) can fail; `reference`
    /// and `peer` name the two brokers of the side-by-side ratio row.
    public static func compare(baseline: [BenchReport], new: [BenchReport], thresholds: RegressionThresholds = .init(),
                               gated: Set<String>? = nil, reference: String = "apus", peer: String = "mosquitto") -> ComparisonResult {
        var regressions: [String] = []
        var md = ""
        var shapes: [String] = []
        for r in new where !shapes.contains(r.shape) { shapes.append(r.shape) }
        for shape in shapes {
            let rows = new.filter { $0.shape == shape }.sorted { order($0.label, reference) < order($1.label, reference) }
            md += "### \(shape)\n\n"
            let unit = rows[0].rateUnit
            md += "| broker | \(unit) | vs baseline | p99 µs | vs baseline | CPU s/M \(rows[0].isConnectionScenario ? "conns" : "msgs") | RSS | lost | verdict |\n"
            md += "|---|---|---|---|---|---|---|---|---|\n"
            for r in rows {
                let base = baseline.first { $0.key == r.key }
                let isGated = gated?.contains(r.label) ?? true
                let found = check(r, base, thresholds, machineFactor: r.label == peer ? nil : peerFactor(shape, peer, baseline, new))
                if isGated { regressions += found.map { "\(r.key): \($0)" } }
                let verdict = !isGated ? "(not gated)" : !found.isEmpty ? "**REGRESSION**" : base == nil ? "new" : "ok"
                let rate = delta(r.headlineRate, base?.headlineRate)
                let p99 = delta(Double(r.latencyMicroseconds.p99), base.map { Double($0.latencyMicroseconds.p99) })
                md += "| \(r.label) | \(grouped(r.headlineRate)) | \(rate) | \(r.latencyMicroseconds.p99) | \(p99) | "
                md += "\(r.brokerCPUSecondsPerMillion.map { String(format: "%.2f", $0) } ?? "–") | \(rss(r, base)) | "
                md += "\(r.isConnectionScenario ? "–" : String(r.lost)) | \(verdict) |\n"
            }
            if let a = rows.first(where: { $0.label == reference }), let b = rows.first(where: { $0.label == peer }) {
                md += "| \(reference) ÷ \(peer) | \(ratio(a.headlineRate, b.headlineRate)) | | "
                md += "\(ratio(Double(a.latencyMicroseconds.p99), Double(b.latencyMicroseconds.p99))) | | "
                md += "\(ratio(a.brokerCPUSecondsPerMillion, b.brokerCPUSecondsPerMillion)) | "
                md += "\(a.isConnectionScenario ? ratio(a.rssPerConnectionKiB, b.rssPerConnectionKiB) : ratio(a.brokerRSSKiB.map(Double.init), b.brokerRSSKiB.map(Double.init))) | | |\n"
            }
            for r in rows where !r.errors.isEmpty { md += "\n\(r.label) errors: \(r.errors.joined(separator: "; "))\n" }
            md += "\n"
        }
        for b in baseline where (gated?.contains(b.label) ?? true) && !new.contains(where: { $0.key == b.key }) {
            regressions.append("\(b.key): in the baseline but missing from the new report")
        }
        if regressions.isEmpty {
            md += "No regression beyond the thresholds (\(thresholds.description)).\n"
        } else {
            md += "Regressions beyond the thresholds (\(thresholds.description)):\n"
            for r in regressions { md += "- \(r)\n" }
        }
        return ComparisonResult(markdown: md, regressions: regressions)
    }

    /// How the peer broker's rate in `shape` changed from the baseline to the new report (new ÷
    /// old): how much faster or slower the machine ran, as far as the same scenario on another
    /// broker in the same run can tell. nil when either report lacks it.
    static func peerFactor(_ shape: String, _ peer: String, _ baseline: [BenchReport], _ new: [BenchReport]) -> Double? {
        guard let now = new.first(where: { $0.shape == shape && $0.label == peer }),
              let then = baseline.first(where: { $0.shape == shape && $0.label == peer }),
              now.headlineRate > 0, then.headlineRate > 0 else { return nil }
        return now.headlineRate / then.headlineRate
    }

    /// What is wrong with `r` against `base` (empty: nothing). With `machineFactor` (the peer
    /// broker's rate now ÷ in the baseline, measured in the same runs), a throughput drop counts
    /// only if it is beyond the threshold both as measured and after dividing by that factor, so a
    /// slower machine, which slows both brokers, is not taken for a regression of one of them.
    public static func check(_ r: BenchReport, _ base: BenchReport?, _ t: RegressionThresholds,
                             machineFactor: Double? = nil) -> [String] {
        var found: [String] = []
        if !r.errors.isEmpty { found.append("errors: \(r.errors.joined(separator: "; "))") }
        if t.failOnLoss && r.qos >= 1 && r.lost > 0 && !r.isConnectionScenario {
            found.append("\(r.lost) messages lost at QoS \(r.qos)")
        }
        guard let base else { return found }
        if let d = change(r.headlineRate, base.headlineRate), d < -t.maxThroughputDrop {
            if let factor = machineFactor, let relative = change(r.headlineRate / factor, base.headlineRate) {
                if relative < -t.maxThroughputDrop {
                    found.append("\(r.rateUnit) \(grouped(base.headlineRate)) → \(grouped(r.headlineRate)) (\(percent(d)); "
                                 + "\(percent(relative)) relative to the other broker in the same run)")
                }
            } else {
                found.append("\(r.rateUnit) \(grouped(base.headlineRate)) → \(grouped(r.headlineRate)) (\(percent(d)))")
            }
        }
        if let d = change(Double(r.latencyMicroseconds.p99), Double(base.latencyMicroseconds.p99)), d > t.maxP99Rise {
            found.append("p99 \(base.latencyMicroseconds.p99) → \(r.latencyMicroseconds.p99) µs (\(percent(d)))")
        }
        if let now = r.rssPerConnectionKiB, let then = base.rssPerConnectionKiB, let d = change(now, then),
           d > t.maxRSSPerConnectionRise {
            found.append(String(format: "RSS per connection %.1f → %.1f KiB", then, now) + " (\(percent(d)))")
        }
        return found
    }

    /// Percent change from `old` to `new`; nil when there is no meaningful baseline.
    static func change(_ new: Double, _ old: Double) -> Double? { old > 0 ? (new / old - 1) * 100 : nil }

    static func delta(_ new: Double, _ old: Double?) -> String {
        guard let old, let d = change(new, old) else { return "–" }
        return "\(percent(d)) (\(grouped(old)))"
    }

    static func rss(_ r: BenchReport, _ base: BenchReport?) -> String {
        if let per = r.rssPerConnectionKiB {
            let d = base?.rssPerConnectionKiB.flatMap { change(per, $0) }.map { ", \(percent($0))" } ?? ""
            return String(format: "%.1f KiB/conn", per) + d
        }
        return r.brokerRSSKiB.map { "\($0 / 1024) MiB" } ?? "–"
    }

    static func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, b > 0 else { return "–" }
        return String(format: a / b >= 10 ? "%.0f×" : "%.2f×", a / b)
    }

    static func order(_ label: String, _ reference: String) -> String { label == reference ? "" : label }

    public static func percent(_ d: Double) -> String { (d < 0 ? "−" : "+") + String(format: "%.0f %%", abs(d)) }

    /// 1234567.8 → "1,234,568".
    public static func grouped(_ v: Double) -> String {
        let digits = String(Int(v.rounded()))
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 && c != "-" { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }
}
