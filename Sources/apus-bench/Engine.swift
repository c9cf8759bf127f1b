// One load-generator thread: a set of publisher → subscriber pairs on its own io_uring ring.
// Closed loop (at most `window` messages of a pair in flight) or paced (`rate` per publisher).

import BenchKit
import CApusSys
import Codec
import Histogram
import IOUring
@preconcurrency import Glibc

struct EngineConfig: Sendable {
    var host: String
    var port: UInt16
    var version: ProtocolVersion
    var qos: QoS
    var size: Int
    var window: Int
    /// Messages per second per publisher; 0 = closed loop (window).
    var rate: Double
    var warmupNanoseconds: UInt64
    var durationNanoseconds: UInt64
    var topicPrefix: String
}

/// What one engine measured.
struct EngineResult: Sendable {
    var totals = StreamTotals()
    /// Messages received during the measured interval.
    var receivedInWindow: UInt64 = 0
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
        var decoder: StreamDecoder
        var recvArmed = false
    }

    let config: EngineConfig
    let pairs: Range<Int>
    var conns: [Conn] = []
    var sent: [UInt64] = []
    var trackers: [StreamTracker] = []
    var nextPacketID: [UInt16] = []
    var result = EngineResult()
    var ring: IOUring! = nil
    var buffers: ProvidedBufferRing! = nil
    var payload: [UInt8]

    init(config: EngineConfig, pairs: Range<Int>) {
        self.config = config
        self.pairs = pairs
        payload = [UInt8](repeating: 0x61, count: max(config.size, BenchPayload.headerSize))
    }

    func setUp() throws {
        for i in pairs {
            let topic = "\(config.topicPrefix)/\(i)"
            let sub = try BenchSocket.mqttConnect(host: config.host, port: config.port, clientID: "bench-sub-\(i)-\(getpid())",
                                                  version: config.version, clean: true)
            try BenchSocket.subscribe(sub, filter: topic, qos: config.qos, version: config.version)
            let pub = try BenchSocket.mqttConnect(host: config.host, port: config.port, clientID: "bench-pub-\(i)-\(getpid())",
                                                  version: config.version, clean: true)
            conns.append(Conn(fd: pub, decoder: StreamDecoder(version: config.version)))
            conns.append(Conn(fd: sub, decoder: StreamDecoder(version: config.version)))
            sent.append(0)
            trackers.append(StreamTracker())
            nextPacketID.append(1)
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
        let measureStart = start + config.warmupNanoseconds
        let measureEnd = measureStart + config.durationNanoseconds
        let drainEnd = measureEnd + 5_000_000_000
        let completions = UnsafeMutablePointer<Completion>.allocate(capacity: 512)
        defer { completions.deallocate() }
        while true {
            let now = apus_monotonic_ns()
            if now >= measureEnd && (allReceived() || now >= drainEnd) { break }
            if now < measureEnd { produce(now: now, measureStart: measureStart, measureEnd: measureEnd, start: start) }
            for c in conns.indices { startSend(c) }
            ring.submitAndWait(timeoutNanoseconds: config.rate > 0 ? 200_000 : 1_000_000)
            while true {
                let n = ring.harvest(into: completions, capacity: 512)
                if n == 0 { break }
                for i in 0..<n { handle(completions[i], measureStart: measureStart, measureEnd: measureEnd) }
            }
            buffers.publishReturns()
        }
        for (i, tracker) in trackers.enumerated() { result.totals.add(tracker, sent: sent[i]) }
        for c in conns.indices { shutdown(conns[c].fd, Int32(SHUT_RDWR)); close(conns[c].fd) }
        buffers.unregister()
        return result
    }

    func allReceived() -> Bool {
        for i in trackers.indices where trackers[i].unique < sent[i] { return false }
        return true
    }

    /// Queues new PUBLISHes: up to the window (closed loop) or what the schedule says is due (paced).
    func produce(now: UInt64, measureStart: UInt64, measureEnd: UInt64, start: UInt64) {
        for p in trackers.indices {
            var allowed: Int
            if config.rate > 0 {
                let due = UInt64(Double(now - start) / 1e9 * config.rate)
                allowed = due > sent[p] ? Int(min(due - sent[p], 1000)) : 0
            } else {
                let inFlight = Int(sent[p] - trackers[p].unique)
                allowed = config.window - inFlight
            }
            guard allowed > 0 else { continue }
            let c = 2 * (p - 0)
            let topic = "\(config.topicPrefix)/\(pairs.lowerBound + p)"
            for _ in 0..<allowed {
                let measured = now >= measureStart && now < measureEnd
                payload.withUnsafeMutableBytes { BenchPayload.write(sequence: sent[p], sentAt: now, measured: measured, into: $0.baseAddress!) }
                var packetID: UInt16 = 0
                if config.qos != .atMostOnce {
                    packetID = nextPacketID[p]
                    nextPacketID[p] = packetID == .max ? 1 : packetID + 1
                }
                var t = topic
                t.withUTF8 { topicBytes in
                    payload.withUnsafeBytes { body in
                        PublishEncoder.encode(version: config.version, dup: false, qos: config.qos, retain: false,
                                              topic: UnsafeRawBufferPointer(topicBytes), packetID: packetID,
                                              properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: body,
                                              into: &conns[c].out)
                    }
                }
                sent[p] += 1
            }
        }
    }

    func armRecv(_ c: Int) {
        ring.prepareMultishotRecv(fd: conns[c].fd, group: 0, userData: UInt64(1) << 32 | UInt64(c))
        conns[c].recvArmed = true
    }

    func startSend(_ c: Int) {
        guard !conns[c].sendInFlight else { return }
        if conns[c].sending.isEmpty {
            let queued = conns[c].out
            conns[c].out = conns[c].sending
            conns[c].sending = queued
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

    func received(_ c: Int, _ bytes: UnsafeRawBufferPointer, measureStart: UInt64, measureEnd: UInt64) {
        let pair = c / 2
        let isSubscriber = c % 2 == 1
        let now = apus_monotonic_ns()
        conns[c].decoder.feed(bytes)
        while true {
            let packet: Packet?
            do { packet = try conns[c].decoder.next() } catch {
                if result.error == nil { result.error = "undecodable input from the broker: \(error)" }
                return
            }
            guard let packet else { return }
            switch packet {
            case .pubrec(let ack):  // publisher side of QoS 2
                Packet.pubrel(PublishAck(packetID: ack.packetID)).encode(version: config.version, into: &conns[c].out)
                continue
            case .pubrel(let ack):  // subscriber side of QoS 2
                Packet.pubcomp(PublishAck(packetID: ack.packetID)).encode(version: config.version, into: &conns[c].out)
                continue
            default:
                break
            }
            guard isSubscriber, case .publish(let p) = packet, let header = BenchPayload.read(p.payload) else { continue }
            trackers[pair].record(header.sequence)
            if header.measured { _ = result.latency.record((now &- header.sentAt) / 1000) }
            if now >= measureStart && now < measureEnd { result.receivedInWindow += 1 }
            switch p.qos {
            case .atMostOnce: break
            case .atLeastOnce: Packet.puback(PublishAck(packetID: p.packetID)).encode(version: config.version, into: &conns[c].out)
            case .exactlyOnce: Packet.pubrec(PublishAck(packetID: p.packetID)).encode(version: config.version, into: &conns[c].out)
            }
        }
    }
}
