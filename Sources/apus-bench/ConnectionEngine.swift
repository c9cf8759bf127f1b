// The engine of the connection scenarios: many MQTT connections opened from one io_uring ring,
// at most `inFlight` at a time (below a broker's listen backlog). Each attempt is a TCP connect
// linked to the send of its CONNECT in one submission, then a multishot recv for the CONNACK.
// `idle` keeps the connections open until told to stop; `connect-storm` sends DISCONNECT and
// closes each connection at its CONNACK and starts the next attempt.

import BenchKit
import CApusSys
import CLiburing
import Codec
import Histogram
import IOUring
import Synchronization
@preconcurrency import Glibc

enum ConnectionMode: String, Sendable {
    case idle
    case storm = "connect-storm"
}

struct ConnectionEngineConfig: Sendable {
    var host: String
    var port: UInt16
    var version: ProtocolVersion
    var session: SessionOptions
    var mode: ConnectionMode
    /// idle: connections this engine opens; storm: its clients (their ids are reused cyclically).
    var connections: Int
    /// Global index of this engine's first client (client ids PREFIX-conn-i).
    var firstIndex: Int
    /// Connection attempts in flight at once.
    var inFlight: Int
    /// storm: go on connecting for this long (0: one CONNECT per client).
    var stormNanoseconds: UInt64 = 0
    /// An attempt without CONNACK after this long fails.
    var connectTimeoutNanoseconds: UInt64 = 10_000_000_000
}

/// What one connection engine measured.
struct ConnectionResult: Sendable {
    /// CONNACKs accepting the connection.
    var connected = 0
    /// Attempts that failed (refused, reset, timed out, no descriptor).
    var failed = 0
    /// idle: connections the broker closed while they were held.
    var closedByBroker = 0
    /// From the first attempt to the last CONNACK, monotonic nanoseconds.
    var connectStart: UInt64 = 0
    var connectEnd: UInt64 = 0
    /// TCP connect start → CONNACK, microseconds.
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    /// The first few distinct reasons of failures.
    var errors: [String] = []
}

/// Shared between the connection engines and the thread that drives the run.
final class ConnectionControl: Sendable {
    /// idle: set when the hold is over; the engines then disconnect and return.
    let stop = Atomic<Bool>(false)
    /// Engines whose connect phase is over (every attempt answered or failed).
    let connected = Atomic<Int>(0)
}

/// Handed to its thread after creation and used only there from then on.
final class ConnectionEngine: @unchecked Sendable {
    enum State { case free, connecting, open }

    struct Slot {
        var fd: Int32 = -1
        var generation: UInt64 = 0
        var state = State.free
        var startedAt: UInt64 = 0
        /// Bytes of a CONNACK split over several reads.
        var partial: [UInt8] = []
    }

    static let opConnect: UInt64 = 1, opSend: UInt64 = 2, opRecv: UInt64 = 3
    /// Room for one encoded CONNECT per slot.
    static let connectCapacity = 256

    let config: ConnectionEngineConfig
    let control: ConnectionControl
    let progress: ProgressCounters
    var result = ConnectionResult()
    var slots: [Slot]
    var freeSlots: [Int] = []
    var attemptsStarted = 0
    var inFlightNow = 0
    var openNow = 0
    var connectPhaseOver = false
    var ring: IOUring! = nil
    var buffers: ProvidedBufferRing! = nil
    let address: UnsafeMutablePointer<sockaddr_in>
    let connectPackets: UnsafeMutableRawPointer

    init(config: ConnectionEngineConfig, control: ConnectionControl, progress: ProgressCounters) {
        self.config = config
        self.control = control
        self.progress = progress
        let slotCount = config.mode == .idle ? config.connections : max(1, min(config.inFlight, config.connections))
        slots = Array(repeating: Slot(), count: slotCount)
        freeSlots = Array((0..<slotCount).reversed())
        address = .allocate(capacity: 1)
        address.initialize(to: sockaddr_in())
        address.pointee.sin_family = sa_family_t(AF_INET)
        address.pointee.sin_port = config.port.bigEndian
        inet_pton(AF_INET, config.host, &address.pointee.sin_addr)
        connectPackets = .allocate(byteCount: slotCount * Self.connectCapacity, alignment: 64)
    }

    deinit {
        address.deallocate()
        connectPackets.deallocate()
    }

    /// Runs the scenario; call on the engine's own thread (the ring is SINGLE_ISSUER).
    func run() -> ConnectionResult {
        do {
            ring = try IOUring(entries: 1024, cqEntries: 16384)
            buffers = try ProvidedBufferRing(ring: ring, group: 0, count: 1024, bufferSize: 512)
        } catch {
            result.errors.append("\(error)")
            control.connected.add(1, ordering: .relaxed)
            return result
        }
        let completions = UnsafeMutablePointer<Completion>.allocate(capacity: 512)
        defer { completions.deallocate() }
        result.connectStart = apus_monotonic_ns()
        let stormEnd = result.connectStart + config.stormNanoseconds
        var nextCheck = result.connectStart
        while true {
            let now = apus_monotonic_ns()
            startAttempts(now: now, stormEnd: stormEnd)
            if now >= nextCheck {
                expireAttempts(now: now)
                publishProgress()
                nextCheck = now + 100_000_000
            }
            if !connectPhaseOver && attemptsDone(now: now, stormEnd: stormEnd) {
                connectPhaseOver = true
                control.connected.add(1, ordering: .relaxed)
            }
            if connectPhaseOver && (config.mode == .storm || control.stop.load(ordering: .relaxed)) { break }
            ring.submitAndWait(timeoutNanoseconds: 50_000_000)
            while true {
                let n = ring.harvest(into: completions, capacity: 512)
                if n == 0 { break }
                for i in 0..<n { handle(completions[i]) }
            }
            buffers.publishReturns()
        }
        for s in slots.indices where slots[s].fd >= 0 {
            if slots[s].state == .open { BenchSocket.disconnect(slots[s].fd) } else { shutdown(slots[s].fd, Int32(SHUT_RDWR)); close(slots[s].fd) }
            slots[s].fd = -1
        }
        openNow = 0
        publishProgress()
        buffers.unregister()
        return result
    }

    /// True when no attempt is in flight and no more are due.
    func attemptsDone(now: UInt64, stormEnd: UInt64) -> Bool {
        inFlightNow == 0 && !moreAttemptsDue(now: now, stormEnd: stormEnd)
    }

    func moreAttemptsDue(now: UInt64, stormEnd: UInt64) -> Bool {
        if config.mode == .storm && config.stormNanoseconds > 0 { return now < stormEnd }
        return attemptsStarted < config.connections
    }

    func startAttempts(now: UInt64, stormEnd: UInt64) {
        while inFlightNow < config.inFlight, moreAttemptsDue(now: now, stormEnd: stormEnd), let s = freeSlots.popLast() {
            let client = config.firstIndex + attemptsStarted % config.connections
            attemptsStarted += 1
            start(slot: s, clientID: "\(config.session.clientIDPrefix)-conn-\(client)", now: now)
        }
    }

    func start(slot s: Int, clientID: String, now: UInt64) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            fail(s, "socket: \(String(cString: strerror(errno)))", counted: false)
            return
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var properties = Properties()
        if !config.session.clean && config.version == .v5 { properties.sessionExpiryInterval = config.session.expiry }
        let packet = Packet.connect(Connect(version: config.version, cleanStart: config.session.clean, keepAlive: config.session.keepAlive,
                                            clientID: clientID, properties: properties)).encoded(version: config.version)
        precondition(packet.count <= Self.connectCapacity, "CONNECT larger than its slot")
        let bytes = connectPackets + s * Self.connectCapacity
        packet.withUnsafeBytes { bytes.copyMemory(from: $0.baseAddress!, byteCount: packet.count) }
        slots[s].fd = fd
        slots[s].generation &+= 1
        slots[s].state = .connecting
        slots[s].startedAt = now
        slots[s].partial.removeAll(keepingCapacity: true)
        inFlightNow += 1
        // The connect and the CONNECT's send are one link: both SQEs go in the same submission.
        if io_uring_sq_space_left(ring.rawRing) < 2 { ring.submit() }
        let connect = ring.sqe()
        address.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            io_uring_prep_connect(connect, fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
        connect.pointee.flags |= UInt8(1 << IOSQE_IO_LINK_BIT) | UInt8(1 << IOSQE_CQE_SKIP_SUCCESS_BIT)
        io_uring_sqe_set_data64(connect, userData(Self.opConnect, s))
        ring.prepareSend(fd: fd, bytes: bytes, count: packet.count, userData: userData(Self.opSend, s))
    }

    func userData(_ op: UInt64, _ s: Int) -> UInt64 { op << 56 | (slots[s].generation & 0xFF_FFFF) << 32 | UInt64(s) }

    func handle(_ completion: Completion) {
        let s = Int(completion.userData & 0xFFFF_FFFF)
        let current = (completion.userData >> 32) & 0xFF_FFFF == slots[s].generation & 0xFF_FFFF && slots[s].state != .free
        switch completion.userData >> 56 {
        case Self.opConnect:
            if current && completion.result < 0 { fail(s, "connect: \(String(cString: strerror(-completion.result)))") }
        case Self.opSend:
            guard current else { return }
            if completion.result < 0 { fail(s, "send CONNECT: \(String(cString: strerror(-completion.result)))"); return }
            ring.prepareMultishotRecv(fd: slots[s].fd, group: 0, userData: userData(Self.opRecv, s))
        case Self.opRecv:
            if completion.result > 0, let id = completion.bufferID {
                if current { received(s, buffers.bytes(id: id, length: Int(completion.result))) }
                buffers.recycle(id: id)
            }
            guard current else { return }
            if completion.result > 0 || completion.result == -ENOBUFS {
                if !completion.hasMore {
                    buffers.publishReturns()
                    ring.prepareMultishotRecv(fd: slots[s].fd, group: 0, userData: userData(Self.opRecv, s))
                }
            } else if slots[s].state == .open {
                result.closedByBroker += 1
                note("the broker closed a held connection")
                release(s)
                openNow -= 1
            } else {
                fail(s, completion.result == 0 ? "closed by the broker before CONNACK" : "recv: \(String(cString: strerror(-completion.result)))")
            }
        default:
            break
        }
    }

    func received(_ s: Int, _ bytes: UnsafeRawBufferPointer) {
        guard slots[s].state == .connecting else { return }  // idle: nothing else is expected
        slots[s].partial.append(contentsOf: bytes)
        let packet: Packet
        do {
            let frame = slots[s].partial
            guard let total = try frame.withUnsafeBytes({ try PacketDecoder.frameLength($0, maxPacketSize: 1 << 20) }),
                  total <= frame.count else { return }
            packet = try frame.withUnsafeBytes { try PacketDecoder.decode(frame: UnsafeRawBufferPointer(rebasing: $0[0..<total]), version: config.version) }
        } catch {
            fail(s, "undecodable CONNACK: \(error)")
            return
        }
        guard case .connack(let ack) = packet else { fail(s, "expected CONNACK, got \(packet.type)"); return }
        guard ack.reasonCode == .success else { fail(s, "CONNACK refused: \(ack.reasonCode)"); return }
        let now = apus_monotonic_ns()
        _ = result.latency.record((now - slots[s].startedAt) / 1000)
        result.connected += 1
        result.connectEnd = now
        inFlightNow -= 1
        switch config.mode {
        case .idle:
            slots[s].state = .open
            openNow += 1
        case .storm:
            BenchSocket.disconnect(slots[s].fd)
            slots[s].fd = -1
            slots[s].state = .free
            freeSlots.append(s)
        }
    }

    /// Fails attempts that have waited longer than the connect timeout.
    func expireAttempts(now: UInt64) {
        for s in slots.indices where slots[s].state == .connecting && now - slots[s].startedAt > config.connectTimeoutNanoseconds {
            ring.prepareCancel(fd: slots[s].fd, userData: 0)
            fail(s, "no CONNACK within \(config.connectTimeoutNanoseconds / 1_000_000_000) s")
        }
    }

    /// Counts a failed attempt and frees its slot.
    func fail(_ s: Int, _ reason: String, counted: Bool = true) {
        result.failed += 1
        note(reason)
        if counted { inFlightNow -= 1 }
        release(s)
    }

    func release(_ s: Int) {
        if slots[s].fd >= 0 {
            shutdown(slots[s].fd, Int32(SHUT_RDWR))
            close(slots[s].fd)
        }
        slots[s].fd = -1
        slots[s].state = .free
        slots[s].generation &+= 1
        if config.mode == .storm { freeSlots.append(s) }
    }

    func note(_ reason: String) {
        if result.errors.count < 5 && !result.errors.contains(reason) { result.errors.append(reason) }
    }

    func publishProgress() {
        progress.received.store(UInt64(result.connected), ordering: .relaxed)
        progress.lost.store(UInt64(result.failed), ordering: .relaxed)
        progress.open.store(UInt64(config.mode == .idle ? openNow : inFlightNow), ordering: .relaxed)
    }
}
