// Sending and receiving shard messages (the contract is ShardContract's ShardMessage): records go
// into the per-target outbox, which the runtime moves into the mailboxes; records that arrive are
// decoded once and dispatched here.

import Codec
import ShardContract

extension ShardCore {
    /// This shard as records name it.
    @inline(__always) var address: ShardAddress { ShardAddress(node: config.nodeID, shard: shardIndex) }

    /// Appends `message` to the outbox of shard `target` (another shard of this node).
    @inline(__always)
    func send(_ message: ShardMessage, to target: Int) {
        ShardRecordCodec.encode(message, origin: address, into: &shardOutbox[target])
    }

    /// `send` for messages that carry a filter (and a group) held as strings: their UTF-8 is
    /// borrowed, not copied.
    func send(filter: String, group: String = "", to target: Int, _ make: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> ShardMessage) {
        var f = filter, g = group  // withUTF8 on native strings: no copy, no allocation
        f.withUTF8 { filterBytes in
            g.withUTF8 { groupBytes in
                send(make(UnsafeRawBufferPointer(filterBytes), UnsafeRawBufferPointer(groupBytes)), to: target)
            }
        }
    }

    /// The length of the record at `pointer` (its first field).
    @inline(__always)
    public static func shardMessageLength(_ pointer: UnsafeRawPointer) -> Int {
        ShardRecordCodec.recordLength(pointer)
    }

    /// A record from another shard (exactly one record's bytes). One that does not decode is
    /// counted and dropped: the records come from this process's own code, so that is a bug,
    /// and the shard keeps serving.
    public func receiveShardMessage(_ record: UnsafeRawBufferPointer) {
        if ShardRecordCodec.kind(record) == .publish {
            // The data path: no ShardMessage is built.
            do {
                let (origin, p) = try ShardRecordCodec.decodePublish(record)
                route(qos: p.qos, retain: p.retain, topic: p.topic, properties: p.properties, payload: p.payload,
                      origin: p.origin, originShard: Int(origin.shard), forwardToShards: false)
            } catch {
                counters.shardRecordsRefused += 1
            }
            return
        }
        if ShardRecordCodec.kind(record) == .publishShared {
            do {
                let (origin, p, shared) = try ShardRecordCodec.decodePublishShared(record)
                // The sessions here hold the same bytes (deliverReliable finds them as the frame).
                let outer = currentFrame
                currentFrame = shared
                route(qos: p.qos, retain: p.retain, topic: p.topic, properties: p.properties, payload: p.payload,
                      origin: p.origin, originShard: Int(origin.shard), forwardToShards: false)
                currentFrame = outer
            } catch {
                counters.shardRecordsRefused += 1
            }
            return
        }
        let decoded: ShardRecord
        do {
            decoded = try ShardRecordCodec.decode(record)
        } catch {
            counters.shardRecordsRefused += 1
            return
        }
        let origin = Int(decoded.origin.shard)
        switch decoded.message {
        case .publish(let p):
            route(qos: p.qos, retain: p.retain, topic: p.topic, properties: p.properties, payload: p.payload,
                  origin: p.origin, originShard: origin, forwardToShards: false)
        case .routeAdd(let filter, let time):
            trie.update(filter: filter) { entry in
                var e = entry ?? RouteEntry()
                e.remote.insert(origin)
                entry = e
            }
            if time != .max { replayRecent(to: origin, filter: filter, since: time &- min(time, RecentPublishes.concurrencyNanoseconds)) }
        case .replayPublish(let p, let filter):
            deliverReplay(p, originShard: origin, filter: filter)
        case .routeRemove(let filter, _):
            trie.update(filter: filter) { entry in
                guard var e = entry else { return }
                e.remote.remove(origin)
                entry = e.isEmpty ? nil : e
            }
        case .barrier(let token):
            send(.barrierAck(token: token), to: origin)
        case .barrierAck(let token):
            barrierAcknowledged(token)
        case .storeBarrier(let token):
            receiveStoreBarrier(token, from: origin)
        case .storeBarrierAck(let token):
            storeBarrierAcknowledged(token)
        case .client(let clientMessage):
            receiveClientMessage(clientMessage, from: origin)
        case .retain(let update):
            applyRetained(RetainedMessage(topic: Array(update.topic), payload: Array(update.payload), qos: update.qos,
                                          properties: Array(update.properties), stamp: update.stamp), remote: true)
        case .shareCount(let filter, let group, let count):
            applyShareCount(origin: origin, filter: String(decoding: filter, as: UTF8.self),
                            group: String(decoding: group, as: UTF8.self), count: count)
        case .sharedPublish(let p, let filter, let group, let member):
            deliverShared(p, originShard: origin, filter: filter, group: group, member: member)
        case .throttle(let publisher):
            changeThrottle(publisher, by: 1)
        case .unthrottle(let publisher):
            changeThrottle(publisher, by: -1)
        }
    }
}
