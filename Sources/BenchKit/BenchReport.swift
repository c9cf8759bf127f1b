// The load generator's report of one run: JSON for suites, CI and comparisons, one summary line
// for people. Pub/sub scenarios fill the message fields; the connection scenarios (idle,
// connect-storm) fill `connections`, `connectsPerSecond` and `rssPerConnectionKiB`, and their
// latency is the connect latency.

import Foundation

/// One run of one scenario against one broker.
public struct BenchReport: Codable, Sendable, Equatable {
    /// Latency percentiles in microseconds: end to end for messages, TCP connect to CONNACK for
    /// the connection scenarios.
    public struct Latency: Codable, Sendable, Equatable {
        public var p50, p90, p99, p999, max: UInt64
        public init(p50: UInt64 = 0, p90: UInt64 = 0, p99: UInt64 = 0, p999: UInt64 = 0, max: UInt64 = 0) {
            self.p50 = p50; self.p90 = p90; self.p99 = p99; self.p999 = p999; self.max = max
        }
    }

    public var label: String
    public var scenario: String
    public var command: String
    public var publishers: Int = 0
    public var subscribers: Int = 0
    public var qos: Int = 0
    public var size: Int = 0
    /// MQTT protocol level (3, 4 or 5); absent in reports older than the field (then 4).
    public var mqttVersion: Int? = nil
    /// False for persistent sessions (`--clean false`); absent means clean sessions.
    public var cleanSession: Bool? = nil
    public var window: Int? = nil
    public var ratePerPublisher: Double? = nil
    /// Messages per publisher (`--count`), when the run published a fixed number.
    public var countPerPublisher: Int? = nil
    public var durationSeconds: Double = 0
    public var messagesPerSecond: Double = 0
    public var bytesPerSecond: Double = 0
    public var sent: UInt64 = 0
    public var received: UInt64 = 0
    public var lost: UInt64 = 0
    public var duplicates: UInt64 = 0
    public var outOfOrder: UInt64 = 0
    /// Closed loop: times a publisher's window made no progress for a second (its messages lost)
    /// and was written off so that the publisher went on.
    public var stalledWindows: UInt64? = nil
    public var latencyMicroseconds = Latency()
    /// Connection scenarios: connections opened (idle) or CONNECT → CONNACK cycles (connect-storm).
    public var connections: Int? = nil
    /// Connection scenarios: CONNACKs accepting a connection (idle: connections held).
    public var connected: Int? = nil
    /// Connection scenarios: attempts that failed (refused, reset, timed out).
    public var connectFailures: Int? = nil
    /// Connection scenarios: CONNACKs received per second while connecting.
    public var connectsPerSecond: Double? = nil
    /// idle: the broker's RSS growth per held connection, KiB.
    public var rssPerConnectionKiB: Double? = nil
    /// idle: the broker's RSS before the first connection, KiB.
    public var brokerRSSBeforeKiB: Int? = nil
    public var brokerCPUSeconds: Double? = nil
    public var brokerCPUSecondsPerMillion: Double? = nil
    public var brokerRSSKiB: Int? = nil
    /// The broker's CPU seconds per GB of payload delivered (large-payload runs compare on it).
    public var brokerCPUSecondsPerGB: Double? = nil
    /// apus-bench's own CPU seconds (all its threads) per million messages received, over the same
    /// interval as the broker's: a load generator must cost less than what it measures.
    public var toolCPUSecondsPerMillion: Double? = nil
    /// Bytes the subscribers read per message received (packet overhead included).
    public var subscriberWireBytesPerMessage: Double? = nil
    /// Suites: the headline figure of every round (msg/s, or connects/s for connection scenarios).
    public var rounds: [Double]? = nil
    /// Suites: how this entry was chosen from the rounds, e.g. "median of 3".
    public var aggregate: String? = nil
    public var errors: [String] = []

    public init(label: String, scenario: String, command: String) {
        self.label = label; self.scenario = scenario; self.command = command
    }

    /// True for the scenarios that open connections rather than move messages.
    public var isConnectionScenario: Bool { connections != nil && publishers == 0 && subscribers == 0 }

    /// The figure a suite ranks rounds by and `compare` gates throughput on.
    public var headlineRate: Double { isConnectionScenario ? (connectsPerSecond ?? 0) : messagesPerSecond }

    /// The unit of `headlineRate`.
    public var rateUnit: String { isConnectionScenario ? "conn/s" : "msg/s" }

    /// The scenario's shape, e.g. "pairs 10→10 QoS 1 64 B" or "idle 10000 conns"; the broker label
    /// is not part of it.
    public var shape: String {
        var s = scenario
        if isConnectionScenario {
            s += " \(connections ?? 0) conns"
        } else {
            s += " \(publishers)→\(subscribers) QoS \(qos) \(size) B"
            if let rate = ratePerPublisher { s += " paced \(Int((rate * Double(publishers)).rounded())) msg/s" }
        }
        if let v = mqttVersion, v != 4 { s += " v\(v)" }
        if cleanSession == false { s += " persistent" }
        return s
    }

    /// What identifies the same measurement across reports: broker label and shape.
    public var key: String { "\(label) \(shape)" }

    public var summary: String {
        var s = "\(label) \(shape): "
        if isConnectionScenario {
            s += "\(Int(connectsPerSecond ?? 0)) conn/s, connected=\(connected ?? 0) failed=\(connectFailures ?? 0), "
            s += "connect latency µs p50=\(latencyMicroseconds.p50) "
            s += "p99=\(latencyMicroseconds.p99) max=\(latencyMicroseconds.max)"
            if let per = rssPerConnectionKiB { s += String(format: ", broker RSS %.1f KiB/conn", per) }
        } else {
            s += "\(Int(messagesPerSecond)) msg/s, "
            s += "sent=\(sent) received=\(received) lost=\(lost) dup=\(duplicates) ooo=\(outOfOrder), "
            if let stalls = stalledWindows { s += "stalled windows=\(stalls), " }
            s += "latency µs p50=\(latencyMicroseconds.p50) p99=\(latencyMicroseconds.p99) max=\(latencyMicroseconds.max)"
        }
        if let cpu = brokerCPUSecondsPerMillion {
            s += String(format: ", broker CPU %.2f s/M ", cpu) + (isConnectionScenario ? "conns" : "msgs")
        }
        if let cpu = toolCPUSecondsPerMillion { s += String(format: " (apus-bench %.2f)", cpu) }
        if let rss = brokerRSSKiB { s += ", broker RSS \(rss / 1024) MiB" }
        if let wire = subscriberWireBytesPerMessage { s += String(format: ", %.1f wire B/msg", wire) }
        if !errors.isEmpty { s += "\nerrors: " + errors.joined(separator: "; ") }
        return s
    }
}

/// A suite run: where and how it was measured, and one aggregated entry per broker and scenario.
public struct SuiteReport: Codable, Sendable {
    public var suite: String
    public var command: String
    /// UTC, ISO 8601.
    public var date: String
    public var machine: String
    public var rounds: Int
    public var aggregate: String
    /// Broker label → how it was started (command line, and the generated config for Mosquitto).
    public var brokers: [String: String]
    public var results: [BenchReport]

    public init(suite: String, command: String, date: String, machine: String, rounds: Int, aggregate: String,
                brokers: [String: String], results: [BenchReport]) {
        self.suite = suite; self.command = command; self.date = date; self.machine = machine
        self.rounds = rounds; self.aggregate = aggregate; self.brokers = brokers; self.results = results
    }
}

extension BenchReport {
    /// Reads a suite report, an array of reports, or a single report.
    public static func load(_ data: Data) throws -> [BenchReport] {
        let decoder = JSONDecoder()
        if let suite = try? decoder.decode(SuiteReport.self, from: data) { return suite.results }
        if let many = try? decoder.decode([BenchReport].self, from: data) { return many }
        return [try decoder.decode(BenchReport.self, from: data)]
    }

    /// Pretty, key-sorted JSON.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}
