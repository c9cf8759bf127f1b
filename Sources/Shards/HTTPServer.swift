// The HTTP listener (`http_listener`): GET /metrics, GET /health, POST /api/v5/publish and
// POST /api/v5/publish/bulk, served by shard 0 on its own io_uring ring, one request per
// connection (answered with Connection: close).
// It is off the data path: a scrape or an API call costs shard 0 a few microseconds between two
// batches of MQTT completions, and the publish API routes like a client's PUBLISH would.

import Broker
import CApusSys
import Codec
import HTTPAPI
import IOUring
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
            respond(slot, HTTPResponse(status: status, json: .object([("message", .string(reason))])))
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

    // MARK: routes

    func answer(_ request: HTTPRequest, now: UInt64) -> HTTPResponse {
        let routes: [(path: String, method: String)] = [
            ("/metrics", "GET"), ("/health", "GET"), ("/health/ready", "GET"), ("/api/v5/publish", "POST"),
            ("/api/v5/publish/bulk", "POST"),
        ]
        guard let route = routes.first(where: { $0.path == request.path }) else {
            return HTTPResponse(status: 404, json: .object([("code", .string("NOT_FOUND")), ("message", .string("no such path"))]))
        }
        guard request.method == route.method else {
            return HTTPResponse(status: 405, json: .object([("code", .string("METHOD_NOT_ALLOWED")),
                                                            ("message", .string("use \(route.method)"))]))
        }
        if route.path.hasPrefix("/api/"), let credentials = group.config.httpCredentials, !credentials.authorizes(request) {
            var response = HTTPResponse(status: 401, json: .object([
                ("code", .string("BAD_API_KEY_OR_SECRET")), ("message", .string("HTTP Basic authentication with the API key required")),
            ]))
            response.headers.append(("WWW-Authenticate", "Basic realm=\"apus\""))
            return response
        }
        switch route.path {
        case "/metrics":
            reportStats(now: now)  // this shard's own slot is fresh; the others are at most a second old
            let text = PrometheusMetrics.render(group.stats.snapshot(), uptimeSeconds: (now - group.stats.startedAt) / 1_000_000_000,
                                                version: group.config.version)
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(text.utf8))
        case "/health":
            // Liveness: every shard's loop ticked within the last second (a stuck shard: 503).
            let ages = group.tickAges(now: now)
            let stalled = ages.contains { $0 > ShardGroup.stallNanoseconds }
            let perShard: [JSONValue] = ages.enumerated().map { i, age in
                .object([("shard", .number(Double(i))), ("last_tick_ms", .number(Double(age / 1_000_000))),
                         ("stalled", .bool(age > ShardGroup.stallNanoseconds))])
            }
            return HTTPResponse(status: stalled ? 503 : 200, json: .object([
                ("status", .string(stalled ? "stalled" : "ok")), ("version", .string(group.config.version)),
                ("shards", .number(Double(group.config.shards))),
                ("uptime_seconds", .number(Double((now - group.stats.startedAt) / 1_000_000_000))),
                ("shard_loops", .array(perShard)),
            ]))
        case "/health/ready":
            // Readiness: every shard serves and every listener is bound.
            let ready = group.ready.load(ordering: .acquiring)
            return HTTPResponse(status: ready ? 200 : 503, json: .object([("status", .string(ready ? "ready" : "starting"))]))
        case "/api/v5/publish/bulk":
            return publishBatch(request)
        default:
            return publish(request)
        }
    }

    private func bad(_ code: String, _ message: String) -> HTTPResponse {
        HTTPResponse(status: 400, json: .object([("code", .string(code)), ("message", .string(message))]))
    }

    /// What the broker's settings refuse in a decoded publish request: (code, message), or nil.
    private func refusal(_ request: PublishRequest) -> (code: String, message: String)? {
        let config = core.config
        if request.topic.utf8.first == UInt8(ascii: "$") { return ("BAD_TOPIC", "topics starting with $ are reserved") }
        if config.messageSizeLimit > 0 && request.payload.count > config.messageSizeLimit {
            return ("PACKET_TOO_LARGE", "payload over message_size_limit (\(config.messageSizeLimit) bytes)")
        }
        if request.qos.rawValue > config.maximumQoS.rawValue { return ("BAD_REQUEST", "qos above max_qos") }
        if request.retain && !config.retainAvailable { return ("BAD_REQUEST", "retained messages are not available") }
        return nil
    }

    /// Routes one accepted request like a client's PUBLISH; its answer (200 with the message id,
    /// or 202-style with reason code 16 when nobody is subscribed) and whether it reached anyone.
    private func route(_ request: PublishRequest) -> (json: JSONValue, delivered: Bool) {
        httpMessageCounter &+= 1
        let id = hex(apus_monotonic_ns()) + hex(UInt64(httpMessageCounter))
        let delivered = core.publishFromBroker(topic: request.topic, payload: request.payload, qos: request.qos,
                                               retain: request.retain, properties: request.properties)
        if delivered { return (.object([("id", .string(id))]), true) }
        return (.object([("id", .string(id)), ("reason_code", .number(16)), ("message", .string("no_matching_subscribers"))]), false)
    }

    /// POST /api/v5/publish: EMQX's body and answers (200 with the message id; 202 with reason
    /// code 16 when nobody is subscribed; 400 with a message for a bad body).
    private func publish(_ request: HTTPRequest) -> HTTPResponse {
        let decoded: PublishRequest
        switch PublishRequest.decode(request.body) {
        case .failure(let error): return bad("BAD_REQUEST", error.message)
        case .success(let value): decoded = value
        }
        if let refused = refusal(decoded) { return bad(refused.code, refused.message) }
        let result = route(decoded)
        // The message was queued by the core: start the sends now rather than after the next completion.
        flushConnections()
        return HTTPResponse(status: result.delivered ? 200 : 202, json: result.json)
    }

    /// POST /api/v5/publish/bulk: an array of publish bodies, published in order. As EMQX: 400 and
    /// nothing published when any element is bad; otherwise an array of per-message answers, with
    /// status 200 when every message reached a subscriber and 202 when at least one reached none.
    private func publishBatch(_ request: HTTPRequest) -> HTTPResponse {
        let batch: [PublishRequest]
        switch PublishRequest.decodeBatch(request.body) {
        case .failure(let error): return bad("BAD_REQUEST", error.message)
        case .success(let value): batch = value
        }
        for (i, message) in batch.enumerated() {
            if let refused = refusal(message) { return bad(refused.code, "message \(i): \(refused.message)") }
        }
        var answers: [JSONValue] = []
        answers.reserveCapacity(batch.count)
        var all = true
        for message in batch {
            let result = route(message)
            answers.append(result.json)
            all = all && result.delivered
        }
        flushConnections()
        return HTTPResponse(status: all ? 200 : 202, json: .array(answers))
    }

    private func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
