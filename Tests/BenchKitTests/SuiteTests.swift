// Suite files and reports: decoding, and how rounds become one entry without hiding a bad round.

import XCTest
import Foundation
import BenchKit

final class SuiteTests: XCTestCase {
    func run(_ rate: Double, lost: UInt64 = 0, errors: [String] = []) -> BenchReport {
        var r = BenchReport(label: "apus", scenario: "pairs", command: "")
        r.publishers = 10; r.subscribers = 10; r.qos = 1; r.size = 64
        r.messagesPerSecond = rate
        r.lost = lost
        r.errors = errors
        return r
    }

    func testMedianOfThreeKeepsTheWorstLossAndAllErrors() {
        let r = RoundAggregation.median.combine([run(300), run(100, lost: 2), run(200, errors: ["boom"])])
        XCTAssertEqual(r.messagesPerSecond, 200)
        XCTAssertEqual(r.rounds, [300, 100, 200])
        XCTAssertEqual(r.aggregate, "median of 3")
        XCTAssertEqual(r.lost, 2)
        XCTAssertEqual(r.errors, ["round 3: boom"])
    }

    func testBestAndEvenMedian() {
        XCTAssertEqual(RoundAggregation.best.combine([run(300), run(100)]).messagesPerSecond, 300)
        XCTAssertEqual(RoundAggregation.median.combine([run(300), run(100)]).messagesPerSecond, 100)
    }

    func testConnectionScenariosRankByConnectRate() {
        var a = BenchReport(label: "apus", scenario: "connect-storm", command: "")
        a.connections = 1000; a.connectsPerSecond = 5000
        var b = a
        b.connectsPerSecond = 9000
        XCTAssertTrue(a.isConnectionScenario)
        XCTAssertEqual(RoundAggregation.best.combine([a, b]).connectsPerSecond, 9000)
        XCTAssertEqual(a.shape, "connect-storm 1000 conns")
    }

    func testPacedRunsAreAShapeOfTheirOwn() {
        var closed = BenchReport(label: "apus", scenario: "pairs", command: "")
        closed.publishers = 10; closed.subscribers = 10; closed.size = 64; closed.window = 64
        var paced = closed
        paced.window = nil; paced.ratePerPublisher = 10_000
        XCTAssertEqual(closed.shape, "pairs 10→10 QoS 0 64 B")
        XCTAssertEqual(paced.shape, "pairs 10→10 QoS 0 64 B paced 100000 msg/s")
    }

    func testSuiteFileDecodes() throws {
        let json = """
            {"name": "ci", "rounds": 2, "aggregate": "best", "warmup": 1, "duration": 3,
             "scenarios": [{"scenario": "pairs", "args": ["--pairs", "10"]},
                           {"scenario": "idle", "args": ["-c", "1000"], "duration": 1}]}
            """
        let spec = try JSONDecoder().decode(SuiteSpec.self, from: Data(json.utf8))
        XCTAssertEqual(spec.aggregation, .best)
        XCTAssertEqual(spec.scenarios[1].duration, 1)
        XCTAssertNil(spec.scenarios[0].duration)
    }

    func testReportsLoadFromEveryShape() throws {
        let one = run(100)
        let suite = SuiteReport(suite: "ci", command: "apus-bench suite", date: "2026-11-23T00:00:00Z", machine: "Linux",
                                rounds: 1, aggregate: "median", brokers: [:], results: [one, one])
        XCTAssertEqual(try BenchReport.load(BenchReport.encode(suite)).count, 2)
        XCTAssertEqual(try BenchReport.load(BenchReport.encode([one, one, one])).count, 3)
        XCTAssertEqual(try BenchReport.load(BenchReport.encode(one)), [one])
    }

    func testOlderReportsWithoutNewFieldsLoad() throws {
        let old = """
            {"label": "apus", "scenario": "pairs", "command": "x", "publishers": 10, "subscribers": 10, "qos": 0,
             "size": 64, "durationSeconds": 3, "messagesPerSecond": 1000, "bytesPerSecond": 64000, "sent": 3000,
             "received": 3000, "lost": 0, "duplicates": 0, "outOfOrder": 0,
             "latencyMicroseconds": {"p50": 1, "p90": 2, "p99": 3, "p999": 4, "max": 5}, "errors": []}
            """
        let r = try XCTUnwrap(BenchReport.load(Data(old.utf8)).first)
        XCTAssertEqual(r.key, "apus pairs 10→10 QoS 0 64 B")
        XCTAssertNil(r.connections)
    }
}
