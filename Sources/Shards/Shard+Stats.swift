// What a shard reports: drop counters logged at most once per tick, its numbers copied to the
// stats board once a second (shard 0 publishes $SYS from the board), refused logins logged with
// the peer's address.

import Broker
import Logging
import Telemetry

extension Shard {
    /// Dropped messages are counted by the core and logged here, at most once per tick.
    func logDrops() {
        let c = core.counters
        func report(_ level: Logger.Level, _ message: Logger.Message, _ total: UInt64, _ logged: UInt64) {
            if total != logged { logger.log(level: level, message, metadata: ["new": "\(total - logged)", "total": "\(total)"]) }
        }
        report(.warning, "QoS 1/2 messages dropped: subscriber queues full (max_queued_messages)", c.droppedQueueFull, loggedDrops.queueFull)
        report(.notice, "QoS 0 messages dropped for slow subscribers", c.droppedQoS0, loggedDrops.qos0)
        report(.info, "messages not sent: larger than the client's Maximum Packet Size", c.droppedTooLarge, loggedDrops.tooLarge)
        report(.warning, "PUBLISHes refused: payload over message_size_limit", c.droppedOverSizeLimit, loggedDrops.overLimit)
        loggedDrops = (c.droppedQueueFull, c.droppedQoS0, c.droppedTooLarge, c.droppedOverSizeLimit)
    }

    /// Copies this shard's numbers to the stats board (once a second); shard 0 publishes $SYS.
    func reportStats(now: UInt64) {
        statsDue = now + 1_000_000_000
        var stats = ShardStats()
        stats.gauges = core.gauges()
        stats.bytesReceived = bytesReceived
        stats.bytesSent = bytesSent
        stats.packetsReceived = core.packetsReceived
        stats.tlsConnections = tlsConnections
        stats.tlsHandshakes = tlsHandshakes
        stats.tlsHandshakeFailures = tlsHandshakeFailures
        stats.tlsHandshakesRefused = tlsHandshakesRefused
        stats.wsConnections = wsConnections
        stats.wsUpgrades = wsUpgrades
        stats.wsUpgradesRefused = wsUpgradesRefused
        stats.wsProtocolErrors = wsProtocolErrors
        if let log = storeLog {
            stats.storeBytesWritten = log.bytesWritten
            stats.storeFailures = log.totalFailures
            stats.storeCompactions = log.compactions
            stats.storeSegmentBytes = log.offset
            stats.storeWaitingConnections = core.storeWaitingConnections
        }
        group.stats.update(shard: index, stats)
        if index == 0 {
            if sys == nil { sys = SysTopics(intervalSeconds: group.config.sysIntervalSeconds, now: now) }
            if sys!.isDue(now: now) {
                let totals = BrokerTotals(group.stats.snapshot())
                for (topic, value) in sys!.values(now: now, startedAt: group.stats.startedAt, totals: totals, version: group.config.version) {
                    core.publishFromBroker(topic: topic, payload: Array(value.utf8), retain: true)
                }
                if group.config.cluster != nil {
                    for (topic, value) in group.clusterBoard.read().sysTopics() {
                        core.publishFromBroker(topic: topic, payload: Array(value.utf8), retain: true)
                    }
                }
            }
        }
    }

    /// Logs refused logins with the client id, user name and the peer's address (as mosquitto does).
    func logAuthenticationFailures() {
        for failure in core.takeAuthenticationFailures() {
            let slot = Int(failure.connection.slot)
            var peer = "unknown"
            if slot < sockets.count, sockets[slot].fd >= 0, sockets[slot].generation == failure.connection.generation {
                peer = peerAddress(slot: slot)
            }
            logger.warning("login refused", metadata: [
                "client_id": "\(failure.clientID)", "username": "\(failure.username ?? "")", "address": "\(peer)",
                "reason": "\(failure.reason)",
            ])
        }
    }
}
