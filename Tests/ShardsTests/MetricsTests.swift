// The Prometheus rendering of the stats board: sums across shards, per-shard labels, format.

import Broker
import XCTest
@testable import Shards

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
