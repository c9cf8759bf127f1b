// GET /metrics: the stats board in Prometheus' text format (version 0.0.4), with `apus_` names
// that mirror EMQX's (emqx_connections_count → apus_connections_count, ...). Each shard's slot is
// its last report (at most a second old); the sums are taken here, at scrape time.

import Broker

public enum PrometheusMetrics {
    public static func render(_ shards: [ShardStats], uptimeSeconds: UInt64, version: String) -> String {
        let t = BrokerTotals(shards)
        let c = t.counters
        var out = ""
        out.reserveCapacity(6 << 10)

        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String = "", _ value: some BinaryInteger) {
            out += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
        }
        func metric(_ name: String, _ type: String, _ help: String, _ value: some BinaryInteger) {
            family(name, type, help)
            sample(name, "", value)
        }

        family("apus_build_info", "gauge", "Apus version (the value is always 1).")
        sample("apus_build_info", "version=\"\(version)\"", 1)
        metric("apus_uptime_seconds", "gauge", "Seconds since the broker started.", uptimeSeconds)
        metric("apus_shards", "gauge", "Shards (threads with their own io_uring ring).", shards.count)

        metric("apus_connections_count", "gauge", "Clients connected now.", t.connectedClients)
        metric("apus_sessions_count", "gauge", "Sessions: connected clients plus offline persistent sessions.",
               t.connectedClients + t.offlineSessions)
        metric("apus_subscriptions_count", "gauge", "Subscriptions of all sessions (shared ones included).", t.subscriptions)
        metric("apus_retained_count", "gauge", "Retained messages.", t.retainedMessages)
        metric("apus_messages_stored_count", "gauge", "QoS 1/2 messages held by sessions (in flight or queued).",
               t.storedMessages)

        metric("apus_messages_received_total", "counter", "PUBLISH packets received from clients.", c.publishesReceived)
        metric("apus_messages_sent_total", "counter", "PUBLISH packets delivered to subscribers.", c.publishesDelivered)
        metric("apus_messages_forwarded_total", "counter", "Messages passed to another shard.", c.publishesForwarded)
        family("apus_messages_dropped_total", "counter", "Messages not delivered, by reason.")
        let reasons: [(String, UInt64)] = [
            ("queue_full", c.droppedQueueFull), ("slow_consumer_qos0", c.droppedQoS0),
            ("packet_too_large", c.droppedTooLarge), ("expired", c.droppedExpired),
            ("no_shared_member", c.droppedNoSharedMember), ("message_size_limit", c.droppedOverSizeLimit),
            ("publish_not_authorized", c.publishesDenied), ("delivery_not_authorized", c.deliveriesDenied),
            ("store_unavailable", c.publishesRefusedUnstorable),
        ]
        for (reason, value) in reasons { sample("apus_messages_dropped_total", "reason=\"\(reason)\"", value) }
        metric("apus_packets_received_total", "counter", "MQTT packets of any type received.", t.packetsReceived)
        metric("apus_bytes_received_total", "counter", "Bytes received from clients.", t.bytesReceived)
        metric("apus_bytes_sent_total", "counter", "Bytes sent to clients.", t.bytesSent)

        metric("apus_connections_accepted_total", "counter", "TCP connections accepted.", c.connectionsAccepted)
        metric("apus_tls_connections", "gauge", "Connections open on TLS listeners.", UInt64(t.tlsConnections))
        metric("apus_tls_handshakes_total", "counter", "TLS handshakes completed.", t.tlsHandshakes)
        metric("apus_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out.", t.tlsHandshakeFailures)
        metric("apus_tls_handshakes_refused_total", "counter", "TLS connections closed at once: the shard had its maximum of handshakes running.",
               t.tlsHandshakesRefused)
        metric("apus_websocket_connections", "gauge", "Connections open on WebSocket listeners.", UInt64(t.wsConnections))
        metric("apus_websocket_upgrades_total", "counter", "WebSocket upgrades answered 101.", t.wsUpgrades)
        metric("apus_websocket_upgrades_refused_total", "counter", "WebSocket upgrade requests refused (4xx).", t.wsUpgradesRefused)
        metric("apus_websocket_protocol_errors_total", "counter",
               "WebSocket connections closed for a protocol error (unmasked, text or oversized frame, bad encoding).",
               t.wsProtocolErrors)
        metric("apus_connections_refused_total", "counter", "CONNECTs refused (CONNACK with an error code).",
               c.connectionsRefused)
        metric("apus_authentication_failures_total", "counter", "Refused logins (bad credentials, anonymous, failed AUTH).",
               c.authenticationFailures)
        metric("apus_slow_consumers_disconnected_total", "counter", "Clients disconnected for not reading (0x97).",
               c.slowConsumersDisconnected)
        metric("apus_publishers_throttled_count", "gauge",
               "Publishers whose PUBACK/PUBREC are held now because a subscriber's queue is long (flow control).",
               t.publishersThrottledNow)
        metric("apus_publishers_throttled_total", "counter", "Times a publisher was throttled by flow control.",
               c.publishersThrottled)
        metric("apus_publishers_throttled_seconds_total", "counter", "Time publishers spent throttled, summed.",
               c.throttledNanoseconds / 1_000_000_000)
        metric("apus_publishers_paused_total", "counter",
               "Times flow control stopped reading a publisher that does not wait for its acknowledgements.",
               c.publishersPaused)
        metric("apus_stalled_subscribers_disconnected_total", "counter",
               "Subscribers disconnected for acknowledging nothing for subscriber_stall_timeout while publishers waited.",
               c.stalledSubscribersDisconnected)
        metric("apus_partial_packet_bytes", "gauge", "Bytes held by partially received packets.", t.partialPacketBytes)
        metric("apus_partial_packet_cutoffs_total", "counter",
               "Connections cut off because partial packets went over partial_packet_memory_limit.", c.partialPacketsCutOff)
        metric("apus_store_bytes_written_total", "counter", "Bytes the shards wrote to their store logs (persistence).",
               t.storeBytesWritten)
        metric("apus_store_failures_total", "counter",
               "Store log writes or syncs that failed (a full disk); retried every second while acknowledgements wait.",
               t.storeFailures)
        metric("apus_store_compactions_total", "counter", "Store segments replaced by a snapshot.", t.storeCompactions)
        metric("apus_store_segment_bytes", "gauge", "Bytes of the shards' current store segments.", t.storeSegmentBytes)
        metric("apus_store_waiting_connections", "gauge",
               "Connections whose acknowledgements wait for their records to be durable.", t.storeWaitingConnections)
        metric("apus_protocol_errors_total", "counter", "Connections ended for a protocol violation.", c.protocolErrors)
        metric("apus_subscriptions_denied_total", "counter", "Subscriptions refused by the ACL.", c.subscriptionsDenied)
        metric("apus_sessions_resumed_total", "counter", "Persistent sessions resumed by a reconnecting client.",
               c.sessionsResumed)
        metric("apus_sessions_expired_total", "counter", "Offline sessions discarded at expiry.", c.sessionsExpired)

        // Per shard: how evenly SO_REUSEPORT spread the load.
        let perShard: [(String, String, String, (ShardStats) -> UInt64)] = [
            ("apus_shard_connections_count", "gauge", "Clients connected to each shard.", { UInt64($0.gauges.connectedClients) }),
            ("apus_shard_messages_received_total", "counter", "PUBLISH packets received by each shard.",
             { $0.gauges.counters.publishesReceived }),
            ("apus_shard_messages_sent_total", "counter", "PUBLISH packets delivered by each shard.",
             { $0.gauges.counters.publishesDelivered }),
            ("apus_shard_bytes_received_total", "counter", "Bytes received by each shard.", { $0.bytesReceived }),
            ("apus_shard_bytes_sent_total", "counter", "Bytes sent by each shard.", { $0.bytesSent }),
        ]
        for (name, type, help, value) in perShard {
            family(name, type, help)
            for (i, s) in shards.enumerated() { sample(name, "shard=\"\(i)\"", value(s)) }
        }
        return out
    }
}
