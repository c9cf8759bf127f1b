// Retained messages. Every shard keeps a full replica of the retained store, so a SUBSCRIBE is
// answered from local memory. A retained PUBLISH updates the local replica and is broadcast to
// every other shard; replicas order updates by a stamp (time and origin node and shard), so all
// shards converge on the same last message per topic even when two shards race.

import Codec
import ShardContract
import Router

/// One retained message (owned bytes: it outlives the packet it came from).
public struct RetainedMessage: Sendable {
    public var topic: [UInt8]
    public var payload: [UInt8]
    public var qos: QoS
    /// v5 PUBLISH properties (no Topic Alias), passed on when the message is sent.
    public var properties: [UInt8]
    /// When (the origin's monotonic nanoseconds) and where it was stored: the later stamp wins.
    public var stamp: RetainedStamp

    /// The properties with the Message Expiry Interval set to what is left at `now`, or nil when
    /// the message has expired (and must not be sent any more [MQTT-3.3.2-5]).
    func propertiesRemaining(at now: UInt64) -> [UInt8]? {
        var copy = properties
        let expiry = copy.withUnsafeBytes { PropertyBlock.messageExpiry($0) }
        guard let expiry else { return copy }
        let expiresAt = stamp.time + UInt64(expiry.seconds) * 1_000_000_000
        guard now < expiresAt else { return nil }
        let remaining = UInt32(min((expiresAt - now + 999_999_999) / 1_000_000_000, UInt64(UInt32.max)))
        copy.withUnsafeMutableBytes { PropertyBlock.writeUInt32(remaining, at: $0.baseAddress! + expiry.offset) }
        return copy
    }
}

extension ShardCore {
    /// A PUBLISH with the retain flag from a local client: store or delete [MQTT-3.3.1-5, -10],
    /// replicate. Returns whether a record for the durable store was appended (its
    /// acknowledgement waits for it).
    @discardableResult
    func retain(topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, qos: QoS, properties: UnsafeRawBufferPointer) -> Bool {
        let message = RetainedMessage(topic: Array(topic), payload: Array(payload), qos: qos, properties: Array(properties),
                                      stamp: RetainedStamp(time: currentTime, origin: address))
        applyRetained(message, remote: false)
        let stored = storesRetained(topic: topic)
        if stored {
            storeRetained(topic: topic, payload: payload, qos: qos, properties: properties, stamp: message.stamp)
            if payload.isEmpty { deletionsSinceSnapshot[message.topic] = message.stamp }
        }
        guard meshSize > 1 else { return stored }
        message.topic.withUnsafeBytes { topic in
            message.properties.withUnsafeBytes { properties in
                message.payload.withUnsafeBytes { payload in
                    let update = RetainedUpdate(qos: qos, stamp: message.stamp, topic: topic, properties: properties, payload: payload)
                    for target in 0..<meshSize where target != shardIndex { send(.retain(update), to: target) }
                }
            }
        }
        return stored
    }

    /// Applies an update to this shard's replica if it is newer than what is stored. An update
    /// from another shard that replaces or deletes a message this shard owns (and stored) is
    /// stored here too: this shard's log then no longer brings the old message back, whatever
    /// becomes of the other shard's records.
    func applyRetained(_ message: RetainedMessage, remote: Bool) {
        var releaseOwned = false
        let address = self.address
        message.topic.withUnsafeBytes { topic in
            retained.update(forTopic: topic) { value in
                if let stamp = value?.stamp {
                    if stamp > message.stamp { return }
                    releaseOwned = remote && stamp.origin == address
                }
                // An empty payload deletes; the deletion's stamp is not kept (a late older update may
                // resurrect the message on one replica, which needs two shards racing on one topic).
                value = message.payload.isEmpty ? nil : message
            }
        }
        if releaseOwned && config.persistence {
            // This shard's log holds the message just replaced: it stores what replaced it (the
            // other shard's message or deletion, with its stamp), so its log never brings the old
            // one back, and if the other shard's record is not durable yet, a crash leaves the
            // newer message, not neither.
            message.topic.withUnsafeBytes { t in
                guard storesRetained(topic: t) else { return }
                message.payload.withUnsafeBytes { payload in
                    message.properties.withUnsafeBytes { properties in
                        storeRetained(topic: t, payload: payload, qos: message.qos, properties: properties, stamp: message.stamp)
                    }
                }
            }
        }
    }

    /// Encodes the retained messages matching `filter` for a new subscription into `buffer`, with the
    /// retain flag set [MQTT-3.3.1-8] at min(message QoS, granted QoS).
    func encodeRetained(matching filter: String, granted: QoS, slot s: Int, into buffer: inout ByteBuffer) {
        let version = connections[s].version
        for message in retained.values(matching: filter) {
            if connections[s].accessCheckDeliveries, let access = connections[s].access,
               !message.topic.withUnsafeBytes({ access.canReceive($0) }) { continue }
            let qos = min(message.qos, granted)
            guard let remainingProperties = message.propertiesRemaining(at: currentTime) else { continue }
            message.topic.withUnsafeBytes { topic in
                message.payload.withUnsafeBytes { payload in
                    remainingProperties.withUnsafeBytes { stored in
                        let properties = version == .v5 ? stored : UnsafeRawBufferPointer(start: nil, count: 0)
                        if qos == .atMostOnce {
                            PublishEncoder.encode(version: version, dup: false, qos: qos, retain: true, topic: topic, packetID: 0,
                                                  properties: properties, payload: payload, into: &buffer)
                            counters.publishesDelivered += 1
                            return
                        }
                        let stored = StoredMessage(topic: topic, properties: properties, payload: payload, qos: qos, retain: true,
                                                   now: currentTime)
                        if connections[s].session.queue.isEmpty && connections[s].session.inflight.count < inflightWindow(s) {
                            // `buffer` may wait behind a SUBACK barrier: no aliases here.
                            send(stored, slot: s, into: &buffer, useAliases: false)
                        } else {
                            enqueue(stored, slot: s)
                        }
                    }
                }
            }
        }
    }
}
