// Client-id ownership across shards. Each client id has a home shard (a hash of the id) that
// records which connection holds it. A CONNECT claims the id at its home; the home evicts the
// previous holder, wherever it is (takeover [MQTT-3.1.4-3]). Only one-way messages are used.

import Codec

/// Where a client id is held, as the home shard records it.
struct ClientHolder: Equatable {
    var shard: Int
    var connection: ConnectionID
}

extension ShardCore {
    /// The shard that keeps the registry entry of `clientID`.
    func homeShard(of clientID: String) -> Int {
        guard shardCount > 1 else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in clientID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return Int(hash % UInt64(shardCount))
    }

    /// Announces that connection `id` now holds `clientID`.
    func claimClientID(_ clientID: String, connection id: ConnectionID) {
        let home = homeShard(of: clientID)
        if home == shardIndex {
            registryClaim(clientID, ClientHolder(shard: shardIndex, connection: id))
        } else {
            ShardMessageCodec.appendClient(.claim, originShard: shardIndex, connection: id, clientID: clientID, to: &shardOutbox[home])
        }
    }

    /// Announces that connection `id` no longer holds `clientID`.
    func releaseClientID(_ clientID: String, connection id: ConnectionID) {
        let home = homeShard(of: clientID)
        if home == shardIndex {
            registryRelease(clientID, ClientHolder(shard: shardIndex, connection: id))
        } else {
            ShardMessageCodec.appendClient(.release, originShard: shardIndex, connection: id, clientID: clientID, to: &shardOutbox[home])
        }
    }

    /// Home side: records the new holder and evicts the previous one.
    func registryClaim(_ clientID: String, _ holder: ClientHolder) {
        if let previous = registry[clientID], previous != holder {
            if previous.shard == shardIndex {
                evict(previous.connection, clientID: clientID)
            } else {
                ShardMessageCodec.appendClient(.evict, originShard: shardIndex, connection: previous.connection,
                                               clientID: clientID, to: &shardOutbox[previous.shard])
            }
        }
        registry[clientID] = holder
    }

    /// Home side: forgets the holder if it is still the one recorded (a newer claim wins).
    func registryRelease(_ clientID: String, _ holder: ClientHolder) {
        if registry[clientID] == holder { registry.removeValue(forKey: clientID) }
    }

    /// Holder side: ends the connection that lost its client id to a newer one.
    func evict(_ id: ConnectionID, clientID: String) {
        guard isCurrent(id) else { return }
        let s = Int(id.slot)
        guard connections[s].phase == .connected, connections[s].clientID == clientID else { return }
        endSession(slot: s, publishWill: true, disconnectReason: .sessionTakenOver)
    }

    func receiveClientMessage(_ message: ShardMessage) {
        switch message {
        case .claim(let origin, let connection, let bytes):
            registryClaim(String(decoding: bytes, as: UTF8.self), ClientHolder(shard: origin, connection: connection))
        case .release(let origin, let connection, let bytes):
            registryRelease(String(decoding: bytes, as: UTF8.self), ClientHolder(shard: origin, connection: connection))
        case .evict(_, let connection, let bytes):
            evict(connection, clientID: String(decoding: bytes, as: UTF8.self))
        default:
            break
        }
    }
}
