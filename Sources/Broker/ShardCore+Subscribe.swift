// SUBSCRIBE and UNSUBSCRIBE: the local trie, the route updates other shards receive, SUBACK/UNSUBACK.

import Codec
import ShardContract
import Router

extension ShardCore {
    func handleSubscribe(_ subscribe: Subscribe, slot s: Int) {
        let version = connections[s].version
        // v5: one Subscription Identifier for every filter of this SUBSCRIBE [MQTT-3.8.2.1.2].
        let identifier = version == .v5 ? subscribe.properties.subscriptionIdentifiers.first ?? 0 : 0
        var codes: [ReasonCode] = []
        codes.reserveCapacity(subscribe.subscriptions.count)
        var newRoutes = false
        var retainedFor: [(filter: String, granted: QoS)] = []
        if version != .v5, let bad = subscribe.subscriptions.first(where: { !Self.isValid311Filter($0.filter) }) {
            // 3.1/3.1.1 have no reason code for a malformed filter: a protocol violation, the
            // connection is closed [MQTT-4.8.0-1] (section 4.7.3), before anything is subscribed.
            protocolError(slot: s, reason: .topicFilterInvalid, decodeError: nil, why: "malformed Topic Filter '\(bad.filter)'")
            return
        }
        for request in subscribe.subscriptions {
            let filter = request.filter
            guard TopicValidation.isValidTopicFilter(filter) else {
                codes.append(version == .v5 ? .topicFilterInvalid : .unspecifiedError)
                continue
            }
            let isShared = SharedSubscriptionFilter(filter) != nil
            if isShared && !config.sharedSubscriptionsAvailable {
                codes.append(version == .v5 ? .sharedSubscriptionsNotSupported : .unspecifiedError)
                continue
            }
            if !config.wildcardSubscriptionsAvailable && filter.utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") }) {
                codes.append(version == .v5 ? .wildcardSubscriptionsNotSupported : .unspecifiedError)
                continue
            }
            if identifier != 0 && !config.subscriptionIdentifiersAvailable {
                codes.append(.subscriptionIdentifiersNotSupported)
                continue
            }
            if let access = connections[s].access {
                let (allowed, checkDeliveries) = access.canSubscribe(SharedSubscriptionFilter(filter)?.filter ?? filter)
                guard allowed else {
                    counters.subscriptionsDenied += 1
                    codes.append(version == .v5 ? .notAuthorized : .unspecifiedError)
                    continue
                }
                if checkDeliveries { connections[s].accessCheckDeliveries = true }
            }
            if isShared && version == .v5 && request.options.noLocal {
                // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
                protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "No Local on a shared subscription")
                return
            }
            let existed = connections[s].session.subscriptions[filter] != nil
            var options = request.options
            options.qos = min(options.qos, config.maximumQoS)
            if connections[s].isBridge && !isShared { options.noLocal = true; options.retainAsPublished = true }
            if addSubscription(slot: s, filter: filter, options: options, identifier: identifier,
                               readAt: min(inputArrivedAfter ?? currentTime, currentTime)) { newRoutes = true }
            codes.append(ReasonCode(rawValue: options.qos.rawValue))
            if config.eventKinds != 0 { subscriptionEvent(.subscribed, slot: s, filter: filter, qos: options.qos) }
            // Retained messages on every SUBSCRIBE (3.1.1 [MQTT-3.8.4-3]); v5 Retain Handling decides.
            // Shared subscriptions get none [MQTT-4.8.2, retained messages].
            if isShared { continue }
            switch request.options.retainHandling {
            case .sendOnSubscribe: retainedFor.append((filter, options.qos))
            case .sendOnNewSubscribe: if !existed { retainedFor.append((filter, options.qos)) }
            case .doNotSend: break
            }
        }
        if connections[s].session.storeKey != 0 {
            storeSessionState(slot: s)
            awaitStore(slot: s)  // SUBACK once the subscriptions are stored
        }
        // SUBACK first, then the retained messages, as one block of bytes.
        var reply = ByteBuffer()
        defer { reply.deallocate() }
        let refused = codes.contains { $0.isError }
        let properties = refused ? problemProperties(slot: s, Self.subAckProblem(codes)) : Properties()
        Packet.suback(SubAck(packetID: subscribe.packetID, reasonCodes: codes, properties: properties)).encode(version: version, into: &reply)
        if retained.count > 0 {
            for (filter, granted) in retainedFor { encodeRetained(matching: filter, granted: granted, slot: s, into: &reply) }
        }
        if newRoutes {
            lastBarrierIssued &+= 1
            for target in 0..<meshSize where target != shardIndex {
                send(.barrier(token: lastBarrierIssued), to: target)
            }
        }
        if lastBarrierCompleted == lastBarrierIssued {
            writeAckBytesAfterStore(reply.readableView, slot: s)
        } else {
            // Another shard may not know the new route yet: SUBACK once every shard has applied it.
            pendingSubAcks.append(PendingSubAck(
                connection: ConnectionID(slot: Int32(s), generation: connections[s].generation),
                token: lastBarrierIssued, bytes: reply.readableArray()))
        }
    }

    /// The Reason String of a SUBACK with refusals: what the first refusal was about.
    static func subAckProblem(_ codes: [ReasonCode]) -> String {
        switch codes.first(where: { $0.isError }) {
        case .sharedSubscriptionsNotSupported?: return "shared subscriptions are disabled"
        case .wildcardSubscriptionsNotSupported?: return "wildcard subscriptions are disabled"
        case .subscriptionIdentifiersNotSupported?: return "subscription identifiers are disabled"
        case .notAuthorized?: return "topic filter not allowed by the ACL"
        default: return "invalid Topic Filter"
        }
    }

    /// Whether a 3.1/3.1.1 client's filter is well formed. `$share/` and `$queue/` filters that
    /// do not parse as shared subscriptions are still answered with 0x80 (as a 3.1.1 filter they
    /// may be well formed; the broker just does not serve them).
    static func isValid311Filter(_ filter: String) -> Bool {
        TopicValidation.isValidTopicFilter(filter) || (isSharedPrefix(filter) && TopicValidation.isValidPlainFilter(Array(filter.utf8)))
    }

    static func isSharedPrefix(_ filter: String) -> Bool {
        filter.hasPrefix("$share/") || filter.hasPrefix("$queue/")
    }

    /// Every other shard answered barrier `token` (answers arrive in token order per shard).
    func barrierAcknowledged(_ token: UInt32) {
        let count = (barrierAcks[token] ?? 0) + 1
        guard count == meshSize - 1 else { barrierAcks[token] = count; return }
        barrierAcks.removeValue(forKey: token)
        lastBarrierCompleted = token
        var released = 0
        for pending in pendingSubAcks {
            // Tokens complete in order, so pending entries are released in order.
            guard Int32(bitPattern: pending.token &- token) <= 0 else { break }
            released += 1
            guard isCurrent(pending.connection), connections[Int(pending.connection.slot)].phase == .connected else { continue }
            let s = Int(pending.connection.slot)
            pending.bytes.withUnsafeBytes { writeAckBytesAfterStore($0, slot: s) }
        }
        pendingSubAcks.removeFirst(released)
    }

    func handleUnsubscribe(_ unsubscribe: Unsubscribe, slot s: Int) {
        let version = connections[s].version
        if version != .v5, let bad = unsubscribe.filters.first(where: { !Self.isValid311Filter($0) }) {
            protocolError(slot: s, reason: .topicFilterInvalid, decodeError: nil, why: "malformed Topic Filter '\(bad)'")
            return
        }
        var codes: [ReasonCode] = []
        codes.reserveCapacity(unsubscribe.filters.count)
        for filter in unsubscribe.filters {
            if !TopicValidation.isValidTopicFilter(filter) && !Self.isSharedPrefix(filter) {
                codes.append(.topicFilterInvalid)
                continue
            }
            let existed = removeSubscription(slot: s, filter: filter)
            codes.append(existed ? .success : .noSubscriptionExisted)
            if existed && config.eventKinds != 0 { subscriptionEvent(.unsubscribed, slot: s, filter: filter, qos: .atMostOnce) }
        }
        if connections[s].session.storeKey != 0 {
            storeSessionState(slot: s)
            awaitStore(slot: s)
        }
        queueAckAfterStore(.unsuback(UnsubAck(packetID: unsubscribe.packetID, reasonCodes: version == .v5 ? codes : [])), slot: s)
    }

    /// Adds or replaces [MQTT-3.8.4-3] a subscription of a local connection. Returns true when the
    /// filter is new on this shard (other shards were sent a routeAdd).
    @discardableResult
    /// `readAt`: when the SUBSCRIBE was read (messages routed elsewhere since then are replayed
    /// to a new route, RecentPublishes.swift); `.max` for subscriptions that a session brings
    /// along (they are not new to the session, so nothing is replayed).
    func addSubscription(slot s: Int, filter: String, options: SubscriptionOptions, identifier: UInt32 = 0,
                         readAt: UInt64 = .max) -> Bool {
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        connections[s].session.subscribe(filter, options: options, identifier: identifier)
        if let shared = SharedSubscriptionFilter(filter) {
            return addSharedMember(slot: s, shared: shared, options: options, identifier: identifier)
        }
        var replaced = false
        let becameLocal = trie.update(filter: filter) { entry -> Bool in
            var e = entry ?? RouteEntry()
            let hadLocal = !e.local.isEmpty
            if let index = e.local.firstIndex(where: { $0.connection == id }) {
                e.local[index].options = options
                e.local[index].identifier = identifier
                replaced = true
            } else {
                e.local.append(LocalSubscriber(connection: id, options: options, identifier: identifier))
            }
            entry = e
            return !hadLocal
        }
        if becameLocal && meshSize > 1 { broadcastRoute(.routeAdd, filter: filter, time: readAt) }
        if readAt != .max && !replaced { replayRecentLocally(to: id, filter: filter, options: options, identifier: identifier, since: readAt) }
        return becameLocal && meshSize > 1
    }

    /// A SUBSCRIBE read after messages this shard routed although they arrived after it (its
    /// connection's input was read late: single recvs of a connection sending large packets, input
    /// paused by flow control): those messages that the filter matches follow it, to this
    /// connection only, as the other shards replay theirs (RecentPublishes.swift). Not its own
    /// messages (they came before the SUBSCRIBE on its own stream).
    func replayRecentLocally(to id: ConnectionID, filter: String, options: SubscriptionOptions, identifier: UInt32, since readAt: UInt64) {
        guard recent.isEnabled else { return }
        let since = readAt &- min(readAt, RecentPublishes.concurrencyNanoseconds)
        // Read through a copy of the ring's state: a delivery can end a slow consumer's session,
        // whose will is routed and recorded in `recent` meanwhile.
        let ring = recent
        var filter = filter
        filter.withUTF8 { f in
            ring.forEach(since: since, notForwardedTo: shardIndex, matching: UnsafeRawBufferPointer(f)) { origin, qos, retain, topic, properties, payload in
                guard origin != id else { return }
                deliver(to: id, qos: min(qos, options.qos), retain: retain && options.retainAsPublished, topic: topic,
                        properties: withIdentifier(properties, identifier), payload: payload, publisherShard: shardIndex, publisher: origin)
                counters.messagesReplayed += 1
            }
        }
    }

    /// Removes a subscription of a local connection; returns whether it existed.
    @discardableResult
    func removeSubscription(slot s: Int, filter: String) -> Bool {
        guard connections[s].session.unsubscribe(filter) else { return false }
        if let shared = SharedSubscriptionFilter(filter) {
            removeSharedMember(slot: s, shared: shared)
            return true
        }
        let id = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        let lostLocal = trie.update(filter: filter) { entry -> Bool in
            guard var e = entry else { return false }
            let hadLocal = !e.local.isEmpty
            e.local.removeAll { $0.connection == id }
            entry = e.isEmpty ? nil : e
            return hadLocal && e.local.isEmpty
        }
        if lostLocal { broadcastRoute(.routeRemove, filter: filter, time: .max) }
        return true
    }

    /// Tells every other shard that this shard gained or lost its last subscriber on `filter`.
    func broadcastRoute(_ kind: RouteChange, filter: String, time: UInt64) {
        hasUrgentShardRecords = true
        for target in 0..<meshSize where target != shardIndex {
            send(filter: filter, to: target) { f, _ in kind == .routeAdd ? .routeAdd(filter: f, time: time) : .routeRemove(filter: f, time: time) }
        }
    }
}

/// Whether a shard gained its first or lost its last subscriber on a filter.
enum RouteChange { case routeAdd, routeRemove }

/// A SUBACK held back until the route barrier `token` completes.
struct PendingSubAck {
    var connection: ConnectionID
    var token: UInt32
    var bytes: [UInt8]
}
