// Client-id ownership and session hand-over across shards. Each client id has a home shard (a
// hash of the id) that records which connection — or offline session — holds it. CONNECT sends
// `claim` to the home; the home sends `evict` to the previous holder, which ends that connection
// (takeover [MQTT-3.1.4-3]) and answers the claimant with `claimed`, carrying the previous
// session when the claimant wants it (Clean Session 0). Without a previous holder the home
// answers `claimed` itself. CONNACK goes out when `claimed` arrives. Only one-way messages.

import Codec
import ShardContract

/// Where a client id is held, as the home shard records it.
struct ClientHolder: Equatable {
    var shard: Int
    var connection: ConnectionID
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
            receiveClientMessage(message, from: shardIndex)
        } else {
            send(.client(message), to: shard)
        }
    }

    /// Connection `id` (in phase `connecting`) asks for `clientID`.
    func claimClientID(_ clientID: String, connection id: ConnectionID, cleanStart: Bool) {
        sendClientMessage(ClientMessage(kind: .claim, clientID: clientID, connection: id, flags: cleanStart ? 1 : 0),
                          to: homeShard(of: clientID))
    }

    /// Connection or session `id` no longer holds `clientID`.
    func releaseClientID(_ clientID: String, connection id: ConnectionID) {
        sendClientMessage(ClientMessage(kind: .release, clientID: clientID, connection: id), to: homeShard(of: clientID))
    }

    /// In a cluster, the node gateway's index in the mesh (it asks the other nodes about client
    /// ids, Sources/Cluster/GatewayCore+Clients.swift); nil on a node of its own.
    var gatewayIndex: Int? { meshSize > shardCount ? shardCount : nil }

    func receiveClientMessage(_ m: ClientMessage, from origin: Int) {
        switch m.kind {
        case .claim where origin == gatewayIndex:
            // Another node's client claims the id: whatever holds it here ends (its session handed
            // over unless the claimant starts clean) and answers the gateway, which relays it.
            if let previous = registry.removeValue(forKey: m.clientID) {
                sendClientMessage(ClientMessage(kind: .evict, clientID: m.clientID, connection: previous.connection,
                                                otherConnection: m.connection, other: ShardAddress(node: config.nodeID, shard: origin),
                                                flags: m.flags & 1 == 0 ? 1 : 0),
                                  to: previous.shard)
            } else {
                sendClientMessage(ClientMessage(kind: .claimed, clientID: m.clientID, connection: m.connection), to: origin)
            }
        case .claim:
            let claimant = ClientHolder(shard: origin, connection: m.connection)
            let previous = registry[m.clientID]
            registry[m.clientID] = claimant
            if let previous, previous != claimant {
                sendClientMessage(ClientMessage(kind: .evict, clientID: m.clientID, connection: previous.connection,
                                                otherConnection: m.connection, other: ShardAddress(shard: origin),
                                                flags: m.flags & 1 == 0 ? 1 : 0),
                                  to: previous.shard)
            } else if let gateway = gatewayIndex {
                // Not held on this node: the gateway asks the others (one may hold it, or its
                // session) and answers the claimant with `claimed`.
                sendClientMessage(ClientMessage(kind: .claim, clientID: m.clientID, connection: m.connection,
                                                other: ShardAddress(node: config.nodeID, shard: origin), flags: m.flags),
                                  to: gateway)
            } else {
                sendClientMessage(ClientMessage(kind: .claimed, clientID: m.clientID, connection: m.connection), to: origin)
            }
        case .release:
            if registry[m.clientID] == ClientHolder(shard: origin, connection: m.connection) {
                registry.removeValue(forKey: m.clientID)
            }
        case .evict:
            let session = evict(m.connection, clientID: m.clientID, handOver: m.flags & 1 != 0, to: Int(m.other.shard))
            sendClientMessage(ClientMessage(kind: .claimed, clientID: m.clientID, connection: m.otherConnection, session: session),
                              to: Int(m.other.shard))
        case .claimed:
            claimed(m.connection, clientID: m.clientID, session: m.session)
        }
    }

    /// Holder side: ends the connection or offline session that lost its client id; returns its
    /// session when it is to be handed over and was persistent.
    func evict(_ id: ConnectionID, clientID: String, handOver: Bool, to claimantShard: Int) -> SessionSnapshot? {
        guard isCurrent(id) else { return nil }
        let s = Int(id.slot)
        guard connections[s].clientID == clientID else { return nil }
        switch connections[s].phase {
        case .connecting, .connected:
            let wasPersistent = connections[s].session.isPersistent
            // Keep the session through endSession, so that it can be extracted below.
            connections[s].session.setExpiry(handOver && wasPersistent ? .max : 0)
            endSession(slot: s, publishWill: true, disconnectReason: .sessionTakenOver)
            guard connections[s].phase == .offline else { return nil }
            return extractSession(slot: s, to: claimantShard)
        case .offline:
            if handOver { return extractSession(slot: s, to: claimantShard) }
            publishDelayedWill(slot: s)  // a clean start ends the old session: its will is due
            removeAllSubscriptions(slot: s)
            storeSessionEnd(slot: s)
            endOfflineSlot(s)
            return nil
        default:
            return nil
        }
    }

    /// Takes the session off an offline slot (its subscriptions leave this shard) and ends the slot.
    func extractSession(slot s: Int, to claimantShard: Int) -> SessionSnapshot {
        connections[s].session.takeDelayedWill()  // the client is back before the will delay passed: cancelled
        let snapshot = sessionSnapshot(slot: s)
        storeSessionMoved(slot: s, to: claimantShard)
        removeAllSubscriptions(slot: s)
        endOfflineSlot(s)
        return snapshot
    }

    /// The session of slot `s` in serialised form (times relative to now).
    func sessionSnapshot(slot s: Int) -> SessionSnapshot {
        connections[s].session.snapshot(now: currentTime)
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
    func claimed(_ id: ConnectionID, clientID: String, session: SessionSnapshot?) {
        guard isCurrent(id), connections[Int(id.slot)].clientID == clientID else {
            // The claimant is gone (and released the id, or will): the session ends here.
            return
        }
        let s = Int(id.slot)
        switch connections[s].phase {
        case .connecting:
            let present = session != nil && !connections[s].cleanStart
            if present, let session { installSession(session, slot: s) }
            storeSessionImage(slot: s)
            if connections[s].session.storeKey != 0 && config.durability != .none {
                // CONNACK once the session is stored (its messages, and what it has in flight).
                connectWaiters.append((id, storeSequence, present))
                return
            }
            finishConnect(slot: s, sessionPresent: present)
        case .offline:
            // The connection died while waiting; its persistent session takes the old one over.
            if let session, !connections[s].cleanStart { installSession(session, slot: s) }
            storeSessionImage(slot: s)
        default:
            break
        }
    }

    /// Moves a handed-over session into slot `s`: subscriptions, messages in flight and queued.
    func installSession(_ session: SessionSnapshot, slot s: Int) {
        for subscription in session.subscriptions {
            addSubscription(slot: s, filter: subscription.filter, options: subscription.options, identifier: subscription.identifier)
        }
        connections[s].session.restoreMessages(from: session, now: currentTime)
        // The subscriptions were allowed for the previous connection; check what this one receives.
        if connections[s].access != nil { connections[s].accessCheckDeliveries = true }
        counters.sessionsResumed += 1
    }
}
