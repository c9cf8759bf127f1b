// The HTTP listener's sockets (`http_listener`), served by shard 0 on its own io_uring ring, one
// request per connection (answered with Connection: close). The routes and answers are HTTPAPI's
// (APIRoutes.swift); this file moves bytes and implements their `BrokerEndpoint` over the shard.
// It is off the data path: a scrape or an API call costs shard 0 a few microseconds between two
// batches of MQTT completions, and the publish API routes like a client's PUBLISH would.

import Broker
import CApusSys
import Codec
import HTTPAPI
import IOUring
import Telemetry
@preconcurrency import Glibc

/// One HTTP connection of shard 0.
struct HTTPConnection {
    var fd: Int32 = -1
    var generation: UInt32 = 0
    /// Bytes received so far (one request).
    var request: [UInt8] = []
    var recvBuffer: UnsafeMutableRawBufferPointer? = nil
    /// The response being sent (owned until the send completes).
    var response: UnsafeMutableRawBufferPointer? = nil
    var sent = 0
    var recvInFlight = false
    var sendInFlight = false
    var shutDown = false
    /// A request not complete or not taken by then is cut off.
    var deadline: UInt64 = 0
}

extension Shard {
    static let httpMaxConnections = 64
    static let httpRecvBufferSize = 16 << 10
    static let httpTimeoutNanoseconds: UInt64 = 10_000_000_000

    func armHTTPAccept() {
        guard let fd = httpListener else { return }
        ring.prepareMultishotAccept(fd: fd, userData: UserData.make(.httpAccept))
    }

    func httpAcceptCompleted(_ completion: Completion, now: UInt64) {
        let fd = completion.result
        if fd >= 0 {
            if group.stopping.load(ordering: .relaxed) || http.count - httpFree.count >= Shard.httpMaxConnections {
                Glibc.close(fd)  // shutting down, or too many open at once: the client sees the connection reset
            } else {
                let slot: Int
                if let free = httpFree.popLast() { slot = free } else { slot = http.count; http.append(HTTPConnection()) }
                let generation = (http[slot].generation &+ 1) & 0xFF_FFFF
                http[slot] = HTTPConnection(fd: fd, generation: generation,
                                            recvBuffer: .allocate(byteCount: Shard.httpRecvBufferSize, alignment: 16),
                                            deadline: now + Shard.httpTimeoutNanoseconds)
                armHTTPRecv(slot)
            }
        } else if fd != -ECANCELED {
            logger.warning("HTTP accept failed: \(String(cString: strerror(-fd)))")
        }
        if !completion.hasMore && !group.stopping.load(ordering: .relaxed) { armHTTPAccept() }
    }

    private func httpUserData(_ kind: OperationKind, _ slot: Int) -> UInt64 {
        UserData.make(kind, ConnectionID(slot: Int32(slot), generation: http[slot].generation))
    }

    /// The HTTP slot a completion refers to, if it is still the same connection.
    private func httpSlot(of completion: Completion) -> Int? {
        let slot = Int(UserData.slot(completion.userData))
        guard slot >= 0, slot < http.count, http[slot].fd >= 0,
              http[slot].generation == UserData.generation24(completion.userData) else { return nil }
        return slot
    }

    private func armHTTPRecv(_ slot: Int) {
        let buffer = http[slot].recvBuffer!
        ring.prepareRecv(fd: http[slot].fd, buffer: buffer.baseAddress!, count: buffer.count, userData: httpUserData(.httpRecv, slot))
        http[slot].recvInFlight = true
    }

    func httpReceived(_ completion: Completion, now: UInt64) {
        guard let slot = httpSlot(of: completion) else { return }
        http[slot].recvInFlight = false
        let n = Int(completion.result)
        guard n > 0, !http[slot].shutDown else {
            closeHTTP(slot)  // the client went away (or the deadline shut the socket)
            return
        }
        http[slot].request.append(contentsOf: UnsafeRawBufferPointer(rebasing: http[slot].recvBuffer![..<n]))
        switch HTTPRequestParser.parse(http[slot].request) {
        case .incomplete:
            armHTTPRecv(slot)
        case .invalid(let status, let reason):
            respond(slot, APIRoutes.invalid(status: status, reason: reason))
        case .complete(let request):
            respond(slot, answer(request, now: now))
        }
    }

    private func respond(_ slot: Int, _ response: HTTPResponse) {
        let bytes = response.bytes
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        buffer.copyBytes(from: bytes)
        http[slot].response = buffer
        http[slot].sent = 0
        http[slot].request = []
        sendHTTP(slot)
    }

    private func sendHTTP(_ slot: Int) {
        let buffer = http[slot].response!
        ring.prepareSend(fd: http[slot].fd, bytes: buffer.baseAddress! + http[slot].sent, count: buffer.count - http[slot].sent,
                         userData: httpUserData(.httpSend, slot))
        http[slot].sendInFlight = true
    }

    func httpSent(_ completion: Completion) {
        guard let slot = httpSlot(of: completion) else { return }
        http[slot].sendInFlight = false
        if completion.result > 0 && !http[slot].shutDown {
            http[slot].sent += Int(completion.result)
            if http[slot].sent < http[slot].response!.count {
                sendHTTP(slot)
                return
            }
        }
        closeHTTP(slot)
    }

    /// Closes the connection once no operation on it is outstanding (else shuts it down, which
    /// completes them).
    private func closeHTTP(_ slot: Int) {
        guard http[slot].fd >= 0 else { return }
        if http[slot].recvInFlight || http[slot].sendInFlight {
            if !http[slot].shutDown {
                http[slot].shutDown = true
                Glibc.shutdown(http[slot].fd, Int32(SHUT_RDWR))
            }
            return
        }
        Glibc.close(http[slot].fd)
        http[slot].recvBuffer?.deallocate()
        http[slot].response?.deallocate()
        http[slot] = HTTPConnection(generation: http[slot].generation)
        httpFree.append(slot)
    }

    /// Cuts off connections past their deadline (slow or idle clients).
    func checkHTTPDeadlines(now: UInt64) {
        for slot in http.indices where http[slot].fd >= 0 && now >= http[slot].deadline && !http[slot].shutDown {
            closeHTTP(slot)
        }
    }

    func closeAllHTTP() {
        if let fd = httpListener { Glibc.close(fd) }
        for slot in http.indices where http[slot].fd >= 0 {
            Glibc.close(http[slot].fd)
            // A buffer an operation still in flight may write into is left allocated: the process
            // is stopping, and freeing it before the ring is gone could let the kernel write freed memory.
            if !http[slot].recvInFlight { http[slot].recvBuffer?.deallocate() }
            if !http[slot].sendInFlight { http[slot].response?.deallocate() }
        }
        http = []
    }

    /// The answer to a request: the routes (HTTPAPI's APIRoutes) over this shard's endpoint.
    func answer(_ request: HTTPRequest, now: UInt64) -> HTTPResponse {
        var endpoint = ShardEndpoint(shard: self, now: now)
        return APIRoutes.answer(request, endpoint: &endpoint)
    }
}

/// The broker as the HTTP routes see it: shard 0's core, the stats board and the shard loops.
struct ShardEndpoint: BrokerEndpoint {
    unowned let shard: Shard
    let now: UInt64

    var credentials: HTTPCredentials? { shard.group.config.httpCredentials }

    mutating func metricsText() -> String {
        shard.reportStats(now: now)  // this shard's own slot is fresh; the others are at most a second old
        return PrometheusMetrics.render(shard.group.stats.snapshot(), uptimeSeconds: (now - shard.group.stats.startedAt) / 1_000_000_000,
                                        version: shard.group.config.version)
    }

    func health() -> HealthReport {
        HealthReport(version: shard.group.config.version, uptimeSeconds: (now - shard.group.stats.startedAt) / 1_000_000_000,
                     tickAges: shard.group.tickAges(now: now), stallNanoseconds: ShardGroup.stallNanoseconds)
    }

    var isReady: Bool { shard.group.ready.load(ordering: .acquiring) }

    func refusal(_ request: PublishRequest) -> PublishRefusal? {
        shard.core.config.refusal(qos: request.qos, retain: request.retain, payloadCount: request.payload.count)
    }

    mutating func publish(_ request: PublishRequest) -> PublishOutcome {
        shard.core.publishFromAPI(topic: request.topic, payload: request.payload, qos: request.qos,
                                  retain: request.retain, properties: request.properties)
    }

    mutating func nextMessageID() -> String {
        shard.httpMessageCounter &+= 1
        return Self.hex(apus_monotonic_ns()) + Self.hex(shard.httpMessageCounter)
    }

    mutating func didPublish() { shard.flushConnections() }

    static func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
