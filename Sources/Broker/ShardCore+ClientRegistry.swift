// Client-id ownership and session hand-over across shards. Each client id has a home shard (a
// hash of the id) that records which connection — or offline session — holds it. CONNECT sends
// `claim` to the home; the home sends `evict` to the previous holder, which ends that connection
// (takeover [MQTT-3.1.4-3]) and answers the claimant with `claimed`, carrying the previous
// session when the claimant wants it (Clean Session 0). Without a previous holder the home
// answers `claimed` itself. CONNACK goes out when `claimed` arrives. Only one-way messages.

import Codec

/// Where a client id is held, as the home shard records it.
struct ClientHolder: Equatable {
    var shard: Int
    var connection: ConnectionID
}

/// A session on its way between connections (moved by reference through a mailbox record).
final class SessionBox: @unchecked Sendable {
    // Invariant: owned by exactly one shard at a time (the record's sender gives it up).
    var subscriptions: [(filter: String, options: SubscriptionOptions)]
    var identifiers: [String: UInt32] = [:]
    var inflight: [InflightMessage]
    var queue: MessageQueue
    var awaitingRelease: Set<UInt16>
    var nextPacketID: UInt16

    init(subscriptions: [(filter: String, options: SubscriptionOptions)], inflight: [InflightMessage], queue: MessageQueue,
         awaitingRelease: Set<UInt16>, nextPacketID: UInt16) {
        self.subscriptions = subscriptions; self.inflight = inflight; self.queue = queue
        self.awaitingRelease = awaitingRelease; self.nextPacketID = nextPacketID
    }
}

extension ShardCore {
    /// FNV-1a of a client id: places ids on home shards and spreads hash_clientid shared groups.
    static func clientIDHash(_ clientID: String) -> UInt64 {
        FNV1a.hash(clientID.utf8)
    }

    /// The shard that keeps the registry entry of `clientID`.
    func homeShard(of clientID: String) -> Int {
        guard shardCount > 1 else { return 0 }
        return Int(ShardCore.clientIDHash(clientID) % UInt64(shardCount))
    }

    /// Delivers a registry message to `shard` (this one included).
    func sendClientMessage(_ message: ClientMessage, to shard: Int) {
        if shard == shardIndex {
            receiveClientMessage(message)
        } else {
            ShardMessageCodec.appendClient(message, to: &shardOutbox[shard])
        }
    }

    /// Connection `id` (in phase `connecting`) asks for `clientID`.
    func claimClientID(_ clientID: String, connection id: ConnectionID, cleanStart: Bool) {
        sendClientMessage(ClientMessage(kind: .claim, origin: shardIndex, clientID: clientID, connection: id,
                                        flags: cleanStart ? 1 : 0), to: homeShard(of: clientID))
    }

    /// Connection or session `id` no longer holds `clientID`.
    func releaseClientID(_ clientID: String, connection id: ConnectionID) {
        sendClientMessage(ClientMessage(kind: .release, origin: shardIndex, clientID: clientID, connection: id),
                          to: homeShard(of: clientID))
    }

    func receiveClientMessage(_ m: ClientMessage) {
        switch m.kind {
        case .claim:
            let claimant = ClientHolder(shard: m.origin, connection: m.connection)
            let previous = registry[m.clientID]
            registry[m.clientID] = claimant
            if let previous, previous != claimant {
                sendClientMessage(ClientMessage(kind: .evict, origin: shardIndex, clientID: m.clientID,
                                                connection: previous.connection, otherConnection: m.connection,
                                                otherShard: m.origin, flags: m.flags & 1 == 0 ? 1 : 0),
                                  to: previous.shard)
            } else {
                sendClientMessage(ClientMessage(kind: .claimed, origin: shardIndex, clientID: m.clientID, connection: m.connection),
                                  to: m.origin)
            }
        case .release:
            if registry[m.clientID] == ClientHolder(shard: m.origin, connection: m.connection) {
                registry.removeValue(forKey: m.clientID)
            }
        case .evict:
            let session = evict(m.connection, clientID: m.clientID, handOver: m.flags & 1 != 0)
            sendClientMessage(ClientMessage(kind: .claimed, origin: shardIndex, clientID: m.clientID,
                                            connection: m.otherConnection, session: session), to: m.otherShard)
        case .claimed:
            claimed(m.connection, clientID: m.clientID, session: m.session)
        default:
            break
        }
    }

    /// Holder side: ends the connection or offline session that lost its client id; returns its
    /// session when it is to be handed over and was persistent.
    func evict(_ id: ConnectionID, clientID: String, handOver: Bool) -> SessionBox? {
        guard isCurrent(id) else { return nil }
        let s = Int(id.slot)
        guard connections[s].clientID == clientID else { return nil }
        switch connections[s].phase {
        case .connecting, .connected:
            let wasPersistent = connections[s].isPersistent
            // Keep the session through endSession, so that it can be extracted below.
            connections[s].sessionExpiry = handOver && wasPersistent ? .max : 0
            endSession(slot: s, publishWill: true, disconnectReason: .sessionTakenOver)
            guard connections[s].phase == .offline else { return nil }
            return extractSession(slot: s)
        case .offline:
            if handOver { return extractSession(slot: s) }
            publishDelayedWill(slot: s)  // a clean start ends the old session: its will is due
            removeAllSubscriptions(slot: s)
            endOfflineSlot(s)
            return nil
        default:
            return nil
        }
    }

    /// Takes the session off an offline slot (its subscriptions leave this shard) and ends the slot.
    func extractSession(slot s: Int) -> SessionBox {
        connections[s].delayedWill = nil  // the client is back before the will delay passed
        let box = SessionBox(
            subscriptions: connections[s].subscriptions.map { ($0.key, $0.value) },
            inflight: connections[s].inflight, queue: connections[s].queue,
            awaitingRelease: connections[s].awaitingRelease, nextPacketID: connections[s].nextPacketID)
        box.identifiers = connections[s].subscriptionIdentifiers
        removeAllSubscriptions(slot: s)
        endOfflineSlot(s)
        return box
    }

    /// An offline slot whose session moved or ended: free it, or let the runtime free it.
    func endOfflineSlot(_ s: Int) {
        if connections[s].socketAttached {
            connections[s].phase = .closing
        } else {
            freeSlot(s)
        }
    }

    /// Claimant side: the client id is ours; install the previous session (if any) and CONNACK.
    func claimed(_ id: ConnectionID, clientID: String, session: SessionBox?) {
        guard isCurrent(id), connections[Int(id.slot)].clientID == clientID else {
            // The claimant is gone (and released the id, or will): the session ends here.
            return
        }
        let s = Int(id.slot)
        switch connections[s].phase {
        case .connecting:
            let present = session != nil && !connections[s].cleanStart
            if present, let session { installSession(session, slot: s) }
            finishConnect(slot: s, sessionPresent: present)
        case .offline:
            // The connection died while waiting; its persistent session takes the old one over.
            if let session, !connections[s].cleanStart { installSession(session, slot: s) }
        default:
            break
        }
    }

    /// Moves a handed-over session into slot `s`: subscriptions, messages in flight and queued.
    func installSession(_ box: SessionBox, slot s: Int) {
        for (filter, options) in box.subscriptions {
            addSubscription(slot: s, filter: filter, options: options, identifier: box.identifiers[filter] ?? 0)
        }
        connections[s].inflight = box.inflight
        connections[s].queue = box.queue
        connections[s].awaitingRelease = box.awaitingRelease
        connections[s].nextPacketID = box.nextPacketID
        // The subscriptions were allowed for the previous connection; check what this one receives.
        if connections[s].access != nil { connections[s].accessCheckDeliveries = true }
        counters.sessionsResumed += 1
    }
}
