// Starts and stops the shards: N pinned threads, each with its own ring, listener and core,
// connected by one Mailbox per ordered pair of shards.

import ApusBase
import Broker
import CApusSys
import Bridge
import Cluster
import HTTPAPI
import Logging
import Synchronization
import TLS
@preconcurrency import Glibc

/// Runtime settings of a shard group.
public struct ShardGroupConfig: Sendable {
    public var shards: Int
    /// The MQTT listeners (mosquitto's repeated `listener PORT [ADDRESS]`), each on every shard.
    public var listeners = [ListenerConfig(host: "127.0.0.1", port: 1883)]
    /// TCP_NODELAY on accepted sockets (Apus batches its writes per loop iteration, so Nagle's
    /// algorithm only adds latency).
    public var tcpNoDelay = true
    public var broker = BrokerConfig()
    /// Bytes of each shard-to-shard mailbox (power of two).
    public var mailboxCapacity = 4 << 20
    /// Provided receive buffers per shard (power of two) and their size (`receive_buffer_size`:
    /// 64 KiB, so that most packets of a few to tens of KiB lie whole in one buffer and are decoded
    /// where the kernel put them; docs/benchmarks.md).
    public var receiveBufferCount: UInt16 = 1024
    public var receiveBufferSize = 64 << 10
    /// Receive buffers provided at start; doubled (up to `receiveBufferCount`) whenever the kernel
    /// runs out, so a quiet shard touches the first pages of 64 buffers, not all 1,024.
    public var initialReceiveBuffers: UInt16 = 64
    /// How often timers (connect timeout, keep alive, closing deadlines) are checked.
    public var tickNanoseconds: UInt64 = 100_000_000
    /// Seconds between $SYS/broker/... updates (mosquitto's sys_interval); 0 = none.
    public var sysIntervalSeconds = 10
    /// The version reported in $SYS/broker/version and /metrics.
    public var version = "0.1.0"
    /// The HTTP listener (metrics, health, publish API), served by shard 0; nil: none.
    public var httpListener: ListenerConfig? = nil
    /// TLS listeners: a handshake not finished after this long is closed (`tls_handshake_timeout`),
    /// and each shard runs at most this many at once (`max_tls_handshakes`; more are closed).
    public var tlsHandshakeTimeoutNanoseconds: UInt64 = 10_000_000_000
    public var maxTLSHandshakes = 512
    /// When set, `/api/v5/...` requests need HTTP Basic authentication with this key and secret.
    public var httpCredentials: HTTPCredentials? = nil
    /// Pin shard i to the i-th CPU this process may use (cpu_affinity; the configuration decides).
    public var pinThreads = true
    /// Ring set-ups to leave out, best first (0: SINGLE_ISSUER|DEFER_TASKRUN where the kernel has
    /// it). Only for measuring what each brings: the APUS_RING_SETUP_SKIP environment variable.
    public var ringSetupsSkipped = 0
    /// Fault injection for supervision tests (APUS_FAULT_STALL_SHARD / APUS_FAULT_STALL_AFTER,
    /// docs/operations.md): this shard stops ticking this many seconds after start, as a shard
    /// stuck in a loop would (it only notices the group stopping). nil: never.
    public var faultStallShard: Int? = nil
    public var faultStallAfterSeconds: Double = 0
    /// Fault injection (tests of the store): a shard's log write waits this long after its first
    /// record (a slow disk), so that what is acknowledged before the write would be lost by kill -9.
    public var faultStoreWriteDelayNanoseconds: UInt64 = 0
    /// The durable store's files (`persistence true`); nil: nothing is stored.
    public var store: StoreConfig? = nil
    /// Membership of a cluster (`cluster_name` and its keys); nil: a node on its own.
    public var cluster: ClusterConfig? = nil
    /// Bridges to other brokers (`connection` blocks); bridge i runs on shard i % shards.
    public var bridges: [BridgeConfig] = []
    /// Webhooks (`webhook` blocks), each with its sender thread (Webhooks.swift).
    public var webhooks: [WebhookConfig] = []

    public init(shards: Int) { self.shards = shards }
}

/// Cross-thread state of one shard that other shards read: its ring fd and whether it sleeps.
final class ShardSignals: Sendable {
    let ringFD = Atomic<Int32>(-1)
    /// Set by the shard just before it blocks in io_uring_enter; producers that find it set
    /// clear it and wake the shard with MSG_RING.
    let sleeping = Atomic<Bool>(false)
    /// Monotonic time of the shard's last timer tick (every 100 ms while its loop runs): what the
    /// systemd watchdog and GET /health read to tell a shard stuck in a loop.
    let lastTick = Atomic<UInt64>(0)
}

/// A running set of shards.
public final class ShardGroup: @unchecked Sendable {
    // Invariants: `threads` and `listeners` are touched only by the thread that calls start/stop.
    public let config: ShardGroupConfig
    /// The first MQTT listener's bound port (differs from the configured one when that is 0).
    public let port: UInt16
    /// Every MQTT listener as bound (ports picked for port 0 filled in), in configuration order.
    public let boundListeners: [ListenerConfig]
    /// The HTTP listener's bound port (differs from the configured one when that is 0).
    public let httpPort: UInt16?
    let httpListenerFD: Int32?
    /// Security settings loaded after start (SIGHUP) and their generation; shards compare the
    /// generation at their tick and take the settings when it moved.
    let securityGeneration = Atomic<Int>(0)
    private let security = Mutex<SecuritySettings?>(nil)
    /// Each MQTT listener's TLS context (nil: plain), rebuilt by `reloadTLS`; shards compare the
    /// generation at their tick.
    let tlsGeneration = Atomic<Int>(0)
    private let tls: Mutex<[TLSContext?]>
    let logger: Logger
    let signals: [ShardSignals]
    /// Each shard's statistics, refreshed about once a second.
    public let stats: StatsBoard
    /// mailboxes[from * meshSize + to]; nil on the diagonal.
    let mailboxes: [Mailbox?]
    /// The shards, and in a cluster the node gateway after them (ClusterGateway.swift).
    public let meshSize: Int
    /// The cluster listener (node links) and its bound port; nil outside a cluster.
    let clusterListenerFD: Int32?
    public let clusterPort: UInt16?
    /// What the gateway reports (nodes, links), for the HTTP API and metrics.
    public let clusterBoard = ClusterBoard()
    /// Each bridge's state and counts (written by its shard every tick), for /metrics.
    let bridgeBoard = Mutex<[Int: BridgeFigures]>([:])
    /// Bridges whose session in the core is not made yet (no shard accepts clients before).
    let bridgesPending = Atomic<Int>(0)
    var membership: EtcdMembership? = nil
    /// Each bridge's TLS client context (nil: plain TCP), read once at start.
    let bridgeTLS: [TLSContext?]
    /// The webhooks' senders, one thread each.
    let webhookSenders: [WebhookSender]

    /// This node's name: `node_name` in a cluster, otherwise `apus@HOSTNAME` (EMQX's form).
    public var nodeName: String { config.cluster?.nodeName ?? ShardGroup.hostNodeName() }

    static func hostNodeName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        return "apus@" + String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    let stopping = Atomic<Bool>(false)
    /// Shards that have published their clients' wills after `stopping` was set.
    let shardsPastWills = Atomic<Int>(0)
    let started = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    /// listeners[shard] = that shard's socket for each listener.
    var listeners: [[Int32]]
    var threads: [pthread_t] = []
    /// What the store recovered at start (the retained messages are dropped once loaded).
    let recoveredStore: RecoveredStore?
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC at start, one value for every shard and the whole
    /// run: stored stamps (monotonic time plus this) then order exactly as the shards' stamps do,
    /// whichever shard wrote them (a per-shard offset, taken a few nanoseconds apart, would not).
    let wallClockOffset = apus_realtime_ns() &- apus_monotonic_ns()

    public init(config: ShardGroupConfig, logger: Logger) throws {
        precondition(config.shards >= 1 && config.shards <= 63, "1...63 shards")
        precondition(!config.listeners.isEmpty && config.listeners.allSatisfy { $0.protocolName == .mqtt }, "MQTT listeners")
        var config = config
        if let cluster = config.cluster { config.broker.nodeID = ClusterMember.nodeID(forName: cluster.nodeName) }
        // The core makes only the events some webhook wants, and message events only for topics
        // some webhook's filter matches.
        config.broker.eventKinds = config.webhooks.reduce(0) { $0 | $1.events }
        let messageHooks = config.webhooks.filter { $0.events & 0b1110_0000 != 0 }
        config.broker.eventTopicFilters = messageHooks.contains { $0.topicFilter == nil } ? [] : messageHooks.compactMap(\.topicFilter)
        self.config = config
        self.meshSize = config.shards + (config.cluster == nil ? 0 : 1)
        self.logger = logger
        var contexts: [TLSContext?] = []
        for listener in config.listeners {
            if listener.tls.isEnabled {
                do { contexts.append(try TLSContext(server: listener.tls)) } catch {
                    throw StartupError(message: "listener \(listener.address): \(error)")
                }
            } else {
                contexts.append(nil)
            }
        }
        tls = Mutex(contexts)
        var bridgeContexts: [TLSContext?] = []
        for bridge in config.bridges {
            guard let cafile = bridge.cafile else { bridgeContexts.append(nil); continue }
            do {
                bridgeContexts.append(try TLSContext(clientTrusting: cafile, certfile: bridge.certfile, keyfile: bridge.keyfile))
            } catch {
                throw StartupError(message: "connection \(bridge.name): \(error)")
            }
        }
        bridgeTLS = bridgeContexts
        var perShard = Array(repeating: [Int32](), count: config.shards)
        var bound: [ListenerConfig] = []
        do {
            for listener in config.listeners {
                let (fds, actual) = try Listener.open(host: listener.host, port: listener.port, count: config.shards,
                                                      noDelay: config.tcpNoDelay,
                                                      receiveTimestamps: config.shards > 1)
                for shard in 0..<config.shards { perShard[shard].append(fds[shard]) }
                var boundListener = listener
                boundListener.port = actual
                bound.append(boundListener)
            }
            if let cluster = config.cluster {
                let (fds, actual) = try Listener.open(host: cluster.listenHost, port: cluster.listenPort, count: 1, backlog: 128)
                clusterListenerFD = fds[0]
                clusterPort = actual
            } else {
                clusterListenerFD = nil
                clusterPort = nil
            }
            if let http = config.httpListener {
                let (fds, actual) = try Listener.open(host: http.host, port: http.port, count: 1, backlog: 128)
                httpListenerFD = fds[0]
                httpPort = actual
            } else {
                httpListenerFD = nil
                httpPort = nil
            }
        } catch {
            for fds in perShard { for fd in fds { close(fd) } }
            throw error
        }
        self.listeners = perShard
        self.port = bound[0].port
        self.boundListeners = bound
        self.signals = (0..<meshSize).map { _ in ShardSignals() }
        self.stats = StatsBoard(shards: config.shards, startedAt: apus_monotonic_ns())
        var boxes: [Mailbox?] = []
        for from in 0..<meshSize {
            for to in 0..<meshSize {
                boxes.append(from == to ? nil : Mailbox(capacity: config.mailboxCapacity))
            }
        }
        self.mailboxes = boxes
        let nodeName = config.cluster?.nodeName ?? ShardGroup.hostNodeName()
        webhookSenders = config.webhooks.map { WebhookSender(config: $0, node: nodeName, logger: logger) }
        bridgesPending.store(config.bridges.count, ordering: .releasing)
        if let store = config.store {
            do {
                recoveredStore = try StoreFiles.recover(store, shards: config.shards, logger: logger)
            } catch {
                for fds in perShard { for fd in fds { close(fd) } }
                throw error
            }
        } else {
            recoveredStore = nil
        }
    }

    /// Starts the shard threads and returns once every shard has its ring and is accepting.
    /// A shard whose loop has not ticked for this long is stalled (10 missed ticks).
    public static let stallNanoseconds: UInt64 = 1_000_000_000

    /// How long ago each shard's loop last ticked (nanoseconds; at start: since start).
    public func tickAges(now: UInt64) -> [UInt64] {
        signals[0..<config.shards].map { s in
            let last = s.lastTick.load(ordering: .relaxed)
            return now > last ? now - last : 0
        }
    }

    /// The shards whose loop has not ticked for `stallNanoseconds`.
    public func stalledShards(now: UInt64) -> [Int] {
        tickAges(now: now).enumerated().filter { $0.element > ShardGroup.stallNanoseconds }.map(\.offset)
    }

    /// Set once every shard serves and every listener is bound (readiness).
    public let ready = Atomic<Bool>(false)

    public func start() throws {
        for sender in webhookSenders { try sender.start() }
        let startedAt = apus_monotonic_ns()
        for s in signals { s.lastTick.store(startedAt, ordering: .relaxed) }
        for index in 0..<config.shards {
            let listener = listeners[index]
            let cpu = config.pinThreads ? Int(apus_allowed_cpu(Int32(index))) : -1
            let thread = try spawnThread(name: "apus-shard-\(index)") { [self] in
                runShard(index: index, listener: listener, cpu: cpu)
            }
            threads.append(thread)
        }
        if let cluster = config.cluster, let fd = clusterListenerFD {
            let incarnation = apus_realtime_ns()
            var boundCluster = cluster
            boundCluster.listenPort = clusterPort ?? cluster.listenPort
            let bound = boundCluster
            let me = ClusterMember(name: cluster.nodeName, linkHost: cluster.listenHost, linkPort: bound.listenPort,
                                   shards: config.shards, incarnation: incarnation)
            clusterBoard.seed(nodeName: cluster.nodeName)
            let membership = EtcdMembership(config: bound, me: me, board: clusterBoard, logger: logger)
            self.membership = membership
            let thread = try spawnThread(name: "apus-gateway") { [self] in
                runGateway(config: bound, membership: membership, listenFD: fd, incarnation: incarnation)
            }
            threads.append(thread)
            try membership.start()
        }
        while started.load(ordering: .acquiring) + failed.load(ordering: .acquiring) < meshSize {
            usleep(1000)
        }
        if failed.load(ordering: .acquiring) > 0 {
            stop()
            throw StartupError()
        }
        recoveredStore?.retained = []  // every shard has its replica now
        recoveredStore?.sessions = []
        ready.store(true, ordering: .releasing)
    }

    /// Asks every shard to stop and waits for their threads.
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        for thread in threads { pthread_join(thread, nil) }
        threads = []
        membership?.stop()
        membership = nil
        for sender in webhookSenders { sender.stop() }
    }

    func mailbox(from: Int, to: Int) -> Mailbox { mailboxes[from * meshSize + to]! }

    /// The node gateway's thread (a cluster's member of the mesh, index `config.shards`).
    private func runGateway(config cluster: ClusterConfig, membership: EtcdMembership, listenFD: Int32, incarnation: UInt64) {
        apus_set_thread_name("apus-gateway")
        let gateway: ClusterGateway
        do {
            gateway = try ClusterGateway(group: self, config: cluster, membership: membership, listenFD: listenFD, incarnation: incarnation)
        } catch {
            logger.error("cluster gateway: \(error)")
            failed.add(1, ordering: .releasing)
            return
        }
        signals[config.shards].ringFD.store(gateway.ring.fd, ordering: .releasing)
        logger.info("cluster: node \(cluster.nodeName) (id \(config.broker.nodeID)) links on \(cluster.listenHost):\(cluster.listenPort), etcd \(cluster.etcdEndpoints.map { "\($0.host):\($0.port)" }.joined(separator: ","))")
        started.add(1, ordering: .releasing)
        while started.load(ordering: .acquiring) + failed.load(ordering: .acquiring) < meshSize { usleep(200) }
        gateway.run()
        close(listenFD)
    }

    /// Hands new users and ACL to every shard (SIGHUP); each takes them at its next tick, between
    /// two batches of completions, so no connection is dropped and no lock is taken per message.
    public func reloadSecurity(_ settings: SecuritySettings) {
        security.withLock { $0 = settings }
        securityGeneration.add(1, ordering: .releasing)
    }

    /// Builds every TLS listener's context again from its files (SIGHUP: renewed certificates,
    /// CRLs). A listener whose files do not load keeps its context; the reasons are returned.
    /// Shards take the new contexts at their next tick; open connections keep theirs.
    public func reloadTLS() -> (reloaded: Int, errors: [String]) {
        var reloaded = 0
        var errors: [String] = []
        var contexts = tls.withLock { $0 }
        for (i, listener) in config.listeners.enumerated() where listener.tls.isEnabled {
            do {
                contexts[i] = try TLSContext(server: listener.tls)
                reloaded += 1
            } catch {
                errors.append("listener \(boundListeners[i].address): \(error)")
            }
        }
        tls.withLock { $0 = contexts }
        tlsGeneration.add(1, ordering: .releasing)
        return (reloaded, errors)
    }

    func currentTLSContexts() -> (generation: Int, contexts: [TLSContext?]) {
        tls.withLock { contexts in (tlsGeneration.load(ordering: .acquiring), contexts) }
    }

    func currentSecurity() -> (generation: Int, settings: SecuritySettings?) {
        security.withLock { settings in (securityGeneration.load(ordering: .acquiring), settings) }
    }

    private func runShard(index: Int, listener: [Int32], cpu: Int) {
        apus_set_thread_name("apus-shard-\(index)")
        if cpu >= 0 {
            let rc = apus_pin_current_thread(Int32(cpu))
            if rc != 0 { logger.warning("shard \(index): cannot pin to CPU \(cpu): errno \(rc)") }
        }
        let shard: Shard
        do {
            shard = try Shard(index: index, group: self, listener: listener, httpListener: index == 0 ? httpListenerFD : nil)
        } catch {
            logger.error("shard \(index): \(error)")
            failed.add(1, ordering: .releasing)
            return
        }
        signals[index].ringFD.store(shard.ring.fd, ordering: .releasing)
        logger.info("shard \(index) ready", metadata: [
            "cpu": "\(cpu >= 0 ? "\(cpu)" : "any")", "ring": "\(shard.ring.setup)",
        ])
        started.add(1, ordering: .releasing)
        // Mailbox wakes need every ring fd: wait for the others (start-up only).
        while started.load(ordering: .acquiring) + failed.load(ordering: .acquiring) < meshSize {
            usleep(200)
        }
        shard.run()
    }
}

/// A shard could not start (its ring or buffers); the shard logged why.
public struct StartupError: Error, CustomStringConvertible {
    public var message = "shard start-up failed (see the log above)"
    public var description: String { message }
}

/// Starts a joinable pthread running `body`.
func spawnThread(name: String, _ body: @escaping @Sendable () -> Void) throws -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, context)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        throw SystemCallError("pthread_create \(name)", errno: rc)
    }
    return thread
}

/// The closure a new thread runs.
private final class ThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
