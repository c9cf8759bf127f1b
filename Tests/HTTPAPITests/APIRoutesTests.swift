// The HTTP routes against a fake broker endpoint: paths, methods, the API key, the publish
// answers (200, 202 with reason code 16, 400 for a bad body, a reserved topic or a refusal of the
// broker's settings), the bulk rule that nothing is published when any element is bad, health.

import XCTest
import ApusCrypto
import Broker
import Codec
@testable import HTTPAPI

struct FakeEndpoint: BrokerEndpoint {
    var credentials: HTTPCredentials? = nil
    var config = BrokerConfig()
    var subscribedTopics: Set<String> = []
    var published: [PublishRequest] = []
    var publishedBatches = 0
    var ids = 0
    var ready = true
    var ages: [UInt64] = [1_000_000, 2_000_000]

    mutating func metricsText() -> String { "apus_up 1\n" }
    func health() -> HealthReport { HealthReport(version: "9.9", uptimeSeconds: 7, tickAges: ages, stallNanoseconds: 1_000_000_000) }
    var isReady: Bool { ready }
    func refusal(_ request: PublishRequest) -> PublishRefusal? {
        config.refusal(qos: request.qos, retain: request.retain, payloadCount: request.payload.count)
    }
    mutating func publish(_ request: PublishRequest) -> PublishOutcome {
        if let refusal = refusal(request) { return .refused(refusal) }
        published.append(request)
        return .routed(matched: subscribedTopics.contains(request.topic))
    }
    mutating func nextMessageID() -> String { ids += 1; return "id\(ids)" }
    mutating func didPublish() { publishedBatches += 1 }
    func nodes() -> [NodeSummary] { [NodeSummary(node: "apus@test", running: true, connections: 3, uptimeMilliseconds: 4500, version: "0.1.0")] }
}

final class APIRoutesTests: XCTestCase {
    func post(_ path: String, _ body: String, headers: [(name: String, value: String)] = []) -> HTTPRequest {
        HTTPRequest(method: "POST", path: path, headers: headers, body: Array(body.utf8))
    }

    func json(_ response: HTTPResponse) -> JSONValue? { JSONValue.parse(response.body) }

    func testUnknownPathAndWrongMethod() {
        var endpoint = FakeEndpoint()
        XCTAssertEqual(APIRoutes.answer(HTTPRequest(method: "GET", path: "/nope", headers: [], body: []), endpoint: &endpoint).status, 404)
        let wrong = APIRoutes.answer(HTTPRequest(method: "POST", path: "/metrics", headers: [], body: []), endpoint: &endpoint)
        XCTAssertEqual(wrong.status, 405)
        XCTAssertEqual(json(wrong)?["message"]?.string, "use GET")
    }

    func testNodesInEMQXsShape() {
        var endpoint = FakeEndpoint()
        let answer = APIRoutes.answer(HTTPRequest(method: "GET", path: "/api/v5/nodes", headers: [], body: []), endpoint: &endpoint)
        XCTAssertEqual(answer.status, 200)
        guard case .array(let nodes)? = json(answer) else { return XCTFail("not an array") }
        XCTAssertEqual(nodes.count, 1)
        XCTAssertEqual(nodes[0]["node"]?.string, "apus@test")
        XCTAssertEqual(nodes[0]["node_status"]?.string, "running")
        XCTAssertEqual(nodes[0]["connections"]?.number, 3)
        XCTAssertEqual(nodes[0]["uptime"]?.number, 4500)
    }

    func testPublishAnswers() {
        var endpoint = FakeEndpoint(subscribedTopics: ["a/b"])
        let delivered = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"a/b","payload":"x","qos":1}"#), endpoint: &endpoint)
        XCTAssertEqual(delivered.status, 200)
        XCTAssertEqual(json(delivered)?["id"]?.string, "id1")
        let nobody = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"c","payload":"x"}"#), endpoint: &endpoint)
        XCTAssertEqual(nobody.status, 202)
        XCTAssertEqual(json(nobody)?["reason_code"]?.number, 16)
        XCTAssertEqual(endpoint.published.map(\.topic), ["a/b", "c"])
        XCTAssertEqual(endpoint.publishedBatches, 2, "each request's sends start at once")
        XCTAssertEqual(APIRoutes.answer(post("/api/v5/publish", "{"), endpoint: &endpoint).status, 400)
        let reserved = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"$SYS/x","payload":"x"}"#), endpoint: &endpoint)
        XCTAssertEqual(reserved.status, 400)
        XCTAssertEqual(json(reserved)?["code"]?.string, "BAD_TOPIC")
        XCTAssertEqual(endpoint.published.count, 2)
    }

    func testTheBrokersSettingsRefuseAsForAClient() {
        var endpoint = FakeEndpoint()
        endpoint.config.messageSizeLimit = 3
        endpoint.config.maximumQoS = .atLeastOnce
        endpoint.config.retainAvailable = false
        let big = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"t","payload":"four"}"#), endpoint: &endpoint)
        XCTAssertEqual(big.status, 400)
        XCTAssertEqual(json(big)?["code"]?.string, "PACKET_TOO_LARGE")
        XCTAssertEqual(json(big)?["message"]?.string, "payload over message_size_limit (3 bytes)")
        let qos = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"t","payload":"x","qos":2}"#), endpoint: &endpoint)
        XCTAssertEqual(json(qos)?["message"]?.string, "QoS above max_qos")
        let retain = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"t","payload":"x","retain":true}"#), endpoint: &endpoint)
        XCTAssertEqual(json(retain)?["message"]?.string, "retained messages are disabled")
        XCTAssertTrue(endpoint.published.isEmpty)
    }

    func testBulkPublishesNothingWhenAnyElementIsRefused() {
        var endpoint = FakeEndpoint(subscribedTopics: ["a"])
        endpoint.config.messageSizeLimit = 3
        let refused = APIRoutes.answer(post("/api/v5/publish/bulk", #"[{"topic":"a","payload":"x"},{"topic":"a","payload":"long"}]"#),
                                       endpoint: &endpoint)
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual(json(refused)?["message"]?.string, "message 1: payload over message_size_limit (3 bytes)")
        XCTAssertTrue(endpoint.published.isEmpty, "the first element was not published either")
        let mixed = APIRoutes.answer(post("/api/v5/publish/bulk", #"[{"topic":"a","payload":"x"},{"topic":"b","payload":"y"}]"#),
                                     endpoint: &endpoint)
        XCTAssertEqual(mixed.status, 202, "one of them reached nobody")
        guard case .array(let answers)? = json(mixed) else { return XCTFail("an array of answers") }
        XCTAssertEqual(answers.count, 2)
        XCTAssertNil(answers[0]["reason_code"])
        XCTAssertEqual(answers[1]["reason_code"]?.number, 16)
        XCTAssertEqual(endpoint.publishedBatches, 1)
    }

    func testTheAPIKeyGuardsOnlyTheAPI() {
        var endpoint = FakeEndpoint(credentials: HTTPCredentials(key: "k", secret: "s"))
        let denied = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"a","payload":"x"}"#), endpoint: &endpoint)
        XCTAssertEqual(denied.status, 401)
        XCTAssertTrue(denied.headers.contains { $0.name == "WWW-Authenticate" })
        let allowed = APIRoutes.answer(post("/api/v5/publish", #"{"topic":"a","payload":"x"}"#,
                                            headers: [("Authorization", "Basic " + Base64.encode(Array("k:s".utf8)))]), endpoint: &endpoint)
        XCTAssertEqual(allowed.status, 202)
        XCTAssertEqual(APIRoutes.answer(HTTPRequest(method: "GET", path: "/metrics", headers: [], body: []), endpoint: &endpoint).status, 200)
    }

    func testHealthAndReadiness() {
        var endpoint = FakeEndpoint()
        let ok = APIRoutes.answer(HTTPRequest(method: "GET", path: "/health", headers: [], body: []), endpoint: &endpoint)
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(json(ok)?["status"]?.string, "ok")
        XCTAssertEqual(json(ok)?["shards"]?.number, 2)
        endpoint.ages = [1_000_000, 3_000_000_000]
        let stalled = APIRoutes.answer(HTTPRequest(method: "GET", path: "/health", headers: [], body: []), endpoint: &endpoint)
        XCTAssertEqual(stalled.status, 503)
        guard case .array(let loops)? = json(stalled)?["shard_loops"] else { return XCTFail("per-shard loops") }
        XCTAssertEqual(loops[1]["stalled"]?.bool, true)
        XCTAssertEqual(loops[1]["last_tick_ms"]?.number, 3000)
        endpoint.ready = false
        XCTAssertEqual(APIRoutes.answer(HTTPRequest(method: "GET", path: "/health/ready", headers: [], body: []), endpoint: &endpoint).status, 503)
    }
}
