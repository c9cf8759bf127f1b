// Client ids across nodes: a CONNECT on one node ends the same client id's connection on another
// and brings its session (subscriptions, queued and in-flight messages) along.
//
// Within a node the home shard of an id keeps who holds it (ShardCore+ClientRegistry.swift). When
// it finds no holder on its node it hands the claim to the gateway, which asks every linked node
// (a `claim` record). On each of them the gateway claims the id at its own home shard, which ends
// whatever holds it there (the session handed over unless the claimant starts clean) and answers
// with `claimed` — with the session, or none. The claimant's gateway collects one answer per node
// and gives the claimant its `claimed` (with the session, if one came): then it sends CONNACK.
//
// Asking every node instead of one home node (rendezvous hashing) keeps no table that would have
// to move when members join or leave: a node knows exactly what it holds. The cost is one small
// record per other node for each CONNECT of an id this node does not hold, and CONNACK waits for
// the slowest node's answer — at most `claimTimeout`, after which the claimant goes on with what
// came (a node that stopped answering is about to leave the cluster).

import ApusBase
import Router
import ShardContract

extension GatewayCore {
    /// A claim this node's client made, waiting for the other nodes' answers.
    struct PendingClaim {
        var clientID: String
        var claimantShard: Int
        var connection: ConnectionID
        var waiting: ShardSet
        var session: SessionSnapshot?
        var deadline: UInt64
    }

    /// How long a CONNECT waits for the other nodes.
    public static let claimTimeout: UInt64 = 3_000_000_000

    /// The home shard of a client id on a node of `shards` shards (ShardCore.homeShard's rule).
    static func homeShard(of clientID: String, shards: Int) -> Int {
        shards > 1 ? Int(FNV1a.hash(clientID.utf8) % UInt64(shards)) : 0
    }

    /// From this node's home shard: `m.other.shard` claims `m.clientID`, which no shard here holds.
    func claimFromShard(_ m: ClientMessage) {
        let claimant = Int(m.other.shard)
        guard claimant < shards else { counters.recordsRefused += 1; return }
        guard !peersUp.isEmpty else {
            answerClaimant(clientID: m.clientID, shard: claimant, connection: m.connection, session: nil)
            return
        }
        pendingClaims[m.clientID] = PendingClaim(clientID: m.clientID, claimantShard: claimant, connection: m.connection,
                                                 waiting: peersUp, session: nil, deadline: currentTime &+ GatewayCore.claimTimeout)
        let ask = ClientMessage(kind: .claim, clientID: m.clientID, connection: m.connection,
                                other: ShardAddress(node: nodeID, shard: shards), flags: m.flags)
        for peer in peersUp { ShardRecordCodec.encode(.client(ask), origin: address, into: &peerOutbox[peer]) }
        counters.claimsAsked += 1
    }

    /// From a shard here: the answer to a claim another node made (what held the id here ended).
    func claimedFromShard(_ m: ClientMessage) {
        guard var queue = pendingRemoteClaims[m.clientID], !queue.isEmpty else { counters.recordsIgnored += 1; return }
        let peer = queue.removeFirst()
        pendingRemoteClaims[m.clientID] = queue.isEmpty ? nil : queue
        guard peersUp.contains(peer) else { return }
        ShardRecordCodec.encode(.client(m), origin: address, into: &peerOutbox[peer])
        if m.session != nil { counters.sessionsHandedToPeers += 1 }
    }

    /// From a peer: a claim (its client wants the id) or an answer to ours.
    func clientFromPeer(_ m: ClientMessage, peer: Int) {
        switch m.kind {
        case .claim:
            pendingRemoteClaims[m.clientID, default: []].append(peer)
            let claim = ClientMessage(kind: .claim, clientID: m.clientID, connection: m.connection, flags: m.flags)
            ShardRecordCodec.encode(.client(claim), origin: address,
                                    into: &shardOutbox[GatewayCore.homeShard(of: m.clientID, shards: shards)])
        case .claimed:
            guard var pending = pendingClaims[m.clientID], pending.connection == m.connection else { return }
            pending.waiting.remove(peer)
            if pending.session == nil, let session = m.session {
                pending.session = session
                counters.sessionsTakenFromPeers += 1
            }
            pendingClaims[m.clientID] = pending
            if pending.waiting.isEmpty { completeClaim(m.clientID) }
        default:
            counters.recordsIgnored += 1
        }
    }

    /// A peer is gone: it will not answer; claims waiting only for it go on.
    func peerGoneFromClaims(_ peer: Int) {
        for (id, var pending) in pendingClaims where pending.waiting.contains(peer) {
            pending.waiting.remove(peer)
            pendingClaims[id] = pending
            if pending.waiting.isEmpty { completeClaim(id) }
        }
        for (id, queue) in pendingRemoteClaims where queue.contains(peer) {
            let rest = queue.filter { $0 != peer }
            pendingRemoteClaims[id] = rest.isEmpty ? nil : rest
        }
    }

    /// Claims past their deadline go on with the answers that came.
    public func tick(now: UInt64) {
        currentTime = now
        for (id, pending) in pendingClaims where now >= pending.deadline {
            counters.claimsTimedOut += 1
            completeClaim(id)
        }
    }

    func completeClaim(_ clientID: String) {
        guard let pending = pendingClaims.removeValue(forKey: clientID) else { return }
        answerClaimant(clientID: clientID, shard: pending.claimantShard, connection: pending.connection, session: pending.session)
    }

    func answerClaimant(clientID: String, shard: Int, connection: ConnectionID, session: SessionSnapshot?) {
        ShardRecordCodec.encode(.client(ClientMessage(kind: .claimed, clientID: clientID, connection: connection, session: session)),
                                origin: address, into: &shardOutbox[shard])
    }

    /// Claims still waiting for other nodes (tests, status).
    public var pendingClaimCount: Int { pendingClaims.count }
}
