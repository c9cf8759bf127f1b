// The sans-IO heart of a shard: connections and their sessions, the subscription trie with the
// route table, and the outputs the runtime carries out (bytes to send, sockets to close,
// records for other shards). Bytes in, actions out: no sockets, threads or clocks here.

import Codec
import ShardContract
import Router

/// Counters a shard keeps about its traffic.
public struct ShardCounters: Sendable {
    public var connectionsAccepted: UInt64 = 0
    public var connectionsRefused: UInt64 = 0
    public var authenticationFailures: UInt64 = 0
    public var slowConsumersDisconnected: UInt64 = 0
    public var publishesDenied: UInt64 = 0
    public var subscriptionsDenied: UInt64 = 0
    public var deliveriesDenied: UInt64 = 0
    public var publishesReceived: UInt64 = 0
    public var publishesDelivered: UInt64 = 0
    public var publishesForwarded: UInt64 = 0
    /// QoS 0 messages dropped because the subscriber's outbound buffer was full.
    public var droppedQoS0: UInt64 = 0
    /// QoS 1/2 messages dropped because the session's queue was full (max_queued_messages).
    public var droppedQueueFull: UInt64 = 0
    /// Messages not sent because they exceed the client's Maximum Packet Size (v5).
    public var droppedTooLarge: UInt64 = 0
    public var protocolErrors: UInt64 = 0
    /// Queued messages whose v5 Message Expiry Interval ran out before they could be sent.
    public var droppedExpired: UInt64 = 0
    /// Shared-group messages that found no member on the chosen shard (it left meanwhile).
    public var droppedNoSharedMember: UInt64 = 0
    /// PUBLISHes refused for a payload over message_size_limit.
    public var droppedOverSizeLimit: UInt64 = 0
    /// v5 QoS 1/2 PUBLISHes refused (0x97) while the store could not write.
    public var publishesRefusedUnstorable: UInt64 = 0
    /// Persistent sessions that went offline, and offline sessions that expired.
    public var sessionsPersisted: UInt64 = 0
    public var sessionsExpired: UInt64 = 0
    /// Sessions resumed by a reconnecting client (on this shard or moved here from another).
    public var sessionsResumed: UInt64 = 0
    /// Messages replayed to a route that arrived just after them (RecentPublishes.swift), and their
    /// deliveries on the route's shard.
    public var messagesReplayed: UInt64 = 0
    /// Shard records that did not decode (a bug: they come from this process), dropped.
    public var shardRecordsRefused: UInt64 = 0
    /// Connections cut off because the shard's partial packets went over partial_packet_memory_limit.
    public var partialPacketsCutOff: UInt64 = 0
    /// Flow control: publishers throttled (their acknowledgements held) and for how long in all,
    /// publishers whose input was paused, subscribers disconnected for stalling their publishers.
    public var publishersThrottled: UInt64 = 0
    public var throttledNanoseconds: UInt64 = 0
    public var publishersPaused: UInt64 = 0
    public var stalledSubscribersDisconnected: UInt64 = 0

    public init() {}

    /// Adds every counter of `other` (summing shards).
    public mutating func add(_ o: ShardCounters) {
        connectionsAccepted &+= o.connectionsAccepted; connectionsRefused &+= o.connectionsRefused
        authenticationFailures &+= o.authenticationFailures; slowConsumersDisconnected &+= o.slowConsumersDisconnected
        publishesDenied &+= o.publishesDenied; subscriptionsDenied &+= o.subscriptionsDenied
        deliveriesDenied &+= o.deliveriesDenied; publishesReceived &+= o.publishesReceived
        publishesDelivered &+= o.publishesDelivered; publishesForwarded &+= o.publishesForwarded
        droppedQoS0 &+= o.droppedQoS0; droppedQueueFull &+= o.droppedQueueFull; droppedTooLarge &+= o.droppedTooLarge
        protocolErrors &+= o.protocolErrors; droppedExpired &+= o.droppedExpired
        droppedNoSharedMember &+= o.droppedNoSharedMember; droppedOverSizeLimit &+= o.droppedOverSizeLimit
        publishesRefusedUnstorable &+= o.publishesRefusedUnstorable
        sessionsPersisted &+= o.sessionsPersisted; sessionsExpired &+= o.sessionsExpired; sessionsResumed &+= o.sessionsResumed
        partialPacketsCutOff &+= o.partialPacketsCutOff
        messagesReplayed &+= o.messagesReplayed
        shardRecordsRefused &+= o.shardRecordsRefused
        publishersThrottled &+= o.publishersThrottled; throttledNanoseconds &+= o.throttledNanoseconds
        publishersPaused &+= o.publishersPaused; stalledSubscribersDisconnected &+= o.stalledSubscribersDisconnected
    }

    /// Messages dropped for any reason (full queues, slow consumers, limits, expiry, ACL).
    public var dropped: UInt64 {
        var total = droppedQoS0 &+ droppedQueueFull &+ droppedTooLarge &+ droppedExpired
        total = total &+ droppedNoSharedMember &+ droppedOverSizeLimit &+ publishesDenied &+ deliveriesDenied
        total = total &+ publishesRefusedUnstorable
        return total
    }
}

/// One shard's MQTT state machine. Not thread-safe: owned by its shard thread.
///
/// The state the PUBLISH path touches is `@exclusivity(unchecked)`: the core is confined to one
/// thread and its handlers never hold overlapping accesses to a property (they move a buffer out
/// first, see `takeOutbound`), so the dynamic exclusivity checks find nothing and cost about a
/// quarter of a message's instructions (measured before they were switched off; docs/benchmarks.md).
public final class ShardCore {
    public let shardIndex: Int
    public let shardCount: Int
    /// The shards and, in a cluster, the node gateway: who gets routes, barriers and retained
    /// updates. Client ids and shared groups live on the shards only (`shardCount`).
    public let meshSize: Int
    /// Events for the webhooks made since the runtime last took them (ShardCore+Events.swift).
    public var events: [BrokerEvent] = []
    /// Changed only by `reloadSecurity` (SIGHUP), between inputs.
    @exclusivity(unchecked) public internal(set) var config: BrokerConfig
    @exclusivity(unchecked) public internal(set) var counters = ShardCounters()
    /// MQTT packets of any type received (kept apart from `counters`: bumped per packet).
    @exclusivity(unchecked) public internal(set) var packetsReceived: UInt64 = 0

    @exclusivity(unchecked) var connections: [ClientConnection] = []
    var freeSlots: [Int32] = []
    /// Connected clients on this shard (the connection quota counts these).
    var connectedClients = 0
    /// Bytes the decoders of this shard's connections hold for partial packets (their storage).
    @exclusivity(unchecked) public internal(set) var partialPacketBytes = 0
    /// Client-id registry for the ids whose home is this shard (see ShardCore+ClientRegistry).
    var registry: [String: ClientHolder] = [:]
    @exclusivity(unchecked) var trie = SubscriptionTrie<RouteEntry>()
    /// Round-robin positions of shared groups (indexed by SharedGroup.cursor; never shrinks).
    var sharedCursors: [Int] = []
    /// This shard's replica of the retained store.
    var retained = TopicTree<RetainedMessage>()
    /// The time of the input being processed (monotonic nanoseconds), for stamps.
    @exclusivity(unchecked) var currentTime: UInt64 = 0
    @exclusivity(unchecked) var matchScratch: [LocalSubscriber] = []
    /// When the input being processed arrived: the runtime sets it to the kernel's receive time of
    /// the read, or without one to the earliest it can have arrived (when it last took completions
    /// before these). A SUBSCRIBE's route carries it, so messages read on other shards since then
    /// are replayed to it (RecentPublishes.swift); nil (tests driving the core directly):
    /// `currentTime`.
    @exclusivity(unchecked) public var inputArrivedAfter: UInt64? = nil
    /// The last messages routed from this shard's clients, for routes that arrive just after them.
    @exclusivity(unchecked) var recent: RecentPublishes
    /// Trie matches by topic name (MatchCache.swift).
    @exclusivity(unchecked) var matchCache: MatchCache
    /// Shared groups matched by one message, reused.
    @exclusivity(unchecked) var sharedScratch: [SharedGroup] = []
    /// Byte arrays of finished QoS 1/2 messages, reused by the next ones (StoredMessage.swift).
    @exclusivity(unchecked) var messageBuffers = MessageBufferPool()
    /// Large payloads spliced into connections' outbound bytes and not taken by the runtime yet,
    /// per slot (ShardCore+Outbound.swift).
    @exclusivity(unchecked) var outboundSplices: [Int32: [OutboundSplice]] = [:]
    /// How many splices `outboundSplices` holds (a test of one integer on the common path).
    @exclusivity(unchecked) var untakenSplices = 0
    /// The large frame the packet being handled was decoded from: the sessions a QoS 1/2 message
    /// goes to hold its payload there instead of a copy each (StoredMessage.sharedPayload).
    @exclusivity(unchecked) var currentFrame: SharedBytes? = nil
    /// While a message is routed: the shared copy of its payload made at its first reliable
    /// delivery (when it did not arrive in `currentFrame`), and where the payload it copies is.
    @exclusivity(unchecked) var routePayload: SharedBytes? = nil
    @exclusivity(unchecked) var routePayloadSource: UnsafeRawPointer? = nil
    @exclusivity(unchecked) var routing = 0
    /// How many local subscriptions the message being routed matched (a QoS 0 payload is shared
    /// for several subscribers, copied for one: ShardCore+Outbound.swift).
    @exclusivity(unchecked) var routeLocalCount = 0
    /// Rewritten v5 property blocks (PUBLISH without Topic Alias), reused per message.
    var propertyScratch = ByteBuffer()
    /// Delivery properties with Subscription Identifiers added, reused per delivery.
    @exclusivity(unchecked) var deliveryScratch = ByteBuffer()
    /// Subscription Identifiers of one delivery, reused.
    @exclusivity(unchecked) var identifierScratch: [UInt32] = []
    var assignedIDCounter: UInt64 = 0
    /// The core's randomness (random shared-group members, assigned client ids' nonces): handed in,
    /// so a seeded test runs the same twice.
    var random: SplitMix64
    /// Refused logins not yet taken by the runtime (which logs them with the peer's address).
    var authenticationFailureLog: [AuthenticationFailure] = []
    /// Route barriers (see ShardMessage.barrier): the last token issued, the last one every
    /// other shard acknowledged, acknowledgements counted per outstanding token, and the SUBACKs
    /// waiting for them, in order.
    var lastBarrierIssued: UInt32 = 0
    var lastBarrierCompleted: UInt32 = 0
    var barrierAcks: [UInt32: Int] = [:]
    var pendingSubAcks: [PendingSubAck] = []

    /// Slots whose outbound buffer received bytes since the runtime last looked.
    @exclusivity(unchecked) public internal(set) var flushQueue: [Int32] = []
    /// Slots whose session ended; the runtime flushes and closes their sockets, then calls `release`.
    public internal(set) var closeQueue: [Int32] = []
    /// Records for each other shard (index = target shard); the runtime moves them into mailboxes.
    @exclusivity(unchecked) public var shardOutbox: [ByteBuffer]
    /// Route or shared-group records are in the outbox: the runtime moves the outbox into the
    /// mailboxes right after the input that caused them, not at the end of its completion batch,
    /// so a subscription takes effect on every shard as soon as possible. The runtime clears it.
    @exclusivity(unchecked) public var hasUrgentShardRecords = false
    /// Slots whose input was paused or resumed by flow control (the runtime cancels or re-arms
    /// their receive).
    @exclusivity(unchecked) public internal(set) var inputPauseChanges: [Int32] = []

    // The durable store (ShardCore+Store.swift).
    /// Records for this shard's log not yet taken by the runtime (which writes them, one write
    /// per loop turn, and reports back with `storeDurable(through:)`).
    @exclusivity(unchecked) public var storeRecords = ByteBuffer()
    /// The sequence number of the last record appended.
    @exclusivity(unchecked) public var storeSequence: UInt64 = 0
    /// CLOCK_REALTIME minus the core's monotonic clock (wrapping), set by the runtime at start,
    /// the same for every shard: stored stamps are wall-clock times, which mean something after
    /// a restart.
    @exclusivity(unchecked) public var wallClockOffset: UInt64 = 0
    /// The current segment's salt, which every record's CRC starts from (set by the runtime when
    /// a segment starts; StoreRecords.swift).
    @exclusivity(unchecked) public var storeSalt: UInt32 = 0
    /// Connections whose acknowledgements wait for a record to be durable (here, and with a
    /// ticket, on the shards it names), in the order they began to wait; `serial` tells the
    /// connection's latest wait.
    var storeWaiters: [(connection: ConnectionID, sequence: UInt64, ticket: UInt64, serial: UInt64)] = []
    var storeWaitSerial: UInt64 = 0
    /// The runtime: this shard's log cannot be written now (a full disk, write errors). v5 QoS 1/2
    /// PUBLISHes are refused with 0x97 meanwhile; 3.1.1 ones wait for their acknowledgement.
    @exclusivity(unchecked) public var storeUnavailable = false
    /// The last sequence the runtime reported durable (it sets the recovered one at start).
    @exclusivity(unchecked) public var storeDurableSequence: UInt64 = 0
    /// Keys of stored sessions and ids of their messages given out in this shard's log (the
    /// runtime's load sets where they continue).
    var storeSessionKeys: UInt64 = 0
    var storeMessageIDs: UInt64 = 0
    /// Store tickets (ShardCore+SessionStore.swift): the one open in this loop turn and the
    /// shards it waits for; the ones sent, with the answers missing; every ticket up to
    /// `remoteStoreDone` is answered by all its shards.
    var openStoreTicket: UInt64 = 1
    @exclusivity(unchecked) var storeTicketTargets = ShardSet()
    var pendingStoreTickets: [(ticket: UInt64, remaining: Int)] = []
    var remoteStoreDone: UInt64 = 0
    /// Other shards' store barriers waiting for this shard's log to be durable up to `sequence`.
    var storeBarrierWaiters: [(origin: Int, token: UInt64, sequence: UInt64)] = []
    /// What the last HTTP API publish waits for before its answer (the runtime takes it).
    var apiStoreWait: StoreWait? = nil
    /// Connections whose CONNACK waits for their stored session to be durable.
    var connectWaiters: [(connection: ConnectionID, sequence: UInt64, sessionPresent: Bool)] = []
    /// Stored sessions that moved to another shard: their end is stored once the ticket says
    /// the other shard stored them; the ones that moved within this shard, at the end of the turn.
    var movedSessionEnds: [(ticket: UInt64, key: UInt64)] = []
    var localMovedSessionEnds: [UInt64] = []
    /// The other shards the message being routed went to (a QoS 1/2 PUBLISH's acknowledgement
    /// waits for them when sessions are stored).
    @exclusivity(unchecked) var forwardedTo = ShardSet()
    /// Retained deletions this shard stored since its last snapshot and before it: a snapshot
    /// repeats them (once more after the one that follows them), so a deletion outlives the
    /// records of the message it deleted in the other shards' logs (ShardCore+Store.swift).
    var deletionsSinceSnapshot: [[UInt8]: RetainedStamp] = [:]
    var deletionsBeforeSnapshot: [[UInt8]: RetainedStamp] = [:]

    /// QoS 0 deliveries are dropped for a client with more than this many bytes pending.
    /// (QoS 1/2 deliveries are bounded by the inflight window and the queue instead.)
    @exclusivity(unchecked) public var softOutboundLimit = 4 << 20

    /// `random`: where the core draws random numbers from (default: seeded by the system).
    /// `gateway`: the node is part of a cluster; the mesh has one more member after the shards
    /// (index `shardCount`), the node gateway (Sources/Cluster/GatewayCore.swift), which gets what
    /// every other shard gets of routes, barriers and retained messages.
    public init(shardIndex: Int, shardCount: Int, config: BrokerConfig, gateway: Bool = false,
                random: SplitMix64 = .seededBySystem()) {
        precondition(shardCount >= 1 && shardCount <= 63 && shardIndex < shardCount)
        self.random = random
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.meshSize = shardCount + (gateway ? 1 : 0)
        self.config = config
        self.shardOutbox = Array(repeating: ByteBuffer(), count: meshSize)
        matchScratch.reserveCapacity(64)
        matchCache = MatchCache(capacity: config.matchCacheEntries)
        recent = RecentPublishes()
        // Address space for the expected connections up front: growing by copying would leave the
        // old arrays' pages resident (freed, but dirty in the allocator) and copy every slot.
        // Untouched capacity costs no memory.
        connections.reserveCapacity(min(config.maxConnectionsPerShard, 1 << 16))
    }

    deinit {
        for i in connections.indices { connections[i].releaseResources() }
        for i in shardOutbox.indices { shardOutbox[i].deallocate() }
        propertyScratch.deallocate()
        deliveryScratch.deallocate()
        recent.deallocate()
        storeRecords.deallocate()
    }

    // MARK: connection slots

    /// A new socket was accepted at `now` (nanoseconds, monotonic).
    public func accept(now: UInt64) -> ConnectionID {
        let slot = takeSlot()
        let s = Int(slot)
        connections[s].phase = .awaitingConnect
        connections[s].decoder = StreamDecoder(version: .v3_1_1, maxPacketSize: config.maxPacketSize)
        connections[s].openedAt = now
        connections[s].lastReceived = now
        connections[s].clientMaximumPacketSize = .max
        connections[s].clientReceiveMaximum = 65_535
        connections[s].requestProblemInformation = true
        connections[s].socketAttached = true
        connections[s].cleanStart = true
        counters.connectionsAccepted += 1
        return ConnectionID(slot: slot, generation: connections[s].generation)
    }

    /// A socket the runtime serves itself (another protocol than MQTT: the HTTP API) takes a slot
    /// from the same table, so that every connection of the shard has one id space; the core's
    /// timers, counts and limits skip it, and `release` frees it.
    public func acceptExternal() -> ConnectionID {
        let slot = takeSlot()
        connections[Int(slot)].phase = .external
        connections[Int(slot)].socketAttached = true
        return ConnectionID(slot: slot, generation: connections[Int(slot)].generation)
    }

    /// A free slot of the table (reused first, else a new one).
    private func takeSlot() -> Int32 {
        if let reused = freeSlots.popLast() { return reused }
        connections.append(ClientConnection())
        return Int32(connections.count - 1)
    }

    /// True when `id` names the current occupant of its slot.
    @inline(__always)
    public func isCurrent(_ id: ConnectionID) -> Bool {
        let s = Int(id.slot)
        return s >= 0 && s < connections.count && connections[s].generation == id.generation
            && connections[s].phase != .free
    }

    /// The phase of a connection.
    public func phase(of id: ConnectionID) -> ConnectionPhase {
        isCurrent(id) ? connections[Int(id.slot)].phase : .free
    }

    /// The runtime closed the slot's socket. The slot is freed (stale ids never match it again),
    /// unless it holds an offline persistent session, which keeps it without a socket.
    public func release(_ id: ConnectionID) {
        guard isCurrent(id) else { return }
        connectionLost(id)  // ends a session the runtime closed first (no-op otherwise)
        let s = Int(id.slot)
        connections[s].socketAttached = false
        releaseDecoder(slot: s)
        dropSplices(id.slot)
        if connections[s].phase == .offline {
            connections[s].releaseSocketBuffers()
        } else {
            freeSlot(s)
        }
    }

    /// Returns a slot to the free list.
    func freeSlot(_ s: Int) {
        releaseDecoder(slot: s)
        dropSplices(Int32(s))
        connections[s].releaseResources()
        connections[s].phase = .free
        connections[s].generation &+= 1
        connections[s].flushQueued = false
        freeSlots.append(Int32(s))
    }

    // MARK: outbound bytes (runtime side)

    /// Hands the runtime the bytes queued for the client: they are swapped with `buffer`, which
    /// must be empty (its memory becomes the next queue: two buffers alternate, nothing is
    /// copied or allocated). The connection's transport owns them from here; the runtime reports
    /// what it still holds with `setTransportBacklog`.
    @inline(__always)
    public func takeOutbound(_ id: ConnectionID, swappingWith buffer: inout ByteBuffer) {
        assert(buffer.isEmpty, "the transport's buffer still holds bytes")
        assert(outboundSplices[id.slot] == nil, "a connection whose output is not gathered got splices")
        swap(&connections[Int(id.slot)].outbound, &buffer)
    }

    /// The bytes the connection's transport (and the kernel's send in flight) hold for the client:
    /// counted with the queue against max_outbound_buffer and the QoS 0 drop limit.
    @inline(__always)
    public func setTransportBacklog(_ id: ConnectionID, bytes: Int) {
        // Payloads spliced since the runtime took the queue wait too.
        let spliced = _slowPath(untakenSplices > 0) ? untakenSpliceBytes(id.slot) : 0
        connections[Int(id.slot)].transportBacklog = Int32(clamping: bytes + spliced)
    }

    /// True when the core queued bytes the runtime has not taken.
    @inline(__always)
    public func hasQueuedOutput(_ id: ConnectionID) -> Bool {
        !connections[Int(id.slot)].outbound.isEmpty  // a splice always follows its PUBLISH's first bytes
    }

    /// True when the connection's queue holds no memory (the core gave it back after a quiet
    /// second): the runtime may then give back its transport's buffers too.
    public func outboundReleased(_ id: ConnectionID) -> Bool {
        isCurrent(id) && connections[Int(id.slot)].outbound.capacity == 0
    }

    /// Hands the runtime the flush queue and starts a new one (the caller swaps an empty array in).
    public func swapFlushQueue(_ other: inout [Int32]) {
        swap(&flushQueue, &other)
        for slot in other { connections[Int(slot)].flushQueued = false }
    }

    /// Hands the runtime the close queue.
    public func swapCloseQueue(_ other: inout [Int32]) { swap(&closeQueue, &other) }

    /// The current id of a slot (for queue entries).
    public func connectionID(slot: Int32) -> ConnectionID {
        ConnectionID(slot: slot, generation: connections[Int(slot)].generation)
    }

    @inline(__always)
    func markFlush(_ s: Int) {
        if !connections[s].flushQueued {
            connections[s].flushQueued = true
            flushQueue.append(Int32(s))
        }
    }

    // MARK: timers

    /// Closes connections that sent no CONNECT in time or went silent for 1.5 × keep alive.
    public func tick(now: UInt64) {
        currentTime = now
        let connectTimeout = UInt64(config.connectTimeoutSeconds * 1e9)
        for s in connections.indices {
            switch connections[s].phase {
            case .awaitingConnect, .connecting:
                if now &- connections[s].openedAt > connectTimeout {
                    endSession(slot: s, publishWill: false, disconnectReason: nil)
                }
            case .offline:
                if let (_, dueAt) = connections[s].session.delayedWill, now >= dueAt {
                    publishDelayedWill(slot: s)
                }
                let expiry = connections[s].session.expiry
                if expiry != .max && now &- connections[s].offlineSince > UInt64(expiry) * 1_000_000_000 {
                    discardSession(slot: s)
                }
            case .connected:
                let keepAlive = UInt64(connections[s].keepAlive)
                // A connection whose input flow control paused is not read: its silence is ours.
                if keepAlive > 0 && now &- connections[s].lastReceived > keepAlive * 1_500_000_000
                    && connections[s].flow & FlowFlag.inputPaused == 0 {
                    endSession(slot: s, publishWill: true, disconnectReason: .keepAliveTimeout)
                } else if isStalled(s, now: now) {
                    // It holds its publishers back and acknowledges nothing: let them go.
                    counters.stalledSubscribersDisconnected += 1
                    endSession(slot: s, publishWill: true, disconnectReason: .quotaExceeded,
                               reasonString: "no acknowledgement for subscriber_stall_timeout while publishers wait")
                } else if connections[s].outbound.capacity != 0 && connections[s].outbound.isEmpty
                            && connections[s].transportBacklog == 0
                            && now &- connections[s].lastReceived > 1_000_000_000 {
                    // Quiet for a second with nothing to send (none in flight either): give the
                    // write buffer back, so idle connections hold no memory beyond their slot (the
                    // runtime then frees its transport's buffers, `outboundReleased`).
                    connections[s].outbound.deallocate()
                }
            case .free, .closing, .external:
                break
            }
        }
    }

    /// Offline persistent sessions on this shard.
    public var offlineSessions: Int { connections.reduce(0) { $0 + ($1.phase == .offline ? 1 : 0) } }
}
