// The HTTP listener's routes and answers: GET /metrics, GET /health, GET /health/ready,
// POST /api/v5/publish and POST /api/v5/publish/bulk (EMQX's bodies and answers). Pure: a parsed
// request and a `BrokerEndpoint` in, a response out; the runtime owns the sockets and implements
// the endpoint over shard 0's core, and the tests implement it with a fake.

import Broker
import Codec

/// What the HTTP routes need from the broker.
public protocol BrokerEndpoint {
    /// When set, `/api/v5/...` requests need HTTP Basic authentication with this key and secret.
    var credentials: HTTPCredentials? { get }
    /// GET /metrics: the Prometheus text.
    mutating func metricsText() -> String
    /// GET /health: the shard loops' state.
    func health() -> HealthReport
    /// GET /health/ready: every shard serves and every listener is bound.
    var isReady: Bool { get }
    /// What the broker's settings refuse in a request (the checks a client's PUBLISH gets), or nil.
    func refusal(_ request: PublishRequest) -> PublishRefusal?
    /// Publishes one request as a PUBLISH from the broker (checked by the settings again).
    mutating func publish(_ request: PublishRequest) -> PublishOutcome
    /// A message id for the answer (unique within the process).
    mutating func nextMessageID() -> String
    /// The messages of one request are published: start their sends now, not after the next completion.
    mutating func didPublish()
    /// GET /api/v5/nodes: this node and, in a cluster, every node it has known.
    func nodes() -> [NodeSummary]
}

/// One node in GET /api/v5/nodes (EMQX's fields).
public struct NodeSummary: Sendable, Equatable {
    public var node: String
    public var running: Bool
    public var connections: Int
    public var uptimeMilliseconds: UInt64
    public var version: String

    public init(node: String, running: Bool, connections: Int, uptimeMilliseconds: UInt64, version: String) {
        self.node = node; self.running = running; self.connections = connections
        self.uptimeMilliseconds = uptimeMilliseconds; self.version = version
    }

    var json: JSONValue {
        .object([("node", .string(node)), ("node_status", .string(running ? "running" : "stopped")),
                 ("connections", .number(Double(connections))), ("uptime", .number(Double(uptimeMilliseconds))),
                 ("version", .string(version))])
    }
}

/// The liveness of the shard loops, for GET /health.
public struct HealthReport: Sendable, Equatable {
    public var version: String
    public var uptimeSeconds: UInt64
    /// Nanoseconds since each shard's loop last ticked.
    public var tickAges: [UInt64]
    /// A loop that has not ticked for longer is stalled.
    public var stallNanoseconds: UInt64

    public init(version: String, uptimeSeconds: UInt64, tickAges: [UInt64], stallNanoseconds: UInt64) {
        self.version = version
        self.uptimeSeconds = uptimeSeconds
        self.tickAges = tickAges
        self.stallNanoseconds = stallNanoseconds
    }

    public var stalled: Bool { tickAges.contains { $0 > stallNanoseconds } }
}

public enum APIRoutes {
    static let routes: [(path: String, method: String)] = [
        ("/metrics", "GET"), ("/health", "GET"), ("/health/ready", "GET"), ("/api/v5/publish", "POST"),
        ("/api/v5/publish/bulk", "POST"), ("/api/v5/nodes", "GET"),
    ]

    /// The answer to a request that did not parse (the parser's status and reason).
    public static func invalid(status: Int, reason: String) -> HTTPResponse {
        HTTPResponse(status: status, json: .object([("message", .string(reason))]))
    }

    /// The answer to a parsed request.
    public static func answer<E: BrokerEndpoint>(_ request: HTTPRequest, endpoint: inout E) -> HTTPResponse {
        guard let route = routes.first(where: { $0.path == request.path }) else {
            return HTTPResponse(status: 404, json: .object([("code", .string("NOT_FOUND")), ("message", .string("no such path"))]))
        }
        guard request.method == route.method else {
            return HTTPResponse(status: 405, json: .object([("code", .string("METHOD_NOT_ALLOWED")),
                                                            ("message", .string("use \(route.method)"))]))
        }
        if route.path.hasPrefix("/api/"), let credentials = endpoint.credentials, !credentials.authorizes(request) {
            var response = HTTPResponse(status: 401, json: .object([
                ("code", .string("BAD_API_KEY_OR_SECRET")), ("message", .string("HTTP Basic authentication with the API key required")),
            ]))
            response.headers.append(("WWW-Authenticate", "Basic realm=\"apus\""))
            return response
        }
        switch route.path {
        case "/metrics":
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(endpoint.metricsText().utf8))
        case "/health":
            return health(endpoint.health())
        case "/health/ready":
            let ready = endpoint.isReady
            return HTTPResponse(status: ready ? 200 : 503, json: .object([("status", .string(ready ? "ready" : "starting"))]))
        case "/api/v5/publish/bulk":
            return publishBatch(request, endpoint: &endpoint)
        case "/api/v5/nodes":
            return HTTPResponse(status: 200, json: .array(endpoint.nodes().map(\.json)))
        default:
            return publish(request, endpoint: &endpoint)
        }
    }

    /// Liveness: every shard's loop ticked within the stall time (a stuck shard: 503).
    static func health(_ report: HealthReport) -> HTTPResponse {
        let perShard: [JSONValue] = report.tickAges.enumerated().map { i, age in
            .object([("shard", .number(Double(i))), ("last_tick_ms", .number(Double(age / 1_000_000))),
                     ("stalled", .bool(age > report.stallNanoseconds))])
        }
        return HTTPResponse(status: report.stalled ? 503 : 200, json: .object([
            ("status", .string(report.stalled ? "stalled" : "ok")), ("version", .string(report.version)),
            ("shards", .number(Double(report.tickAges.count))),
            ("uptime_seconds", .number(Double(report.uptimeSeconds))),
            ("shard_loops", .array(perShard)),
        ]))
    }

    static func bad(_ code: String, _ message: String) -> HTTPResponse {
        HTTPResponse(status: 400, json: .object([("code", .string(code)), ("message", .string(message))]))
    }

    /// The API's own rule (EMQX's): clients of the API do not publish to `$` topics.
    static func apiRefusal(_ request: PublishRequest) -> (code: String, message: String)? {
        request.topic.utf8.first == UInt8(ascii: "$") ? ("BAD_TOPIC", "topics starting with $ are reserved") : nil
    }

    /// How a refusal of the broker's settings is answered.
    static func refusalAnswer(_ refusal: PublishRefusal) -> (code: String, message: String) {
        switch refusal {
        case .overSizeLimit: ("PACKET_TOO_LARGE", refusal.explanation)
        case .qosNotSupported, .retainNotSupported: ("BAD_REQUEST", refusal.explanation)
        }
    }

    /// The JSON for one routed message: the message id, plus reason code 16 when nobody is subscribed.
    static func routedAnswer(matched: Bool, id: String) -> JSONValue {
        if matched { return .object([("id", .string(id))]) }
        return .object([("id", .string(id)), ("reason_code", .number(16)), ("message", .string("no_matching_subscribers"))])
    }

    /// POST /api/v5/publish: 200 with the message id; 202 with reason code 16 when nobody is
    /// subscribed; 400 with a message for a bad body or a refused message.
    static func publish<E: BrokerEndpoint>(_ request: HTTPRequest, endpoint: inout E) -> HTTPResponse {
        let decoded: PublishRequest
        switch PublishRequest.decode(request.body) {
        case .failure(let error): return bad("BAD_REQUEST", error.message)
        case .success(let value): decoded = value
        }
        if let refused = apiRefusal(decoded) { return bad(refused.code, refused.message) }
        switch endpoint.publish(decoded) {
        case .refused(let refusal):
            let answer = refusalAnswer(refusal)
            return bad(answer.code, answer.message)
        case .routed(let matched):
            endpoint.didPublish()
            return HTTPResponse(status: matched ? 200 : 202, json: routedAnswer(matched: matched, id: endpoint.nextMessageID()))
        }
    }

    /// POST /api/v5/publish/bulk: an array of publish bodies, published in order. As EMQX: 400 and
    /// nothing published when any element is bad; otherwise an array of per-message answers, with
    /// status 200 when every message reached a subscriber and 202 when at least one reached none.
    static func publishBatch<E: BrokerEndpoint>(_ request: HTTPRequest, endpoint: inout E) -> HTTPResponse {
        let batch: [PublishRequest]
        switch PublishRequest.decodeBatch(request.body) {
        case .failure(let error): return bad("BAD_REQUEST", error.message)
        case .success(let value): batch = value
        }
        // Every element is checked before any is published.
        for (i, message) in batch.enumerated() {
            if let refused = apiRefusal(message) { return bad(refused.code, "message \(i): \(refused.message)") }
            if let refusal = endpoint.refusal(message) {
                let answer = refusalAnswer(refusal)
                return bad(answer.code, "message \(i): \(answer.message)")
            }
        }
        var answers: [JSONValue] = []
        answers.reserveCapacity(batch.count)
        var all = true
        for message in batch {
            // Checked above, on this thread, with the same settings: routed.
            guard case .routed(let matched) = endpoint.publish(message) else { continue }
            answers.append(routedAnswer(matched: matched, id: endpoint.nextMessageID()))
            all = all && matched
        }
        endpoint.didPublish()
        return HTTPResponse(status: all ? 200 : 202, json: .array(answers))
    }
}
