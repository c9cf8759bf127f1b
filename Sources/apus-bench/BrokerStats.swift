// The load generator's report: JSON for CI and comparisons, one summary line for people.

import Foundation

struct BenchReport: Codable {
    struct Latency: Codable { var p50, p90, p99, p999, max: UInt64 }
    var label: String
    var scenario: String
    var command: String
    var publishers: Int
    var subscribers: Int
    var qos: Int
    var size: Int
    var window: Int?
    var ratePerPublisher: Double?
    var durationSeconds: Double
    var messagesPerSecond: Double
    var bytesPerSecond: Double
    var sent: UInt64
    var received: UInt64
    var lost: UInt64
    var duplicates: UInt64
    var outOfOrder: UInt64
    var latencyMicroseconds: Latency
    var brokerCPUSeconds: Double? = nil
    var brokerCPUSecondsPerMillion: Double? = nil
    var brokerRSSKiB: Int? = nil
    /// Bytes the subscribers read per message received (packet overhead included).
    var subscriberWireBytesPerMessage: Double? = nil
    var errors: [String]

    var summary: String {
        var s = "\(label) \(scenario) \(publishers)→\(subscribers) qos=\(qos) size=\(size): \(Int(messagesPerSecond)) msg/s, "
        s += "sent=\(sent) received=\(received) lost=\(lost) dup=\(duplicates) ooo=\(outOfOrder), "
        s += "latency µs p50=\(latencyMicroseconds.p50) p99=\(latencyMicroseconds.p99) max=\(latencyMicroseconds.max)"
        if let cpu = brokerCPUSecondsPerMillion { s += String(format: ", broker CPU %.2f s/M msgs", cpu) }
        if let rss = brokerRSSKiB { s += ", broker RSS \(rss / 1024) MiB" }
        if let wire = subscriberWireBytesPerMessage { s += String(format: ", %.1f wire B/msg", wire) }
        if !errors.isEmpty { s += "\nerrors: " + errors.joined(separator: "; ") }
        return s
    }
}

/// Reads a process's CPU time and RSS from /proc.
enum BrokerStats {
    static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func rssKiB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "")
        }
        return nil
    }
}
