// The regression gate of `apus-bench compare`: an injected regression fails it, noise within the
// thresholds and ungated brokers do not.

import XCTest
import BenchKit

final class ReportComparisonTests: XCTestCase {
    func pairs(_ label: String, rate: Double, p99: UInt64, qos: Int = 1, lost: UInt64 = 0) -> BenchReport {
        var r = BenchReport(label: label, scenario: "pairs", command: "apus-bench pairs")
        r.publishers = 10; r.subscribers = 10; r.qos = qos; r.size = 64
        r.messagesPerSecond = rate
        r.latencyMicroseconds = .init(p50: p99 / 2, p90: p99, p99: p99, p999: p99, max: p99)
        r.lost = lost
        return r
    }

    func idle(_ label: String, rssPerConnection: Double, rate: Double = 10_000) -> BenchReport {
        var r = BenchReport(label: label, scenario: "idle", command: "apus-bench idle")
        r.connections = 10_000; r.connected = 10_000; r.connectFailures = 0
        r.connectsPerSecond = rate
        r.rssPerConnectionKiB = rssPerConnection
        return r
    }

    lazy var baseline = [pairs("apus", rate: 300_000, p99: 3000), pairs("mosquitto", rate: 45_000, p99: 20_000),
                         idle("apus", rssPerConnection: 4.0)]

    func testSameFiguresPass() {
        let result = ReportComparison.compare(baseline: baseline, new: baseline)
        XCTAssertTrue(result.passed, result.markdown)
        XCTAssertTrue(result.markdown.contains("### pairs 10→10 QoS 1 64 B"))
        XCTAssertTrue(result.markdown.contains("| apus ÷ mosquitto | 6.67× |"))
    }

    func testNoiseWithinThresholdsPasses() {
        let new = [pairs("apus", rate: 240_000, p99: 4400), baseline[1], idle("apus", rssPerConnection: 5.5)]
        XCTAssertTrue(ReportComparison.compare(baseline: baseline, new: new).passed)
    }

    func testInjectedThroughputRegressionFails() {
        let new = [pairs("apus", rate: 150_000, p99: 3000), baseline[1], baseline[2]]
        let result = ReportComparison.compare(baseline: baseline, new: new)
        XCTAssertFalse(result.passed)
        XCTAssertEqual(result.regressions.count, 1)
        XCTAssertTrue(result.regressions[0].contains("−50 %"), result.regressions[0])
        XCTAssertTrue(result.markdown.contains("**REGRESSION**"))
    }

    func testSlowerMachineIsNotARegression() {
        // Both brokers 40 % slower in the same run: the machine, not Apus.
        let slower = [pairs("apus", rate: 180_000, p99: 3000), pairs("mosquitto", rate: 27_000, p99: 20_000),
                      idle("apus", rssPerConnection: 4.0)]
        let result = ReportComparison.compare(baseline: baseline, new: slower, gated: ["apus"])
        XCTAssertTrue(result.passed, result.markdown)
        // Apus alone 40 % slower: a regression, however the machine ran.
        let apusOnly = [pairs("apus", rate: 180_000, p99: 3000), baseline[1], idle("apus", rssPerConnection: 4.0)]
        XCTAssertFalse(ReportComparison.compare(baseline: baseline, new: apusOnly, gated: ["apus"]).passed)
        // And both slower, Apus far more: a regression too (−60 % measured, −33 % after the machine's −40 %).
        let worse = [pairs("apus", rate: 120_000, p99: 3000), pairs("mosquitto", rate: 27_000, p99: 20_000),
                     idle("apus", rssPerConnection: 4.0)]
        let failed = ReportComparison.compare(baseline: baseline, new: worse, gated: ["apus"])
        XCTAssertEqual(failed.regressions.count, 1, failed.markdown)
        XCTAssertTrue(failed.regressions[0].contains("relative to the other broker"), failed.regressions[0])
        // Without the other broker in the new report the drop is taken as measured.
        XCTAssertFalse(ReportComparison.compare(baseline: baseline, new: [slower[0], slower[2]], gated: ["apus"]).passed)
    }

    func testP99RiseFails() {
        let new = [pairs("apus", rate: 300_000, p99: 4600), baseline[1], baseline[2]]
        XCTAssertEqual(ReportComparison.compare(baseline: baseline, new: new).regressions.count, 1)
        let wide = RegressionThresholds(maxThroughputDrop: 50, maxP99Rise: 300)
        XCTAssertTrue(ReportComparison.compare(baseline: baseline, new: new, thresholds: wide).passed)
    }

    func testAnyLossAtQoS1Fails() {
        let new = [pairs("apus", rate: 300_000, p99: 3000, lost: 1), baseline[1], baseline[2]]
        XCTAssertFalse(ReportComparison.compare(baseline: baseline, new: new).passed)
        let lenient = RegressionThresholds(failOnLoss: false)
        XCTAssertTrue(ReportComparison.compare(baseline: baseline, new: new, thresholds: lenient).passed)
    }

    func testLossAtQoS0IsNotARegression() {
        let base = [pairs("apus", rate: 1_000_000, p99: 1000, qos: 0)]
        let new = [pairs("apus", rate: 1_000_000, p99: 1000, qos: 0, lost: 10)]
        XCTAssertTrue(ReportComparison.compare(baseline: base, new: new).passed)
    }

    func testRSSPerConnectionRiseFails() {
        let new = [baseline[0], baseline[1], idle("apus", rssPerConnection: 8.0)]
        let result = ReportComparison.compare(baseline: baseline, new: new)
        XCTAssertEqual(result.regressions.count, 1)
        XCTAssertTrue(result.markdown.contains("### idle 10000 conns"))
    }

    func testUngatedBrokerIsShownNotGated() {
        let new = [baseline[0], pairs("mosquitto", rate: 10_000, p99: 90_000, lost: 5), baseline[2]]
        let result = ReportComparison.compare(baseline: baseline, new: new, gated: ["apus"])
        XCTAssertTrue(result.passed, result.markdown)
        XCTAssertTrue(result.markdown.contains("(not gated)"))
        XCTAssertFalse(ReportComparison.compare(baseline: baseline, new: new).passed)
    }

    func testErrorsAndMissingResultsFail() {
        var broken = baseline[0]
        broken.errors = ["connection 3 closed by the broker (0)"]
        XCTAssertFalse(ReportComparison.compare(baseline: baseline, new: [broken, baseline[1], baseline[2]]).passed)
        let missing = ReportComparison.compare(baseline: baseline, new: [baseline[1], baseline[2]])
        XCTAssertEqual(missing.regressions, ["apus pairs 10→10 QoS 1 64 B: in the baseline but missing from the new report"])
    }

    func testShapesKeepScenariosApart() {
        var persistent = pairs("apus", rate: 100_000, p99: 3000)
        persistent.cleanSession = false
        var v5 = pairs("apus", rate: 100_000, p99: 3000)
        v5.mqttVersion = 5
        XCTAssertEqual(persistent.key, "apus pairs 10→10 QoS 1 64 B persistent")
        XCTAssertEqual(v5.key, "apus pairs 10→10 QoS 1 64 B v5")
        // New shapes have no baseline: shown as new, not failed.
        XCTAssertTrue(ReportComparison.compare(baseline: baseline, new: baseline + [persistent, v5]).passed)
    }

    func testFormatting() {
        XCTAssertEqual(ReportComparison.grouped(1_234_567.6), "1,234,568")
        XCTAssertEqual(ReportComparison.grouped(999), "999")
        XCTAssertEqual(ReportComparison.percent(-25.4), "−25 %")
        XCTAssertEqual(ReportComparison.percent(12), "+12 %")
    }
}
