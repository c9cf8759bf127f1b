// Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 and EMQX syntax, for every protocol
// version): each message goes to exactly one member of each group, across shards. Every shard
// knows each group's member count on every other shard (`shareCount` records), so the shard
// where a message is published picks the member — round robin, random, or by a hash of the
// publisher's client id — and sends the message to that member's shard only. In a cluster the
// node gateway is one more "shard" whose count is the members on other nodes
// (Sources/Cluster/GatewayCore+Shared.swift): each message still reaches one member cluster-wide.

import Codec
import ShardContract
import Router

/// How a shared group's member is chosen for a message.
public enum SharedSubscriptionStrategy: String, Sendable, CaseIterable {
    /// Members in turn (per publishing shard).
    case roundRobin = "round_robin"
    /// A member at random.
    case random
    /// By a hash of the publisher's client id: one publisher's messages stay with one member.
    case hashClientID = "hash_clientid"
}

extension ShardCore {
    /// Adds (or updates) a member of a shared group; returns true when other shards were told.
    func addSharedMember(slot s: Int, shared: SharedSubscriptionFilter, options: SubscriptionOptions, identifier: UInt32) -> Bool {
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        let count = trie.update(filter: shared.filter) { entry -> Int in
            var e = entry ?? RouteEntry()
            let g = groupIndex(&e, shared.group, filter: shared.filter)
            if let i = e.shared[g].local.firstIndex(where: { $0.connection == id }) {
                e.shared[g].local[i].options = options
                e.shared[g].local[i].identifier = identifier
            } else {
                e.shared[g].local.append(LocalSubscriber(connection: id, options: options, identifier: identifier))
            }
            entry = e
            return e.shared[g].local.count
        }
        return broadcastShareCount(shared, count)
    }

    /// Removes a member of a shared group.
    func removeSharedMember(slot s: Int, shared: SharedSubscriptionFilter) {
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        let count = trie.update(filter: shared.filter) { entry -> Int in
            guard var e = entry, let g = e.shared.firstIndex(where: { $0.name == shared.group }) else { return -1 }
            e.shared[g].local.removeAll { $0.connection == id }
            let count = e.shared[g].local.count
            if e.shared[g].isEmpty { e.shared.remove(at: g) }
            entry = e.isEmpty ? nil : e
            return count
        }
        if count >= 0 { _ = broadcastShareCount(shared, count) }
    }

    /// The index of group `name` in the entry, created when missing.
    func groupIndex(_ e: inout RouteEntry, _ name: String, filter: String) -> Int {
        if let g = e.shared.firstIndex(where: { $0.name == name }) { return g }
        sharedCursors.append(0)
        e.shared.append(SharedGroup(name: name, filter: filter, cursor: sharedCursors.count - 1,
                                    counts: Array(repeating: 0, count: meshSize)))
        return e.shared.count - 1
    }

    func broadcastShareCount(_ shared: SharedSubscriptionFilter, _ count: Int) -> Bool {
        hasUrgentShardRecords = true
        guard meshSize > 1 else { return false }
        for target in 0..<meshSize where target != shardIndex {
            send(filter: shared.filter, group: shared.group, to: target) { .shareCount(filter: $0, group: $1, count: count) }
        }
        return true
    }

    /// Another shard's member count of a group changed.
    func applyShareCount(origin: Int, filter: String, group: String, count: Int) {
        trie.update(filter: filter) { entry in
            var e = entry ?? RouteEntry()
            let g = groupIndex(&e, group, filter: filter)
            e.shared[g].counts[origin] = count
            if e.shared[g].isEmpty { e.shared.remove(at: g) }
            entry = e.isEmpty ? nil : e
        }
    }

    /// Picks one member of each matched group for a message published on this shard.
    func routeShared(_ groups: [SharedGroup], topic: UnsafeRawBufferPointer, qos: QoS,
                     properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, origin: ConnectionID) {
        for group in groups {
            let total = group.total(selfIndex: shardIndex)
            guard total > 0 else { continue }
            var k: Int
            switch config.sharedSubscriptionStrategy {
            case .roundRobin:
                k = sharedCursors[group.cursor] % total
                sharedCursors[group.cursor] &+= 1
            case .random:
                k = Int.random(in: 0..<total, using: &random)
            case .hashClientID:
                let publisher = isCurrent(origin) ? connections[Int(origin.slot)].clientID : ""
                k = Int(ShardCore.clientIDHash(publisher) % UInt64(total))
            }
            // Member k in the order: shard 0's members, shard 1's, ... (this shard's are `local`);
            // in a cluster the gateway's count is the other nodes' members, last.
            for shard in 0..<meshSize {
                let n = shard == shardIndex ? group.local.count : group.counts[shard]
                if k >= n { k -= n; continue }
                if shard == shardIndex {
                    let member = group.local[k]
                    deliver(to: member.connection, qos: min(qos, member.options.qos), topic: topic,
                            properties: withIdentifier(properties, member.identifier), payload: payload,
                            publisherShard: shardIndex, publisher: origin)
                } else {
                    let message = ForwardedPublish(qos: qos, retain: false, origin: origin, topic: topic, properties: properties, payload: payload)
                    send(filter: group.filter, group: group.name, to: shard) { .sharedPublish(message, filter: $0, group: $1, member: k) }
                    forwardedTo.insert(shard)
                    counters.publishesForwarded += 1
                }
                break
            }
        }
    }

    /// A message for member `member` of a group on this shard.
    func deliverShared(_ p: ForwardedPublish, originShard: Int, filter: UnsafeRawBufferPointer, group: UnsafeRawBufferPointer, member: Int) {
        guard let entry = trie.value(forFilter: filter), let g = entry.shared.first(where: { $0.name.utf8.elementsEqual(group) }),
              !g.local.isEmpty else {
            counters.droppedNoSharedMember += 1  // the member left while the message was on its way
            return
        }
        let target = g.local[member % g.local.count]
        deliver(to: target.connection, qos: min(p.qos, target.options.qos), topic: p.topic,
                properties: withIdentifier(p.properties, target.identifier), payload: p.payload,
                publisherShard: originShard, publisher: p.origin)
    }
}
