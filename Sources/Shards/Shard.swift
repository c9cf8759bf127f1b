// One shard: a thread's event loop over its own io_uring ring. It accepts connections from its
// SO_REUSEPORT listener, receives into provided buffers, feeds the ShardCore, sends what the core
// queued, and exchanges records with the other shards through the mailboxes.

import ApusBase
import Broker
import CApusSys
import Codec
import IOUring
import Logging
import Synchronization
import Transport
import TLS
import WebSocket
import Telemetry
import Bridge
@preconcurrency import Glibc

/// The runtime's view of a connection slot's socket.
struct SocketState {
    var fd: Int32 = -1
    var generation: UInt32 = 0
    /// The bytes for the peer that the transport produced and the kernel has not taken: the send
    /// in flight reads from here, so they never move until it completes.
    var wire = ByteBuffer()
    /// The listener the connection came from (index into the group's listeners) and its transport.
    var listener: UInt16 = 0
    var transport: Transport = .plain
    /// MQTT (the core's) or HTTP (HTTPServer.swift's, `Shard.httpExchanges`).
    var protocolName: ListenerProtocol = .mqtt
    /// A recv is armed: the multishot one into the provided buffers, or (`directAllocation` set)
    /// one straight into the decoder's storage, whose allocation is freed here if the core forgot
    /// it meanwhile, or a single one into a provided buffer. `largeInput`: the connection sends
    /// large packets, received with single recvs (`armRecv`); `directSwitch`: the multishot recv
    /// was cancelled to switch to those.
    var recvArmed = false
    var directAllocation: UnsafeMutableRawPointer? = nil
    var directSwitch = false
    var largeInput = false
    /// The single recvmsg's buffer while `largeInput` (with the kernel's receive time, which
    /// dates a SUBSCRIBE for the subscribe-race replay as the multishot recv's does).
    var singleReceive: SingleReceive? = nil
    var sendInFlight = false
    /// The core ended the session: flush, then shut down and close.
    var closing = false
    /// No more bytes are sent: `shutdown(SHUT_WR)` (the peer reads EOF after the last packet) or
    /// `SHUT_RDWR` was called.
    var writeShut = false
    /// No more bytes are read: the peer's EOF (or an error) arrived, or `SHUT_RDWR` was called.
    var readShut = false
    /// While flushing: when to give up on a peer that does not read; after SHUT_WR: how long to
    /// keep reading (and discarding) before closing anyway.
    var closeDeadline: UInt64 = 0
    /// TLS and WebSocket listeners: the connection's TLS and WebSocket state, and the bytes the
    /// layers produced on their own (handshakes, alerts, pongs, close frames) that wait until no
    /// send is in flight (`wire` must not move under one); whether close_notify went out, and
    /// when an unfinished TLS handshake is given up.
    var tls: TLSSession? = nil
    var ws: WebSocketSession? = nil
    /// A bridge's connection to the remote broker (Shard+Bridge.swift).
    var bridge: BridgeSession? = nil
    var transportOut = ByteBuffer()
    /// Plain TCP: the large payloads spliced into `wire` (OutboundGather.swift), while some are.
    var gather: OutboundGather? = nil
    var closeNotifySent = false
    var handshakeDeadline: UInt64 = 0
}

final class Shard {
    let index: Int
    unowned let group: ShardGroup
    let ring: IOUring
    let buffers: ProvidedBufferRing
    /// The msghdr of every multishot recvmsg and the layout of what it leaves in `buffers`.
    let receiveFormat = ReceiveMessageFormat()
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC (wrapping), taken at each tick: turns the kernel's
    /// receive timestamps into the loop's clock. Both clocks are slewed alike; a step of the
    /// realtime clock is picked up at the next tick (until then a route's replay starts too early,
    /// replaying what the ring holds, or too late, clamped to the harvest time as without
    /// timestamps).
    var realtimeOffset: UInt64 = 0
    /// When this loop turn's input can have arrived at the earliest, for input without a kernel
    /// timestamp (see run()).
    var turnArrival: UInt64 = 0
    let core: ShardCore
    /// This shard's log of the durable store (nil: persistence off).
    var storeLog: ShardLog? = nil
    /// This shard's socket of each MQTT listener.
    let listeners: [Int32]
    /// The HTTP listener's socket (shard 0, when `http_listener` is set), and the requests of its
    /// connections (their sockets are entries of `sockets`, as every connection's).
    let httpListener: Int32?
    var httpExchanges: [Int32: HTTPExchange] = [:]
    /// HTTP answers waiting for the store (HTTPServer.swift).
    var httpStoreWaits: [(slot: Int, generation: UInt32, bytes: [UInt8], wait: StoreWait, keepAlive: Bool)] = []
    var httpMessageCounter: UInt64 = 0
    /// The security settings generation this shard runs with (see ShardGroup.reloadSecurity).
    var securityGeneration = 0
    /// TLS: each MQTT listener's context (nil: plain), taken from the group at start and after a
    /// SIGHUP; the slots still in their handshake; scratch buffers; counters for /metrics.
    var tlsContexts: [TLSContext?] = []
    var tlsGeneration = 0
    var handshakingSlots: [Int32] = []
    var tlsPlaintext = ByteBuffer()
    var tlsOutbound = ByteBuffer()
    var tlsConnections = 0
    var tlsHandshakes: UInt64 = 0
    var tlsHandshakeFailures: UInt64 = 0
    var tlsHandshakesRefused: UInt64 = 0
    /// WebSocket: scratch buffers (the frames' payload, control answers under TLS, framed output
    /// on its way to TLS) and counters for /metrics.
    var wsPlaintext = ByteBuffer()
    /// The bridges this shard runs (Shard+Bridge.swift) and their scratch buffers.
    var bridges: [BridgeLink] = []
    var bridgePlaintext = ByteBuffer()
    var bridgeScratch = ByteBuffer()
    var bridgeRemote = ByteBuffer()
    /// The core's events of a loop turn, and one hook's share of them (Webhooks.swift).
    var eventScratch: [BrokerEvent] = []
    var hookScratch: [BrokerEvent] = []
    var wsControl = ByteBuffer()
    var wsFramed = ByteBuffer()
    var wsConnections = 0
    var wsUpgrades: UInt64 = 0
    var wsUpgradesRefused: UInt64 = 0
    var wsProtocolErrors: UInt64 = 0
    var logger: Logger
    /// The shard's connection table, indexed by the core's slot (`ConnectionID.slot`): every socket
    /// of the shard, whatever its listener, protocol or transport.
    var sockets: [SocketState] = []
    let completions: UnsafeMutablePointer<Completion>
    let completionCapacity = 512
    var flushScratch: [Int32] = []
    /// The splices of one connection taken from the core, handed to its OutboundGather.
    var spliceScratch: [OutboundSplice] = []
    var closeScratch: [Int32] = []
    var closingSlots: [Int32] = []
    var pauseScratch: [Int32] = []
    /// Bytes and packets moved by this shard's sockets (reported on the stats board).
    var bytesReceived: UInt64 = 0
    /// Receive completions, and their count at the last check (to tell a quiet second).
    var receives: UInt64 = 0
    var receivesAtLastCheck: UInt64 = 0
    /// `receives` when the allocator was last asked to give memory back.
    var receivesAtQuietPurge: UInt64 = 0
    var bytesSent: UInt64 = 0
    var statsDue: UInt64 = 0
    var sys: SysTopics? = nil
    /// Drop counters already logged.
    var loggedDrops = (queueFull: UInt64(0), qos0: UInt64(0), tooLarge: UInt64(0), overLimit: UInt64(0))
    static let bufferGroup: UInt16 = 0
    static let closeGraceNanoseconds: UInt64 = 2_000_000_000
    /// A wait longer than this slept (an io_uring_enter that finds completions returns in a few µs).
    static let sleptNanoseconds: UInt64 = 50_000
    /// After the last bytes and SHUT_WR, input is read and discarded for at most this long, so that
    /// the peer's late packets do not make the kernel answer with a reset that could destroy the
    /// DISCONNECT / CONNACK reason code before the peer read it.
    static let lingerNanoseconds: UInt64 = 1_000_000_000
    static let shutdownDrainNanoseconds: UInt64 = 500_000_000
    /// Fewer receives than this in a second: the receive buffers' pages are given back (refaulting
    /// them costs about a microsecond a page; at this rate that is noise).
    static let quietReceivesPerSecond: UInt64 = 1000

    init(index: Int, group: ShardGroup, listener: [Int32], httpListener: Int32?) throws {
        self.index = index
        self.group = group
        self.listeners = listener
        self.httpListener = httpListener
        self.logger = group.logger
        logger[metadataKey: "shard"] = "\(index)"
        let config = group.config
        ring = try IOUring(entries: 2048, cqEntries: 16384, skipping: group.config.ringSetupsSkipped)
        buffers = try ProvidedBufferRing(ring: ring, group: Shard.bufferGroup,
                                         count: config.receiveBufferCount, bufferSize: config.receiveBufferSize,
                                         initial: config.initialReceiveBuffers)
        core = ShardCore(shardIndex: index, shardCount: config.shards, config: config.broker, gateway: config.cluster != nil)
        realtimeOffset = apus_realtime_ns() &- apus_monotonic_ns()
        core.wallClockOffset = group.wallClockOffset
        if let store = config.store, let recovered = group.recoveredStore {
            let segment = recovered.segments[index]
            let loadStarted = apus_monotonic_ns()
            core.reserveRetained(recovered.retained.reduce(0) { $0 + $1.count })
            for part in recovered.retained { core.loadRetained(part, now: apus_monotonic_ns()) }
            let retainedLoaded = apus_monotonic_ns()
            core.loadSessions(recovered.sessions[index], now: apus_monotonic_ns())
            logger.info("store: loaded", metadata: ["sessions": "\(recovered.sessions[index].count)",
                                                   "retained_ms": "\((retainedLoaded - loadStarted) / 1_000_000)",
                                                   "milliseconds": "\((apus_monotonic_ns() - loadStarted) / 1_000_000)"])
            core.storeSequence = segment.lastSequence
            core.storeDurableSequence = segment.lastSequence
            core.storeSalt = segment.salt
            storeLog = ShardLog(config: store, shard: index, shardCount: config.shards, durability: config.broker.durability,
                                segment: segment, now: apus_monotonic_ns())
        }
        (tlsGeneration, tlsContexts) = group.currentTLSContexts()
        for (i, bridge) in config.bridges.enumerated() where i % config.shards == index {
            bridges.append(BridgeLink(index: i, config: bridge))
        }
        completions = .allocate(capacity: completionCapacity)
        flushScratch.reserveCapacity(1024)
        sockets.reserveCapacity(min(config.broker.maxConnectionsPerShard, 1 << 16))  // as ShardCore's slots
        closeScratch.reserveCapacity(64)
    }

    deinit {
        completions.deallocate()
    }

    @inline(__always) func now() -> UInt64 { apus_monotonic_ns() }

    /// The event loop; returns when the group stops.
    func run() {
        // Clients are accepted once every bridge's session exists in the core (a few loop turns;
        // Shard+Bridge.swift), so nothing published for a bridge is missed; at most 2 s.
        var acceptsArmed = false
        let startedAt = now()
        let tick = group.config.tickNanoseconds
        var nextTick = now() + tick
        let signals = group.signals[index]
        // On stop: publish the wills (every shard, before anyone is told), then tell v5 clients
        // (DISCONNECT 0x8B), flush for at most this long, and close.
        var willsPublishedAt: UInt64? = nil
        var drainUntil: UInt64? = nil
        var previousHarvest = now()
        while true {
            let before = now()
            if !acceptsArmed && (group.bridgesPending.load(ordering: .acquiring) == 0 || before &- startedAt > 2_000_000_000) {
                for i in listeners.indices { armAccept(i) }
                armHTTPAccept()
                acceptsArmed = true
            }
            for link in bridges where !link.bootstrapped { bootstrapBridge(link, now: before) }
            if willsPublishedAt == nil && group.stopping.load(ordering: .relaxed) {
                core.publishWillsAtShutdown()
                flushConnections()
                sendOutbox()  // into the mailboxes before this shard counts itself
                willsPublishedAt = before
                group.shardsPastWills.add(1, ordering: .releasing)
            }
            if drainUntil == nil, let since = willsPublishedAt,
               group.shardsPastWills.load(ordering: .acquiring) == group.config.shards || before - since > Shard.shutdownDrainNanoseconds {
                drainMailboxes()  // the other shards' wills, sent before they counted themselves
                core.serverShuttingDown()
                flushConnections()
                drainUntil = before + Shard.shutdownDrainNanoseconds
            }
            if let deadline = drainUntil, before >= deadline || !hasOutputInFlight() { break }
            var timeout = nextTick > before ? Int64(nextTick - before) : 0
            if willsPublishedAt != nil { timeout = min(timeout, 5_000_000) }
            signals.sleeping.store(true, ordering: .sequentiallyConsistent)
            if timeout > 0 && (inboundMailboxesHaveRecords() || ring.readyCompletions > 0) { timeout = 0 }
            if timeout == 0 {
                ring.submitAndGetEvents()
            } else {
                ring.submitAndWait(timeoutNanoseconds: timeout)
            }
            signals.sleeping.store(false, ordering: .relaxed)

            let current = now()
            // When what is harvested now can have arrived at the earliest (a route's replay time,
            // RecentPublishes.swift). A wait that slept was woken by it: it arrived just now. A
            // wait that returned at once found it pending (with DEFER_TASKRUN, input that arrives
            // while the loop works waits for the next io_uring_enter): it arrived after the
            // previous harvest.
            // Input read from a socket carries the kernel's receive time instead (received(_:now:)),
            // which a vCPU that was not running when the input woke it cannot delay.
            turnArrival = current &- before > Shard.sleptNanoseconds ? current : previousHarvest
            core.inputArrivedAfter = turnArrival
            previousHarvest = current
            processCompletions(now: current)
            core.inputArrivedAfter = turnArrival
            logAuthenticationFailures()
            if !group.webhookSenders.isEmpty { dispatchEvents() }
            buffers.publishReturns()
            drainMailboxes()
            applyInputPauses()
            processCloseQueue(now: current)
            storeAfterTurn(now: current)
            releaseHTTPStoreWaits(now: current)
            flushConnections()
            sendOutbox()
            if current >= nextTick {
                signals.lastTick.store(current, ordering: .relaxed)
                realtimeOffset = apus_realtime_ns() &- now()
                if let stall = group.config.faultStallShard, stall == index,
                   Double(current &- group.stats.startedAt) / 1e9 >= group.config.faultStallAfterSeconds {
                    // Fault injection (tests of the supervision): stuck, as a shard in a loop would be.
                    logger.warning("fault injection: shard \(index) stops ticking")
                    while !group.stopping.load(ordering: .relaxed) { usleep(10_000) }
                }
                core.tick(now: current)
                checkClosingDeadlines(now: current)
                checkHTTPDeadlines(now: current)
                checkHandshakeDeadlines(now: current)
                tickBridges(now: current)
                if group.securityGeneration.load(ordering: .acquiring) != securityGeneration { reloadSecurity() }
                if group.tlsGeneration.load(ordering: .acquiring) != tlsGeneration { reloadTLS() }
                logDrops()
                if current >= statsDue {
                    releaseReceivePagesIfQuiet()
                    reportStats(now: current)
                }
                nextTick = current + tick
            }
        }
        shutdown()
    }

    // MARK: accept

    /// Arms the multishot accept of MQTT listener `i` (its index rides in the user data's slot
    /// field; `httpListenerIndex` is the HTTP listener's, armHTTPAccept).
    func armAccept(_ i: Int) {
        ring.prepareMultishotAccept(fd: listeners[i], userData: UserData.make(.accept, ConnectionID(slot: Int32(i), generation: 0)))
    }

    /// A connection arrived on listener `listener` (an MQTT listener's index, or
    /// `httpListenerIndex`); it speaks that listener's protocol and transport.
    func accepted(fd: Int32, listener: Int, now: UInt64) {
        // No Nagle delay (Apus batches its own writes): inherited from the listening socket.
        let http = listener == Int(Shard.httpListenerIndex)
        let transport = http ? .plain : group.config.listeners[listener].transport
        var session: TLSSession? = nil
        if transport.usesTLS {
            session = newTLSSession(listener: listener)
            guard session != nil else {
                Glibc.close(fd)
                return
            }
        }
        let id = http ? core.acceptExternal() : core.accept(now: now)
        let slot = Int(id.slot)
        while sockets.count <= slot { sockets.append(SocketState()) }
        sockets[slot] = SocketState(fd: fd, generation: id.generation, listener: UInt16(listener), transport: transport,
                                    protocolName: http ? .http : .mqtt)
        if transport == .plain && !http { core.enableGatheredOutput(id) }
        if let session { startTLS(slot: slot, session: session, now: now) }
        if transport.usesWebSocket { startWebSocket(slot: slot, listener: listener) }
        if http { beginHTTPExchange(slot: slot, now: now) }
        armRecv(slot: slot)
    }

    func armRecv(slot: Int) {
        let state = sockets[slot]
        let id = ConnectionID(slot: Int32(slot), generation: state.generation)
        sockets[slot].directSwitch = false
        if state.largeInput && state.transport == .plain && state.protocolName == .mqtt && !state.closing {
            // A connection sending large packets. A multishot recv would take all the socket
            // holds into 16 KiB buffers, each then copied into the packet's storage: instead,
            // single recvs into a buffer until the packet's storage has its full size
            // (StreamDecoder's rule: an eighth of it arrived), then its rest straight into it.
            if let (room, allocation) = core.lendReceiveRoom(id, minimum: Shard.directReceiveMinimum) {
                ring.prepareRecv(fd: state.fd, buffer: room.baseAddress!, count: room.count, userData: UserData.make(.recvDirect, id))
                sockets[slot].directAllocation = allocation
            } else {
                let single = state.singleReceive ?? SingleReceive(capacity: buffers.bufferSize)
                sockets[slot].singleReceive = single
                ring.prepareRecvMessage(fd: state.fd, message: single.prepare(), userData: UserData.make(.recvOnce, id))
            }
            sockets[slot].recvArmed = true
            return
        }
        ring.prepareMultishotRecvMessage(fd: state.fd, format: receiveFormat, group: Shard.bufferGroup,
                                         userData: UserData.make(.recv, id))
        sockets[slot].recvArmed = true
    }

    /// What is left of a packet for its receive to go straight into its storage (below it, the
    /// cancel and the single recv cost more than the copies they save).
    static let directReceiveMinimum = 64 << 10

    /// Flow control paused or resumed some connections' input: cancel or re-arm their receive.
    func applyInputPauses() {
        guard !core.inputPauseChanges.isEmpty else { return }
        core.swapInputPauseChanges(&pauseScratch)
        for slot32 in pauseScratch {
            let slot = Int(slot32)
            guard slot < sockets.count, sockets[slot].fd >= 0, !sockets[slot].closing else { continue }
            let id = ConnectionID(slot: slot32, generation: sockets[slot].generation)
            if core.isInputPaused(id) {
                if sockets[slot].recvArmed {
                    ring.prepareCancel(userData: UserData.make(.recv, id), userData: UserData.make(.cancel, id))
                }
            } else if !sockets[slot].recvArmed && !sockets[slot].readShut {
                armRecv(slot: slot)
            }
        }
        pauseScratch.removeAllKeepingCapacity()
    }

    // MARK: sending

    /// Starts a send of everything the core queued for `slot`, unless one is in flight: the
    /// transport turns the core's bytes into the socket's (`wire`), and the core is told what the
    /// transport holds, so its limits count it.
    func startSend(slot: Int) {
        guard sockets[slot].fd >= 0, !sockets[slot].sendInFlight, !sockets[slot].writeShut else { return }
        let id = ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)
        if sockets[slot].wire.isEmpty && sockets[slot].protocolName == .mqtt {
            switch sockets[slot].transport {
            case .plain:
                // The core's queue becomes the bytes to send, and the empty buffer its next queue;
                // large payloads spliced into it are sent from where they are held.
                core.takeOutbound(id, swappingWith: &sockets[slot].wire, splices: &spliceScratch)
                if !spliceScratch.isEmpty {
                    let gather = sockets[slot].gather ?? OutboundGather()
                    gather.begin(splices: &spliceScratch, wireBytes: sockets[slot].wire.readableBytes)
                    sockets[slot].gather = gather
                }
                core.setTransportBacklog(id, bytes: unsentBytes(slot: slot))
            case .tls, .secureWebSocket:
                encryptOutbound(slot: slot, id: id)
            case .webSocket:
                frameOutbound(slot: slot, id: id)
            case .bridge:
                bridgeOutbound(slot: slot, id: id)
            }
        } else if !sockets[slot].transportOut.isEmpty {
            // Handshake or alert records (pongs, close frames) made while the last send was in flight.
            sockets[slot].wire.writeBytes(sockets[slot].transportOut.readableView)
            sockets[slot].transportOut.clear()
        }
        let count = sockets[slot].wire.readableBytes
        guard count > 0 else { return }
        if let gather = sockets[slot].gather, gather.isActive {
            ring.prepareSendMessage(fd: sockets[slot].fd, message: gather.prepare(wire: sockets[slot].wire.readableView),
                                    userData: UserData.make(.send, id))
        } else {
            ring.prepareSend(fd: sockets[slot].fd, bytes: sockets[slot].wire.readableView.baseAddress!, count: count,
                             userData: UserData.make(.send, id))
        }
        sockets[slot].sendInFlight = true
    }

    /// The bytes `wire` (and the payloads spliced into it) still hold for the peer.
    @inline(__always)
    func unsentBytes(slot: Int) -> Int {
        if let gather = sockets[slot].gather, gather.isActive { return gather.remaining }
        return sockets[slot].wire.readableBytes
    }

    /// Bytes for the peer not yet handed to the kernel: the core's queue or the transport's.
    @inline(__always)
    func hasUnsentOutput(slot: Int, id: ConnectionID) -> Bool {
        !sockets[slot].wire.isEmpty || !sockets[slot].transportOut.isEmpty || core.hasQueuedOutput(id)
    }

    func flushConnections() {
        core.swapFlushQueue(&flushScratch)
        for slot in flushScratch { startSend(slot: Int(slot)) }
        flushScratch.removeAllKeepingCapacity()
    }

    /// True while some socket has a send in flight or bytes queued.
    func hasOutputInFlight() -> Bool {
        if let log = storeLog, log.state != .idle || !core.storeRecords.isEmpty { return true }
        for slot in sockets.indices where sockets[slot].fd >= 0 && !sockets[slot].writeShut {
            if sockets[slot].sendInFlight { return true }
            if hasUnsentOutput(slot: slot, id: ConnectionID(slot: Int32(slot), generation: sockets[slot].generation)) { return true }
        }
        return false
    }

    /// Takes the security settings the group last loaded (SIGHUP) into this shard's core.
    func reloadSecurity() {
        let (generation, settings) = group.currentSecurity()
        securityGeneration = generation
        if let settings { core.reloadSecurity(settings) }
        logger.debug("password and ACL settings reloaded", metadata: ["generation": "\(generation)"])
    }

    func shutdown() {
        for fd in listeners { Glibc.close(fd) }
        if let fd = httpListener { Glibc.close(fd) }
        for slot in sockets.indices where sockets[slot].fd >= 0 {
            Glibc.shutdown(sockets[slot].fd, Int32(SHUT_RDWR))
            Glibc.close(sockets[slot].fd)
            // A buffer a send still in flight may read is left allocated (the process is stopping).
            if !sockets[slot].sendInFlight { sockets[slot].wire.deallocate() }
        }
        flushStoreAtShutdown()
        buffers.unregister()
        logger.debug("stopped", metadata: [
            "received": "\(core.counters.publishesReceived)", "delivered": "\(core.counters.publishesDelivered)",
        ])
    }
}
