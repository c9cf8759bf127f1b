// One load-generator thread: the publishers and subscribers of a ScenarioPlan on its own
// io_uring ring. Closed loop (at most `window` messages of a publisher not yet received
// everywhere) or paced (`rate` messages/s per publisher); for a duration, or `count` messages
// per publisher.

import BenchKit
import CApusSys
import CLiburing  // as in ConnectionEngine: without it debug builds intermittently failed to find SHUT_RDWR
import Codec
import Histogram
import IOUring
import TLS
import WebSocket
@preconcurrency import Glibc

struct EngineConfig: Sendable {
    /// Where the publishers connect.
    var host: String
    var port: UInt16
    /// Where the subscribers connect (another node of a cluster; by default the same address).
    var subscriberHost: String = ""
    var subscriberPort: UInt16 = 0
    var version: ProtocolVersion
    var qos: QoS
    var size: Int
    var window: Int
    /// Closed loop by acknowledgements: `window` counts a publisher's messages not yet PUBACKed
    /// (QoS 1) or PUBCOMPed (QoS 2) — as a real client's inflight window does — instead of those
    /// not yet received everywhere. Then the broker's acknowledgements pace the publishers, and a
    /// broker that acknowledges what it later drops shows it as loss.
    var ackWindow = false
    /// PUBLISH with the retain flag set.
    var retain = false
    /// Messages per second per publisher; 0 = closed loop (window).
    var rate: Double
    var warmupNanoseconds: UInt64
    var durationNanoseconds: UInt64
    var topicPrefix: String
    /// v5: Topic Alias Maximum the subscribers announce (the broker may then send aliases); 0 = none.
    var topicAliasMaximum: UInt16 = 0
    /// Messages per publisher; 0 = publish for the warm-up and the duration.
    var count: UInt64 = 0
    /// Sessions: clean (the default) or persistent (fixed client ids, clean session 0).
    var session = SessionOptions()
    /// TLS (a client context: --cafile, --cert, --key); nil: plain TCP.
    var tls: TLSContext? = nil
    /// MQTT over WebSocket (--ws): the request path; nil: MQTT straight on TCP (or TLS).
    var webSocketPath: String? = nil
}

/// Clean or persistent sessions, and the client ids they use.
struct SessionOptions: Sendable {
    /// False: persistent sessions (clean session 0; v5: Clean Start 0 and a Session Expiry Interval).
    var clean = true
    /// v5 Session Expiry Interval of persistent sessions, seconds.
    var expiry: UInt32 = 300
    /// Client ids are PREFIX-pub-i, PREFIX-sub-i-j, PREFIX-conn-i.
    var clientIDPrefix = "bench"
    var keepAlive: UInt16 = 300

    /// Opens an MQTT connection for `clientID`. A persistent session first starts from nothing
    /// (a clean connect and DISCONNECT), so that a previous run's subscriptions and queued
    /// messages do not leak into this one, then connects with clean session 0.
    func connect(host: String, port: UInt16, tls: TLSContext?, webSocketPath: String? = nil, clientID: String,
                 version: ProtocolVersion, properties: Properties = Properties()) throws -> BenchLink {
        var properties = properties
        if !clean {
            let link = try BenchLink.mqttConnect(host: host, port: port, tls: tls, webSocketPath: webSocketPath, clientID: clientID,
                                                 version: version, clean: true, keepAlive: keepAlive)
            link.disconnect()
            if version == .v5 { properties.sessionExpiryInterval = expiry }
        }
        return try BenchLink.mqttConnect(host: host, port: port, tls: tls, webSocketPath: webSocketPath, clientID: clientID,
                                         version: version, clean: clean, keepAlive: keepAlive, properties: properties)
    }
}

/// What one engine measured.
struct EngineResult: Sendable {
    var totals = StreamTotals()
    /// Messages received during the measured interval.
    var receivedInWindow: UInt64 = 0
    /// Closed loop: windows written off after a second without progress (see writeOffStalledWindow).
    var stalledWindows: UInt64 = 0
    /// Count mode: from the first send to the last message received, nanoseconds.
    var elapsedNanoseconds: UInt64 = 0
    /// Bytes the subscribers read from the broker (whole run), for wire bytes per message.
    var subscriberBytes: UInt64 = 0
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    var error: String? = nil
}

/// Handed to its thread after set-up and used only there from then on.
final class Engine: @unchecked Sendable {
    struct Conn {
        var fd: Int32
        var out = ByteBuffer()
        var sending = ByteBuffer()
        var sendInFlight = false
        /// The plaintext MQTT stream split into frames.
        var frames = FrameSplitter()
        var recvArmed = false
        /// Topic alias → publisher index (subscribers of a v5 run with topic aliases).
        var aliases: [Int] = []
        /// TLS: the session, and records it made outside a send (alerts, key updates).
        var tls: TLSSession? = nil
        var cipherOut = ByteBuffer()
        /// WebSocket: the client layer, and frames not yet sent (or encrypted): its pongs, then
        /// the queued packets as one masked frame.
        var ws: WebSocketClient? = nil
        var wsOut = ByteBuffer()
    }

    // An engine lives on one thread: the mutable state is `@exclusivity(unchecked)` (the dynamic
    // exclusivity checks were about a fifth of apus-bench's CPU time at full load, perf).
    let config: EngineConfig
    let plan: ScenarioPlan
    /// Publisher connections first (index = position in plan.publishers), then subscribers.
    @exclusivity(unchecked) var conns: [Conn] = []
    @exclusivity(unchecked) var sent: [UInt64] = []
    /// Per publisher: messages the broker acknowledged (PUBACK, or PUBCOMP for QoS 2).
    @exclusivity(unchecked) var acked: [UInt64] = []
    @exclusivity(unchecked) var trackers: [StreamTracker] = []
    @exclusivity(unchecked) var nextPacketID: [UInt16] = []
    /// Closed loop, per publisher: messages written off after a stall, and the last progress seen.
    @exclusivity(unchecked) var writtenOff: [UInt64] = []
    @exclusivity(unchecked) var lastDelivered: [UInt64] = []
    @exclusivity(unchecked) var lastProgressAt: [UInt64] = []
    static let stallNanoseconds: UInt64 = 1_000_000_000
    @exclusivity(unchecked) var topics: [String] = []
    @exclusivity(unchecked) var result = EngineResult()
    @exclusivity(unchecked) var ring: IOUring! = nil
    @exclusivity(unchecked) var buffers: ProvidedBufferRing! = nil
    /// Per publisher: its PUBLISH, encoded once (patched per message).
    @exclusivity(unchecked) var templates: [PublishTemplate] = []
    let progress: ProgressCounters
    /// All messages received (the progress line's count).
    @exclusivity(unchecked) var receivedTotal: UInt64 = 0
    @exclusivity(unchecked) var lastReceiveAt: UInt64 = 0
    /// TLS: what a session decrypted from one receive.
    @exclusivity(unchecked) var tlsPlaintext = ByteBuffer()
    /// WebSocket: the MQTT bytes of one receive's frames.
    @exclusivity(unchecked) var wsPlaintext = ByteBuffer()

    init(config: EngineConfig, plan: ScenarioPlan, progress: ProgressCounters) {
        self.config = config
        self.plan = plan
        self.progress = progress
    }

    var publisherCount: Int { plan.publishers.count }

    /// Opens every connection, one at a time (blocking, so never more than one in a broker's
    /// listen backlog), subscribers first so that nothing published is missed.
    func setUp() throws {
        var subscribers: [Conn] = []
        let prefix = config.session.clientIDPrefix
        for (s, filter) in plan.subscriberFilters.enumerated() {
            var properties = Properties()
            if config.version == .v5 && config.topicAliasMaximum > 0 { properties.topicAliasMaximum = config.topicAliasMaximum }
            let link = try config.session.connect(host: config.subscriberHost, port: config.subscriberPort, tls: config.tls,
                                                  webSocketPath: config.webSocketPath,
                                                  clientID: "\(prefix)-sub-\(plan.publishers.first ?? 0)-\(s)",
                                                  version: config.version, properties: properties)
            try link.subscribe(filter: filter, qos: config.qos, version: config.version)
            var conn = Conn(fd: link.fd, tls: link.tls, ws: link.ws)
            if !link.plaintext.isEmpty { conn.frames.pending.writeBytes(link.plaintext.readableView) }
            conn.aliases = Array(repeating: -1, count: Int(config.topicAliasMaximum) + 1)
            subscribers.append(conn)
        }
        for p in plan.publishers {
            let link = try config.session.connect(host: config.host, port: config.port, tls: config.tls, webSocketPath: config.webSocketPath,
                                                  clientID: "\(prefix)-pub-\(p)",
                                                  version: config.version)
            var conn = Conn(fd: link.fd, tls: link.tls, ws: link.ws)
            if !link.plaintext.isEmpty { conn.frames.pending.writeBytes(link.plaintext.readableView) }
            conns.append(conn)
            let topic = "\(config.topicPrefix)/\(plan.scenario == .fanOut ? 0 : p)"
            topics.append(topic)
            templates.append(PublishTemplate(version: config.version, qos: config.qos, retain: config.retain, topic: topic,
                                             payloadSize: config.size))
            sent.append(0)
            acked.append(0)
            nextPacketID.append(1)
            writtenOff.append(0)
            lastDelivered.append(0)
            lastProgressAt.append(apus_monotonic_ns())
        }
        conns += subscribers
        trackers = Array(repeating: StreamTracker(), count: plan.streamCount)
    }

    /// Messages sent towards stream `i`.
    func sentTowards(_ i: Int) -> UInt64 { plan.scenario == .fanOut ? sent[0] : sent[i] }

    /// Messages of publisher `p` received everywhere they go (fan-out: by the slowest subscriber).
    func delivered(_ p: Int) -> UInt64 {
        guard plan.scenario == .fanOut else { return trackers[p].unique }
        var slowest = UInt64.max
        for i in trackers.indices { slowest = min(slowest, trackers[i].unique) }  // no copies of the trackers
        return trackers.isEmpty ? 0 : slowest
    }

    /// Closed loop: the messages of publisher `p` that count against its window — sent, not yet
    /// delivered, and not written off after a stall.
    func inFlight(_ p: Int, delivered d: UInt64) -> Int {
        let settled = d + writtenOff[p]
        return sent[p] > settled ? Int(sent[p] - settled) : 0
    }

    /// Closed loop: a window that made no progress for `stallNanoseconds` (its messages lost by the
    /// broker) is written off so that the publisher goes on; what never arrives still counts as
    /// lost, and the report counts the stalls.
    func writeOffStalledWindow(_ p: Int, delivered d: UInt64, now: UInt64) {
        if d != lastDelivered[p] {
            lastDelivered[p] = d
            lastProgressAt[p] = now
        } else if inFlight(p, delivered: d) > 0 && now - lastProgressAt[p] > Engine.stallNanoseconds {
            writtenOff[p] = sent[p] - d
            lastProgressAt[p] = now
            result.stalledWindows += 1
        }
    }

    /// Runs the measured phases; call on the engine's own thread (the ring is SINGLE_ISSUER).
    func run() -> EngineResult {
        do {
            ring = try IOUring(entries: 1024, cqEntries: 8192)
            buffers = try ProvidedBufferRing(ring: ring, group: 0, count: 1024, bufferSize: 16 << 10)
        } catch {
            result.error = "\(error)"
            return result
        }
        for c in conns.indices { armRecv(c) }
        let start = apus_monotonic_ns()
        let counting = config.count > 0
        // Count mode measures everything, from the first send until the last message arrives.
        let measureStart = counting ? start : start + config.warmupNanoseconds
        var measureEnd = counting ? UInt64.max : measureStart + config.durationNanoseconds
        var drainEnd = measureEnd &+ 5_000_000_000
        var nextProgress = start
        let completions = UnsafeMutablePointer<Completion>.allocate(capacity: 512)
        defer { completions.deallocate() }
        while true {
            let now = apus_monotonic_ns()
            if counting && measureEnd == .max && allSent() { measureEnd = now; drainEnd = now + 5_000_000_000 }
            if now >= measureEnd && (allReceived() || now >= drainEnd) { break }
            if now >= nextProgress { publishProgress(); nextProgress = now + 100_000_000 }
            if now < measureEnd { produce(now: now, measureStart: measureStart, measureEnd: measureEnd, start: start) }
            for c in conns.indices { startSend(c) }
            ring.submitAndWait(timeoutNanoseconds: config.rate > 0 ? pacedWait(now: apus_monotonic_ns(), start: start) : 1_000_000)
            while true {
                let n = ring.harvest(into: completions, capacity: 512)
                if n == 0 { break }
                for i in 0..<n { handle(completions[i], measureStart: measureStart, measureEnd: measureEnd) }
            }
            buffers.publishReturns()
        }
        publishProgress()
        for (i, tracker) in trackers.enumerated() { result.totals.add(tracker, sent: sentTowards(i)) }
        if counting { result.elapsedNanoseconds = lastReceiveAt > start ? lastReceiveAt - start : 0 }
        for c in conns.indices {
            shutdown(conns[c].fd, Int32(SHUT_RDWR))
            close(conns[c].fd)
            conns[c].frames.deallocate()
        }
        buffers.unregister()
        return result
    }

    func allSent() -> Bool {
        for p in 0..<publisherCount where sent[p] < config.count { return false }
        return true
    }

    /// Stores the running counters for the progress line.
    func publishProgress() {
        progress.received.store(receivedTotal, ordering: .relaxed)
        progress.sent.store(sent.reduce(0, +), ordering: .relaxed)
        var gaps: UInt64 = 0
        for i in trackers.indices { gaps += trackers[i].gaps }
        progress.lost.store(gaps, ordering: .relaxed)
    }

    func allReceived() -> Bool {
        for i in trackers.indices where trackers[i].unique < sentTowards(i) { return false }
        return true
    }

    /// Queues new PUBLISHes: up to the window (closed loop) or what the schedule says is due (paced).
    func produce(now: UInt64, measureStart: UInt64, measureEnd: UInt64, start: UInt64) {
        for p in 0..<publisherCount {
            var allowed: Int
            if config.rate > 0 {
                // Publisher p's messages are due p/publishers of a period after the first's: the
                // load is spread evenly instead of every publisher sending at the same instants
                // (which measured the bursts' queueing, milliseconds at 100 x 500 msg/s).
                let offset = Double(p) / Double(publisherCount) / config.rate * 1e9
                let elapsed = Double(now - start)
                let due: UInt64 = elapsed < offset ? 0 : UInt64((elapsed - offset) / 1e9 * config.rate) + 1
                allowed = due > sent[p] ? Int(min(due - sent[p], 1000)) : 0
            } else if config.ackWindow && config.qos != .atMostOnce {
                allowed = config.window - Int(sent[p] - acked[p])
            } else {
                let d = delivered(p)
                writeOffStalledWindow(p, delivered: d, now: now)
                allowed = config.window - inFlight(p, delivered: d)
            }
            if config.count > 0 { allowed = min(allowed, Int(config.count - min(config.count, sent[p]))) }
            guard allowed > 0 else { continue }
            let measured = now >= measureStart && now < measureEnd
            nextPacketID[p] = templates[p].write(count: allowed, sequence: sent[p], sentAt: now, measured: measured,
                                                 packetID: nextPacketID[p], into: &conns[p].out)
            sent[p] += UInt64(allowed)
        }
    }

    /// Paced: how long to wait for input before the next publisher's message is due (between
    /// 10 µs and 1 ms), so that messages leave on time instead of in batches.
    func pacedWait(now: UInt64, start: UInt64) -> Int64 {
        let step = 1e9 / config.rate / Double(max(publisherCount, 1))
        let elapsed = Double(now &- start)
        let next = (elapsed / step).rounded(.down) * step + step
        return Int64(min(max(next - elapsed, 10_000), 1_000_000))
    }

    /// The publisher index is the last level of the topic (PREFIX/index).
    static func publisherIndex(topic: UnsafeRawBufferPointer) -> Int {
        var value = 0
        var multiplier = 1
        var i = topic.count - 1
        while i >= 0, topic[i] != UInt8(ascii: "/") {
            value += Int(topic[i] &- UInt8(ascii: "0")) * multiplier
            multiplier *= 10
            i -= 1
        }
        return value
    }

    func armRecv(_ c: Int) {
        ring.prepareMultishotRecv(fd: conns[c].fd, group: 0, userData: UInt64(1) << 32 | UInt64(c))
        conns[c].recvArmed = true
    }

    func startSend(_ c: Int) {
        guard !conns[c].sendInFlight else { return }
        if conns[c].sending.isEmpty {
            if let ws = conns[c].ws {
                // The queued packets as one masked frame after the layer's own frames.
                var out = conns[c].out
                var framed = conns[c].wsOut
                ws.send(&out, wire: &framed)
                conns[c].out = out
                if let tls = conns[c].tls {
                    let records = conns[c].cipherOut
                    conns[c].cipherOut = conns[c].sending
                    var sending = records
                    tls.send(&framed, wire: &sending)
                    conns[c].sending = sending
                    conns[c].wsOut = framed
                } else {
                    conns[c].wsOut = conns[c].sending
                    conns[c].sending = framed
                }
            } else if let tls = conns[c].tls {
                // Records made outside a send first, then the queued packets encrypted (one write).
                let records = conns[c].cipherOut
                conns[c].cipherOut = conns[c].sending
                conns[c].sending = records
                var out = conns[c].out
                var sending = conns[c].sending
                tls.send(&out, wire: &sending)
                conns[c].out = out
                conns[c].sending = sending
            } else {
                let queued = conns[c].out
                conns[c].out = conns[c].sending
                conns[c].sending = queued
            }
        }
        let bytes = conns[c].sending.readableView
        guard bytes.count > 0 else { return }
        ring.prepareSend(fd: conns[c].fd, bytes: bytes.baseAddress!, count: bytes.count, userData: UInt64(2) << 32 | UInt64(c))
        conns[c].sendInFlight = true
    }

    func handle(_ completion: Completion, measureStart: UInt64, measureEnd: UInt64) {
        let c = Int(completion.userData & 0xFFFF_FFFF)
        switch completion.userData >> 32 {
        case 1:
            if !completion.hasMore { conns[c].recvArmed = false }
            if completion.result > 0, let id = completion.bufferID {
                received(c, buffers.bytes(id: id, length: Int(completion.result)), measureStart: measureStart, measureEnd: measureEnd)
                buffers.recycle(id: id)
            } else if let id = completion.bufferID {
                buffers.recycle(id: id)
            }
            if !conns[c].recvArmed && (completion.result > 0 || completion.result == -ENOBUFS) {
                buffers.publishReturns()
                armRecv(c)
            } else if completion.result <= 0 && completion.result != -ENOBUFS && result.error == nil {
                result.error = "connection \(c) closed by the broker (\(completion.result))"
            }
        case 2:
            conns[c].sendInFlight = false
            if completion.result > 0 { conns[c].sending.moveReaderIndex(forwardBy: Int(completion.result)) }
            else if result.error == nil { result.error = "send failed on connection \(c) (\(completion.result))" }
        default:
            break
        }
    }
}
