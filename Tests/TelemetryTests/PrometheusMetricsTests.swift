// The Prometheus rendering of the stats board: sums across shards, per-shard labels, format.

import Broker
import XCTest
@testable import Telemetry

final class MetricsTests: XCTestCase {
    func testSumsShardsAndLabelsThem() {
        var a = ShardStats(), b = ShardStats()
        a.gauges.connectedClients = 3; b.gauges.connectedClients = 4
        a.gauges.offlineSessions = 1
        a.gauges.retainedMessages = 5; b.gauges.retainedMessages = 5  // replicated on every shard: not summed
        a.gauges.counters.publishesReceived = 10; b.gauges.counters.publishesReceived = 32
        b.gauges.counters.droppedQueueFull = 7
        a.bytesSent = 100; b.bytesSent = 1
        let text = PrometheusMetrics.render([a, b], uptimeSeconds: 9, version: "1.2.3")
        let lines = Set(text.split(separator: "\n").map(String.init))
        for expected in ["apus_connections_count 7", "apus_sessions_count 8", "apus_retained_count 5",
                         "apus_messages_received_total 42", "apus_bytes_sent_total 101",
                         "apus_messages_dropped_total{reason=\"queue_full\"} 7",
                         "apus_shard_connections_count{shard=\"0\"} 3", "apus_shard_connections_count{shard=\"1\"} 4",
                         "apus_build_info{version=\"1.2.3\"} 1", "apus_uptime_seconds 9",
                         "# TYPE apus_messages_received_total counter", "# TYPE apus_connections_count gauge"] {
            XCTAssertTrue(lines.contains(expected), expected)
        }
        for line in lines where !line.hasPrefix("#") {
            XCTAssertNotNil(line.wholeMatch(of: /apus_[a-z_0-9]+(\{[a-z_]+="[^"]*"\})? [0-9]+/), line)
        }
    }
}

final class SysTopicsTests: XCTestCase {
    func testValuesWithMosquittosNamesAndLoadAverages() {
        var sys = SysTopics(intervalSeconds: 10, now: 0)
        XCTAssertFalse(sys.isDue(now: 9_999_999_999))
        XCTAssertTrue(sys.isDue(now: 10_000_000_000))
        var shard = ShardStats()
        shard.gauges.connectedClients = 2
        shard.gauges.offlineSessions = 1
        shard.gauges.counters.publishesReceived = 600
        let first = Dictionary(uniqueKeysWithValues: sys.values(now: 10_000_000_000, startedAt: 0, totals: BrokerTotals([shard]), version: "1.0").map { ($0.topic, $0.value) })
        XCTAssertEqual(first["$SYS/broker/version"], "apus 1.0")
        XCTAssertEqual(first["$SYS/broker/uptime"], "10 seconds")
        XCTAssertEqual(first["$SYS/broker/clients/total"], "3")
        XCTAssertNil(first["$SYS/broker/load/publish/received/1min"], "no rate before a second sample")
        XCTAssertFalse(sys.isDue(now: 15_000_000_000), "the next values are an interval later")
        shard.gauges.counters.publishesReceived = 1200  // 600 more in 60 s: 600 a minute
        let second = Dictionary(uniqueKeysWithValues: sys.values(now: 70_000_000_000, startedAt: 0, totals: BrokerTotals([shard]), version: "1.0").map { ($0.topic, $0.value) })
        XCTAssertEqual(second["$SYS/broker/load/publish/received/1min"], "600.00")
        XCTAssertEqual(second["$SYS/broker/clients/maximum"], "2")
    }

    func testTwoDecimalsAsPrintf() {
        XCTAssertEqual(SysTopics.twoDecimals(0), "0.00")
        XCTAssertEqual(SysTopics.twoDecimals(3.14159), "3.14")
        XCTAssertEqual(SysTopics.twoDecimals(2.675), "2.67", "2.675 is 2.67499… in binary, as printf sees it")
        XCTAssertEqual(SysTopics.twoDecimals(1.006), "1.01")
        XCTAssertEqual(SysTopics.twoDecimals(1234.5), "1234.50")
        XCTAssertEqual(SysTopics.twoDecimals(0.07), "0.07")
    }
}
