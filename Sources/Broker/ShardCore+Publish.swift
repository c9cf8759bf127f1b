// The PUBLISH path: inbound QoS handling, matching against the trie (local subscribers and the
// route table), forwarding one record per other shard, and encoding deliveries.

import Codec
import Router
import ShardContract

extension ShardCore {
    func handlePublish(_ publish: Publish, slot s: Int) {
        counters.publishesReceived += 1
        switch publishRefusal(qos: publish.qos, retain: publish.retain, payloadCount: publish.payload.count) {
        case nil, .overSizeLimit?:
            break  // an oversized payload is answered once the topic is resolved (handleResolvedPublish)
        case let refusal?:
            // Above the Maximum QoS of CONNACK, or retain when it said Retain Available 0: the
            // client broke what CONNACK told it [MQTT-3.2.2-11, MQTT-3.2.2-14].
            protocolError(slot: s, reason: refusal.reasonCode, decodeError: nil, why: refusal.explanation)
            return
        }
        if connections[s].version == .v5 {
            if publish.properties.subscriptionIdentifierCount > 0 {
                // [MQTT-3.3.4-6]: a client must not send Subscription Identifiers.
                protocolError(slot: s, reason: .protocolError, decodeError: nil,
                              why: "PUBLISH from a client carries a Subscription Identifier")
                return
            }
            if let alias = publish.properties.topicAlias {
                // [MQTT-3.3.2-9/-10]: aliases 1...Topic Alias Maximum (from CONNACK) only.
                guard alias <= config.topicAliasMaximum else {
                    protocolError(slot: s, reason: .topicAliasInvalid, decodeError: nil,
                                  why: "Topic Alias above the Topic Alias Maximum in CONNACK")
                    return
                }
                // The alias is this connection's business: it is not passed on [MQTT-3.3.2-7].
                var resolved = publish
                resolved.properties.raw = propertiesWithoutTopicAlias(publish.properties.raw)
                if publish.topic.count > 0 {
                    connections[s].topicAliases[alias] = Array(publish.topic)
                    handleResolvedPublish(resolved, slot: s)
                } else if let topic = connections[s].topicAliases[alias] {
                    topic.withUnsafeBytes { bytes in
                        resolved.topic = bytes
                        handleResolvedPublish(resolved, slot: s)
                    }
                } else {
                    // An alias that was never set: a Protocol Error.
                    protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "Topic Alias not set on this connection")
                }
                return
            }
        }
        handleResolvedPublish(publish, slot: s)
    }

    /// The properties of a delivery: `properties` plus the Subscription Identifiers (in the shard's
    /// delivery scratch buffer), or `properties` itself when there are none.
    @inline(__always)
    func withIdentifiers(_ properties: UnsafeRawBufferPointer, _ identifiers: [UInt32]) -> UnsafeRawBufferPointer {
        guard !identifiers.isEmpty else { return properties }
        deliveryScratch.clear()
        deliveryScratch.writeBytes(properties)
        for identifier in identifiers {
            deliveryScratch.writeByte(PropertyID.subscriptionIdentifier.rawValue)
            deliveryScratch.writeVariableByteInteger(Int(identifier))
        }
        return deliveryScratch.readableView
    }

    /// The properties of a delivery with at most one Subscription Identifier (shared subscriptions).
    @inline(__always)
    func withIdentifier(_ properties: UnsafeRawBufferPointer, _ identifier: UInt32) -> UnsafeRawBufferPointer {
        guard identifier != 0 else { return properties }
        identifierScratch.removeAll(keepingCapacity: true)
        identifierScratch.append(identifier)
        return withIdentifiers(properties, identifierScratch)
    }

    /// Copies a v5 PUBLISH property block without its Topic Alias into the shard's scratch buffer.
    func propertiesWithoutTopicAlias(_ raw: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        propertyScratch.clear()
        let wellFormed = PropertyBlock.forEach(raw) { id, start, _, end in
            if id != .topicAlias { propertyScratch.writeBytes(UnsafeRawBufferPointer(rebasing: raw[start..<end])) }
        }
        return wellFormed ? propertyScratch.readableView : raw
    }

    func handleResolvedPublish(_ publish: Publish, slot s: Int) {
        let version = connections[s].version
        if config.messageSizeLimit > 0 && publish.payload.count > config.messageSizeLimit {
            // PublishRefusal.overSizeLimit (QoS and retain were checked in handlePublish).
            counters.droppedOverSizeLimit += 1
            // Not routed; v5 gets 0x97, 3.1.1 a normal acknowledgement (it has no way to say no).
            acknowledge(publish, slot: s, reason: version == .v5 ? .quotaExceeded : .success,
                        properties: problemProperties(slot: s, "payload larger than message_size_limit"))
            return
        }
        if version == .v5 && publish.properties.payloadFormatIndicator == 1
            && !TopicValidation.isValidMQTTString(publish.payload) {
            // The publisher said UTF-8 and it is not [MQTT-3.3.2-4]: refuse it (0x99).
            if publish.qos == .atMostOnce {
                protocolError(slot: s, reason: .payloadFormatInvalid, decodeError: nil, why: "payload is not UTF-8 as its Payload Format Indicator says")
            } else {
                acknowledge(publish, slot: s, reason: .payloadFormatInvalid, properties: problemProperties(slot: s, "payload is not UTF-8"))
            }
            return
        }
        if connections[s].access != nil && !mayPublish(slot: s, topic: publish.topic) {
            // Not delivered; v5 gets 0x87, 3.1.1 a normal acknowledgement (it has no way to say no).
            counters.publishesDenied += 1
            acknowledge(publish, slot: s, reason: version == .v5 ? .notAuthorized : .success,
                        properties: problemProperties(slot: s, "topic not allowed by the ACL"))
            return
        }
        if publish.qos == .exactlyOnce {
            if connections[s].session.awaitingRelease.contains(publish.packetID) {
                // A resend before PUBREL: already routed once; acknowledge again only.
                acknowledge(publish, slot: s)
                return
            }
            if storeUnavailable && version == .v5 {
                refuseUnstorable(publish, slot: s)
                return
            }
            if connections[s].session.awaitingRelease.count >= Int(config.receiveMaximum) {
                protocolError(slot: s, reason: .receiveMaximumExceeded, decodeError: nil,
                              why: "more QoS 2 PUBLISHes awaiting PUBREL than the Receive Maximum")
                return
            }
            connections[s].session.awaitRelease(publish.packetID)
            storeQoS2(slot: s, packetID: publish.packetID, received: true)
        }
        if storeUnavailable && version == .v5 && publish.qos == .atLeastOnce {
            refuseUnstorable(publish, slot: s)
            return
        }
        let properties = version == .v5 ? publish.properties.raw : UnsafeRawBufferPointer(start: nil, count: 0)
        let origin = ConnectionID(slot: Int32(s), generation: connections[s].generation)
        if publish.retain && retain(topic: publish.topic, payload: publish.payload, qos: publish.qos, properties: properties)
            && publish.qos != .atMostOnce {
            awaitStore(slot: s)  // its PUBACK / PUBREC once the record is durable
        }
        let storedBefore = storeSequence
        forwardedTo = ShardSet()
        if config.eventKinds != 0 {
            // Before routing, as EMQX's message.publish hook: it comes before the deliveries.
            messageEvent(.publish, slot: s, topic: publish.topic, payload: publish.payload, qos: publish.qos, retain: publish.retain)
        }
        let matched = route(qos: publish.qos, retain: publish.retain, topic: publish.topic, properties: properties,
                            payload: publish.payload, origin: origin, forwardToShards: true)
        if publish.qos != .atMostOnce && storesSessions && (storeSequence != storedBefore || !forwardedTo.isEmpty) {
            // Acknowledged means stored: by this shard's persistent subscribers, and by the other
            // shards' it went to (ShardCore+SessionStore.swift).
            awaitStore(slot: s, remote: forwardedTo)
        }
        if config.eventKinds != 0 {
            if !matched {
                messageEvent(.dropped, slot: s, topic: publish.topic, payload: publish.payload, qos: publish.qos, retain: publish.retain,
                             reason: "no_subscribers")
            }
        }
        acknowledge(publish, slot: s, reason: matched || version != .v5 ? .success : .noMatchingSubscribers)
    }

    /// The store cannot write (a full disk): a v5 QoS 1/2 PUBLISH is not taken (not routed) and
    /// gets 0x97 Quota exceeded, so the client knows it was not accepted; a 3.1.1 client has no
    /// way to hear no, and waits for its acknowledgement until the store writes again.
    func refuseUnstorable(_ publish: Publish, slot s: Int) {
        counters.publishesRefusedUnstorable += 1
        acknowledge(publish, slot: s, reason: .quotaExceeded,
                    properties: problemProperties(slot: s, "the broker cannot store messages now (its disk is full or failing)"))
    }

    /// Answers a QoS 1 PUBLISH with PUBACK and a QoS 2 one with PUBREC (QoS 0: nothing), through
    /// flow control, which may hold the answer back (ShardCore+FlowControl.swift).
    @inline(__always)
    func acknowledge(_ publish: Publish, slot s: Int, reason: ReasonCode = .success, properties: Properties = Properties()) {
        switch publish.qos {
        case .atMostOnce: break
        case .atLeastOnce: queuePublishAck(.puback(PublishAck(packetID: publish.packetID, reasonCode: reason, properties: properties)), slot: s)
        case .exactlyOnce: queuePublishAck(.pubrec(PublishAck(packetID: publish.packetID, reasonCode: reason, properties: properties)), slot: s)
        }
    }

    /// ACL check of a PUBLISH topic, remembering the last allowed topic of the connection.
    func mayPublish(slot s: Int, topic: UnsafeRawBufferPointer) -> Bool {
        if connections[s].lastAllowedTopic.withUnsafeBytes({ $0.elementsEqual(topic) }) && topic.count > 0 { return true }
        guard let access = connections[s].access, access.canPublish(topic) else { return false }
        connections[s].lastAllowedTopic = Array(topic)
        return true
    }

    /// Matches `topic` and delivers to local subscribers; with `forwardToShards`, also appends one
    /// record per other shard that has subscribers. Returns whether anything matched.
    @discardableResult
    func route(
        qos: QoS, retain: Bool = false, topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer,
        payload: UnsafeRawBufferPointer, origin: ConnectionID, originShard: Int? = nil, forwardToShards: Bool
    ) -> Bool {
        // The publisher is a local connection only for messages published on this shard.
        let localOrigin: ConnectionID? = (originShard ?? shardIndex) == shardIndex ? origin : nil
        let generation = trie.generation
        let hash = matchCache.isEnabled ? MatchCache.hash(topic) : 0
        if matchCache.isEnabled, let e = matchCache.lookup(topic, hash: hash, generation: generation) {
            // The arrays, not the whole entry: two retains, not four.
            return routeMatched(local: matchCache.entries[e].local, remote: matchCache.entries[e].remote,
                                shared: matchCache.entries[e].shared, qos: qos, retain: retain,
                                topic: topic, properties: properties, payload: payload, origin: origin,
                                originShard: originShard ?? shardIndex, localOrigin: localOrigin, forwardToShards: forwardToShards)
        }
        var collector = MatchCollector(local: [])
        swap(&collector.local, &matchScratch)
        swap(&collector.shared, &sharedScratch)
        collector.local.removeAll(keepingCapacity: true)
        collector.shared.removeAll(keepingCapacity: true)
        trie.match(topic: topic, visitor: &collector)
        if collector.local.count > 1 {
            // Overlapping subscriptions: deliver once per client, at the highest granted QoS [MQTT-3.3.5-1].
            collector.local.sort { $0.connection.slot < $1.connection.slot }
        }
        if matchCache.isEnabled && matchCache.admits(hash: hash) {
            matchCache.store(topic, hash: hash, generation: generation,
                             local: collector.local, remote: collector.remote, shared: collector.shared)
        }
        let matched = routeMatched(local: collector.local, remote: collector.remote, shared: collector.shared, qos: qos,
                                   retain: retain, topic: topic, properties: properties, payload: payload, origin: origin,
                                   originShard: originShard ?? shardIndex, localOrigin: localOrigin, forwardToShards: forwardToShards)
        swap(&collector.local, &matchScratch)
        swap(&collector.shared, &sharedScratch)
        return matched
    }

    /// Forwards and delivers one message to what its topic matched: `local` sorted by slot.
    @inline(__always)
    func routeMatched(
        local: [LocalSubscriber], remote: ShardSet, shared: [SharedGroup], qos: QoS, retain: Bool,
        topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
        origin: ConnectionID, originShard: Int, localOrigin: ConnectionID?, forwardToShards: Bool
    ) -> Bool {
        // A shared copy of the payload is made once for all local sessions (deliverReliable) and
        // forgotten when the outermost route ends (a route nested in this one, a will published on
        // the way, has another payload address: the cache only answers for the same address).
        routing &+= 1
        defer {
            routing &-= 1
            if routing == 0 && routePayloadSource != nil { (routePayload, routePayloadSource) = (nil, nil) }
        }
        var remote = remote
        remote.remove(shardIndex)
        if forwardToShards && recent.isEnabled {
            recent.record(time: currentTime, forwarded: remote, origin: origin, qos: qos, retain: retain,
                          topic: topic, properties: properties, payload: payload)
        }
        if forwardToShards && !remote.isEmpty {
            forwardedTo.formUnion(remote)
            for target in remote {
                // The data path's record, encoded in place (what `send(.publish(...))` does).
                let p = ForwardedPublish(qos: qos, retain: retain, origin: origin, topic: topic, properties: properties, payload: payload)
                if _slowPath(payload.count >= StoredMessage.sharedPayloadMinimum) && target < shardCount {
                    // A large payload goes to the other shards of this process by reference: not
                    // copied into the outbox, then into the mailbox, then out of it.
                    let (shared, offset) = sharedPayload(for: payload)
                    ShardRecordCodec.encodePublishShared(p, shared: shared, offset: offset, origin: address, into: &shardOutbox[target])
                } else {
                    ShardRecordCodec.encodePublish(p, origin: address, into: &shardOutbox[target])
                }
                counters.publishesForwarded += 1
            }
        }

        if !shared.isEmpty && forwardToShards {
            routeShared(shared, topic: topic, qos: qos, properties: properties, payload: payload, origin: origin)
        }
        let localCount = local.count
        routeLocalCount = localCount
        var i = 0
        while i < localCount {
            let subscriber = local[i]
            let isPublisher = subscriber.connection == localOrigin
            // One delivery per client: the highest QoS of its matching subscriptions, skipping
            // No Local ones when it published the message itself [MQTT-3.8.3-3], with the retain
            // flag kept if a subscription asks for Retain As Published.
            var granted: QoS? = nil
            var keepRetain = false
            identifierScratch.removeAll(keepingCapacity: true)
            var j = i
            while j < localCount && local[j].connection.slot == subscriber.connection.slot {
                let options = local[j].options
                if !(isPublisher && options.noLocal) {
                    granted = max(granted ?? .atMostOnce, options.qos)
                    keepRetain = keepRetain || options.retainAsPublished
                    // The Subscription Identifiers of all matching subscriptions go with the message [MQTT-3.3.4-4].
                    let identifier = local[j].identifier
                    if identifier != 0 { identifierScratch.append(identifier) }
                }
                j += 1
            }
            if let granted {
                deliver(to: subscriber.connection, qos: min(qos, granted), retain: retain && keepRetain, topic: topic,
                        properties: withIdentifiers(properties, identifierScratch), payload: payload,
                        publisherShard: originShard, publisher: origin)
            }
            i = j
        }
        return localCount > 0 || !remote.isEmpty || !shared.isEmpty
    }

    /// Delivers one message to a local subscriber: QoS 0 is encoded straight into its outbound
    /// buffer; QoS 1/2 goes through the inflight window and queue.
    @inline(__always)
    func deliver(to id: ConnectionID, qos: QoS, retain: Bool = false, topic: UnsafeRawBufferPointer,
                 properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, publisherShard: Int, publisher: ConnectionID) {
        let s = Int(id.slot)
        guard connections[s].generation == id.generation else { return }
        if config.eventKinds & BrokerEvent.Kind.delivered.rawValue != 0 {
            messageEvent(.delivered, slot: s, topic: topic, payload: payload, qos: qos, retain: retain,
                         from: isCurrent(publisher) && publisherShard == shardIndex ? connections[Int(publisher.slot)].clientID : "")
        }
        if connections[s].accessCheckDeliveries, let access = connections[s].access, !access.canReceive(topic) {
            counters.deliveriesDenied += 1
            return
        }
        if connections[s].phase == .connected && connections[s].pendingOutboundBytes > config.maxOutboundBuffer {
            // A consumer that stopped reading: memory stays bounded. The session (if persistent)
            // goes offline and the message below is queued there.
            counters.slowConsumersDisconnected += 1
            endSession(slot: s, publishWill: true, disconnectReason: .quotaExceeded,
                       reasonString: "more than max_outbound_buffer bytes waiting to be sent")
        }
        switch connections[s].phase {
        case .connected:
            break
        case .offline, .connecting:
            // A session without a live connection keeps QoS 1/2 messages; QoS 0 is not queued.
            if qos != .atMostOnce {
                let props = connections[s].version == .v5 ? properties : UnsafeRawBufferPointer(start: nil, count: 0)
                enqueue(storedMessage(topic: topic, properties: props, payload: payload, qos: qos, retain: retain), slot: s)
            }
            return
        default:
            return
        }
        let version = connections[s].version
        let props = version == .v5 ? properties : UnsafeRawBufferPointer(start: nil, count: 0)
        if version == .v5 && connections[s].clientMaximumPacketSize != .max {
            // [MQTT-3.1.2-24]: never send a packet larger than the client accepts; drop it for this client.
            let size = PublishEncoder.encodedLength(version: version, qos: qos, topicLength: topic.count,
                                                    propertiesLength: props.count + (connections[s].outboundAliases.maximum > 0 ? 3 : 0),
                                                    payloadLength: payload.count)
            if size > Int(connections[s].clientMaximumPacketSize) { counters.droppedTooLarge += 1; return }
        }
        if qos != .atMostOnce {
            deliverReliable(s, topic: topic, properties: props, payload: payload, qos: qos, retain: retain,
                            publisherShard: publisherShard, publisher: publisher)
            return
        }
        // QoS 0 to a client that falls behind is dropped past 4 MiB waiting, or past eight messages
        // of this size when they are large (a 1 MB message stream keeps a few in flight by design);
        // max_outbound_buffer still bounds what waits, and disconnects.
        let pending = connections[s].pendingOutboundBytes
        if pending > softOutboundLimit && pending > min(8 * payload.count, config.maxOutboundBuffer / 2) {
            counters.droppedQoS0 += 1
            return
        }
        if _slowPath(payload.count >= ShardCore.spliceMinimum) && connections[s].flow & FlowFlag.gatheredOutput != 0
            && splicesWithoutCopy(payload) {
            deliverSpliced(slot: s, retain: retain, topic: topic, properties: props, payload: payload)
        } else if connections[s].outboundAliases.maximum > 0, let (alias, known) = connections[s].outboundAliases.alias(for: topic) {
            PublishEncoder.encode(version: version, dup: false, qos: .atMostOnce, retain: retain,
                                  topic: known ? UnsafeRawBufferPointer(start: nil, count: 0) : topic, packetID: 0,
                                  properties: props, payload: payload, topicAlias: alias, into: &connections[s].outbound)
        } else {
            PublishEncoder.encode(version: version, dup: false, qos: .atMostOnce, retain: retain, topic: topic,
                                  packetID: 0, properties: props, payload: payload, into: &connections[s].outbound)
        }
        counters.publishesDelivered += 1
        markFlush(s)
    }

    /// Processes one record another shard sent through its mailbox (at `pointer`).
    /// A route from `shard` arrived for `filter`, whose SUBSCRIBE was read there at `since`: the
    /// messages routed here since then that it matches and that did not go there follow it
    /// (RecentPublishes.swift).
    func replayRecent(to shard: Int, filter: UnsafeRawBufferPointer, since: UInt64) {
        recent.forEach(since: since, notForwardedTo: shard, matching: filter) { origin, qos, retain, topic, properties, payload in
            send(.replayPublish(ForwardedPublish(qos: qos, retain: retain, origin: origin, topic: topic, properties: properties,
                                                 payload: payload), filter: filter), to: shard)
            counters.messagesReplayed += 1
        }
    }

    /// A message replayed for the subscribers of exactly `filter` on this shard (the ones whose
    /// SUBSCRIBE was read before the message but whose route reached its shard after it).
    func deliverReplay(_ p: ForwardedPublish, originShard: Int, filter: UnsafeRawBufferPointer) {
        guard let entry = trie.value(forFilter: filter) else { return }
        for subscriber in entry.local {
            deliver(to: subscriber.connection, qos: min(p.qos, subscriber.options.qos),
                    retain: p.retain && subscriber.options.retainAsPublished, topic: p.topic,
                    properties: withIdentifier(p.properties, subscriber.identifier), payload: p.payload,
                    publisherShard: originShard, publisher: p.origin)
        }
    }
}
