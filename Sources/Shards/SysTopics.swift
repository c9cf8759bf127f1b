// $SYS/broker/... topics, published by shard 0 every sys_interval seconds as retained QoS 0
// messages, with mosquitto's names and value formats, from the totals of every shard.

import Broker
import Foundation

struct SysPublisher {
    let interval: UInt64
    var due: UInt64
    var maximumConnected = 0
    var previous: (time: UInt64, totals: [String: UInt64])? = nil
    /// Exponential moving averages per minute: key → (1, 5, 15 minutes).
    var loads: [String: (Double, Double, Double)] = [:]

    init(intervalSeconds: Int, now: UInt64) {
        interval = UInt64(intervalSeconds) * 1_000_000_000
        due = now + interval
    }

    mutating func publishIfDue(now: UInt64, board: StatsBoard, core: ShardCore, version: String) {
        guard interval > 0, now >= due else { return }
        due = now + interval
        let t = BrokerTotals(board.snapshot())
        maximumConnected = max(maximumConnected, t.connectedClients)
        let c = t.counters
        let dropped = c.dropped
        var values: [(String, String)] = [
            ("version", "apus \(version)"),
            ("uptime", "\((now - board.startedAt) / 1_000_000_000) seconds"),
            ("clients/connected", "\(t.connectedClients)"),
            ("clients/disconnected", "\(t.offlineSessions)"),
            ("clients/total", "\(t.connectedClients + t.offlineSessions)"),
            ("clients/maximum", "\(maximumConnected)"),
            ("messages/received", "\(t.packetsReceived)"),
            ("messages/sent", "\(c.publishesDelivered)"),
            ("messages/stored", "\(t.storedMessages + t.retainedMessages)"),
            ("publish/messages/received", "\(c.publishesReceived)"),
            ("publish/messages/sent", "\(c.publishesDelivered)"),
            ("publish/messages/dropped", "\(dropped)"),
            ("bytes/received", "\(t.bytesReceived)"),
            ("bytes/sent", "\(t.bytesSent)"),
            ("subscriptions/count", "\(t.subscriptions)"),
            ("retained messages/count", "\(t.retainedMessages)"),
            ("publishers/throttled", "\(t.publishersThrottledNow)"),
            ("publishers/throttled/total", "\(c.publishersThrottled)"),
            ("publishers/throttled/seconds", "\(c.throttledNanoseconds / 1_000_000_000)"),
            ("publishers/paused/total", "\(c.publishersPaused)"),
            ("clients/stalled/disconnected", "\(c.stalledSubscribersDisconnected)"),
        ]
        let rated: [String: UInt64] = [
            "messages/received": t.packetsReceived, "messages/sent": c.publishesDelivered,
            "publish/received": c.publishesReceived, "publish/sent": c.publishesDelivered,
            "bytes/received": t.bytesReceived, "bytes/sent": t.bytesSent, "connections": c.connectionsAccepted,
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
                    values.append(("load/\(key)/\(suffix)", String(format: "%.2f", value)))
                }
            }
        }
        previous = (now, rated)
        for (name, value) in values {
            core.publishFromBroker(topic: "$SYS/broker/" + name, payload: Array(value.utf8), retain: true)
        }
    }
}
