// $SYS/broker/... topics with mosquitto's names and value formats, computed from the totals of
// every shard every sys_interval seconds; the load averages are exponential moving averages of
// per-minute rates over 1, 5 and 15 minutes, as mosquitto computes them. Pure: totals and a time
// in, (topic, value) pairs out; shard 0's runtime publishes them as retained QoS 0 messages.

import Broker
@preconcurrency import Glibc

public struct SysTopics {
    let interval: UInt64
    var due: UInt64
    var maximumConnected = 0
    var previous: (time: UInt64, totals: [String: UInt64])? = nil
    /// Exponential moving averages per minute: key → (1, 5, 15 minutes).
    var loads: [String: (Double, Double, Double)] = [:]

    /// Values every `intervalSeconds` (0: never), the first `intervalSeconds` after `now`.
    public init(intervalSeconds: Int, now: UInt64) {
        interval = UInt64(intervalSeconds) * 1_000_000_000
        due = now + interval
    }

    /// Whether values are due at `now`.
    public func isDue(now: UInt64) -> Bool { interval > 0 && now >= due }

    /// The topics (with the `$SYS/broker/` prefix) and their values at `now`; the next are due an
    /// interval later.
    public mutating func values(now: UInt64, startedAt: UInt64, totals t: BrokerTotals, version: String) -> [(topic: String, value: String)] {
        due = now + interval
        maximumConnected = max(maximumConnected, t.connectedClients)
        let c = t.counters
        var values: [(String, String)] = [
            ("version", "apus \(version)"),
            ("uptime", "\((now - startedAt) / 1_000_000_000) seconds"),
            ("clients/connected", "\(t.connectedClients)"),
            ("clients/disconnected", "\(t.offlineSessions)"),
            ("clients/total", "\(t.connectedClients + t.offlineSessions)"),
            ("clients/maximum", "\(maximumConnected)"),
            ("messages/received", "\(t.packetsReceived)"),
            ("messages/sent", "\(c.publishesDelivered)"),
            ("messages/stored", "\(t.storedMessages + t.retainedMessages)"),
            ("publish/messages/received", "\(c.publishesReceived)"),
            ("publish/messages/sent", "\(c.publishesDelivered)"),
            ("publish/messages/dropped", "\(c.dropped)"),
            ("bytes/received", "\(t.bytesReceived)"),
            ("bytes/sent", "\(t.bytesSent)"),
            ("subscriptions/count", "\(t.subscriptions)"),
            ("retained messages/count", "\(t.retainedMessages)"),
            ("publishers/throttled", "\(t.publishersThrottledNow)"),
            ("publishers/throttled/total", "\(c.publishersThrottled)"),
            ("publishers/throttled/seconds", "\(c.throttledNanoseconds / 1_000_000_000)"),
            ("publishers/paused/total", "\(c.publishersPaused)"),
            ("clients/stalled/disconnected", "\(c.stalledSubscribersDisconnected)"),
            ("tls/connections", "\(t.tlsConnections)"),
            ("tls/handshakes", "\(t.tlsHandshakes)"),
            ("tls/handshake failures", "\(t.tlsHandshakeFailures)"),
            ("websockets/connections", "\(t.wsConnections)"),
            ("websockets/upgrades", "\(t.wsUpgrades)"),
        ]
        let rated: [(String, UInt64)] = [
            ("messages/received", t.packetsReceived), ("messages/sent", c.publishesDelivered),
            ("publish/received", c.publishesReceived), ("publish/sent", c.publishesDelivered),
            ("bytes/received", t.bytesReceived), ("bytes/sent", t.bytesSent), ("connections", c.connectionsAccepted),
        ]
        if let previous {
            let seconds = Double(now - previous.time) / 1e9
            for (key, total) in rated {
                // Per minute, smoothed over 1, 5 and 15 minutes as mosquitto does.
                let rate = Double(total &- (previous.totals[key] ?? 0)) / seconds * 60
                var (l1, l5, l15) = loads[key] ?? (rate, rate, rate)
                l1 = rate + exp(-seconds / 60) * (l1 - rate)
                l5 = rate + exp(-seconds / 300) * (l5 - rate)
                l15 = rate + exp(-seconds / 900) * (l15 - rate)
                loads[key] = (l1, l5, l15)
                for (suffix, value) in [("1min", l1), ("5min", l5), ("15min", l15)] {
                    values.append(("load/\(key)/\(suffix)", SysTopics.twoDecimals(value)))
                }
            }
        }
        previous = (now, Dictionary(uniqueKeysWithValues: rated))
        return values.map { ("$SYS/broker/" + $0.0, $0.1) }
    }

    /// `value` with two decimals: mosquitto's "%.2f", by the C library (no Foundation here).
    static func twoDecimals(_ value: Double) -> String {
        var text = [CChar](repeating: 0, count: 64)
        _ = withVaList([value]) { vsnprintf(&text, text.count, "%.2f", $0) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
