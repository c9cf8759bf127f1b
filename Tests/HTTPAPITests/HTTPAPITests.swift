// The HTTP listener's request parser, JSON, and the publish API's body.

@testable import Codec
@testable import HTTPAPI
import ApusCrypto
import Broker
import XCTest

final class HTTPRequestTests: XCTestCase {
    func testCompleteIncompleteAndBody() {
        let text = "POST /api/v5/publish?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        let bytes = Array(text.utf8)
        for cut in 0..<(bytes.count - 1) {
            XCTAssertEqual(HTTPRequestParser.parse(Array(bytes[..<cut])), .incomplete, "cut at \(cut)")
        }
        guard case .complete(let request) = HTTPRequestParser.parse(bytes) else { return XCTFail() }
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.path, "/api/v5/publish")
        XCTAssertEqual(request.header("content-length"), "5")
        XCTAssertEqual(request.body, Array("hello".utf8))
    }

    func testInvalidRequests() {
        XCTAssertEqual(HTTPRequestParser.parse(Array("GARBAGE\r\n\r\n".utf8)), .invalid(status: 400, reason: "bad request line"))
        guard case .invalid(411, _) = HTTPRequestParser.parse(Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)) else {
            return XCTFail()
        }
        guard case .invalid(413, _) = HTTPRequestParser.parse(Array("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".utf8)) else {
            return XCTFail()
        }
        guard case .invalid(431, _) = HTTPRequestParser.parse([UInt8](repeating: 0x41, count: 20_000)) else { return XCTFail() }
    }

    func testResponseBytes() {
        let text = String(decoding: HTTPResponse(status: 202, json: .object([("reason_code", .number(16))])).bytes, as: UTF8.self)
        XCTAssertEqual(text, "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 18\r\nConnection: close\r\n\r\n{\"reason_code\":16}")
    }
}

final class JSONTests: XCTestCase {
    func testRoundTrip() {
        let text = #"{"a":[1,2.5,-3e2,true,false,null],"s":"q\"\\\/\n\u00e9\ud83d\ude00","o":{}}"#
        guard let value = JSONValue.parse(Array(text.utf8)) else { return XCTFail() }
        XCTAssertEqual(value["s"]?.string, "q\"\\/\né😀")
        XCTAssertEqual(value["a"], .array([.number(1), .number(2.5), .number(-300), .bool(true), .bool(false), .null]))
        XCTAssertEqual(JSONValue.parse(Array(value.serialized().utf8)), value)
    }

    func testRejects() {
        for bad in ["", "{", "{\"a\":}", "[1,]", "\"\u{01}\"", "tru", "{\"a\":1}x", "\"\\ud83d\"", String(repeating: "[", count: 40)] {
            XCTAssertNil(JSONValue.parse(Array(bad.utf8)), bad)
        }
    }
}

final class PublishRequestTests: XCTestCase {
    func testEMQXBody() throws {
        let body = #"{"topic":"a/b","payload":"aGk=","payload_encoding":"base64","qos":1,"retain":true,"properties":{"message_expiry_interval":60,"content_type":"text/plain","user_properties":{"k":"v"}}}"#
        let request = try PublishRequest.decode(Array(body.utf8)).get()
        XCTAssertEqual(request.topic, "a/b")
        XCTAssertEqual(request.payload, Array("hi".utf8))
        XCTAssertEqual(request.qos, .atLeastOnce)
        XCTAssertTrue(request.retain)
        // The property block decodes back as a PUBLISH's.
        var block = ByteBuffer()
        defer { block.deallocate() }
        block.writeVariableByteInteger(request.properties.count)
        request.properties.withUnsafeBytes { block.writeBytes($0) }
        let p = try block.readableView.withMemoryRebound(to: UInt8.self) { _ in
            var reader = ByteReader(block.readableView)
            return try Properties.decode(from: &reader, context: .publish)
        }
        XCTAssertEqual(p.messageExpiryInterval, 60)
        XCTAssertEqual(p.contentType, "text/plain")
        XCTAssertEqual(p.userProperties, [UserProperty("k", "v")])
    }

    func testInvalidBodies() {
        for (body, message) in [("[]", "body is not a JSON object"), (#"{"payload":"x"}"#, "topic is required"),
                                (#"{"topic":"a/#"}"#, "topic is not a valid topic name"), (#"{"topic":"a","qos":3}"#, "qos is 0, 1 or 2"),
                                (#"{"topic":"a","payload":"!!","payload_encoding":"base64"}"#, "payload is not valid base64")] {
            guard case .failure(let error) = PublishRequest.decode(Array(body.utf8)) else { return XCTFail(body) }
            XCTAssertEqual(error.message, message)
        }
    }
}

final class PublishBatchTests: XCTestCase {
    func testBatchInOrder() throws {
        let body = #"[{"topic":"a","payload":"1"},{"topic":"b","payload":"Mg==","payload_encoding":"base64","qos":2}]"#
        let batch = try PublishRequest.decodeBatch(Array(body.utf8)).get()
        XCTAssertEqual(batch.map(\.topic), ["a", "b"])
        XCTAssertEqual(batch.map(\.payload), [Array("1".utf8), Array("2".utf8)])
        XCTAssertEqual(batch.map(\.qos), [.atMostOnce, .exactlyOnce])
    }

    func testOneBadElementFailsTheBatchNamingIt() {
        for (body, message) in [(#"{"topic":"a"}"#, "body is not a JSON array"), ("[]", "the batch is empty"),
                                (#"[{"topic":"a"},{"topic":"a/+"}]"#, "message 1: topic is not a valid topic name"),
                                (#"[{"topic":"a"},7]"#, "message 1: body is not a JSON object"),
                                (#"[{"topic":"a","qos":5}]"#, "message 0: qos is 0, 1 or 2")] {
            guard case .failure(let error) = PublishRequest.decodeBatch(Array(body.utf8)) else { return XCTFail(body) }
            XCTAssertEqual(error.message, message)
        }
    }
}

final class HTTPCredentialsTests: XCTestCase {
    func request(authorization: String?) -> HTTPRequest {
        HTTPRequest(method: "POST", path: "/api/v5/publish",
                    headers: authorization.map { [("Authorization", $0)] } ?? [], body: [])
    }

    func testBasicAuthentication() throws {
        let credentials = try XCTUnwrap(HTTPCredentials(parsing: "ops:s3cret:with:colons"))
        XCTAssertEqual(credentials, HTTPCredentials(key: "ops", secret: "s3cret:with:colons"))
        let good = "Basic " + Base64.encode(Array("ops:s3cret:with:colons".utf8))
        XCTAssertTrue(credentials.authorizes(request(authorization: good)))
        XCTAssertTrue(credentials.authorizes(request(authorization: "basic " + Base64.encode(Array("ops:s3cret:with:colons".utf8)))))
        XCTAssertFalse(credentials.authorizes(request(authorization: nil)))
        XCTAssertFalse(credentials.authorizes(request(authorization: "Basic " + Base64.encode(Array("ops:wrong".utf8)))))
        XCTAssertFalse(credentials.authorizes(request(authorization: "Basic " + Base64.encode(Array("other:s3cret:with:colons".utf8)))))
        XCTAssertFalse(credentials.authorizes(request(authorization: "Bearer abc")))
        XCTAssertFalse(credentials.authorizes(request(authorization: "Basic !!!")))
        XCTAssertNil(HTTPCredentials(parsing: "nocolon"))
        XCTAssertNil(HTTPCredentials(parsing: ":secret"))
        XCTAssertNil(HTTPCredentials(parsing: "key:"))
    }

    func testResponseCarriesExtraHeaders() {
        var response = HTTPResponse(status: 401, body: [])
        response.headers.append(("WWW-Authenticate", "Basic realm=\"apus\""))
        let text = String(decoding: response.bytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
        XCTAssertTrue(text.contains("\r\nWWW-Authenticate: Basic realm=\"apus\"\r\n"))
    }
}

final class WebhookBodyTests: XCTestCase {
    func testEMQXFieldsAndBinaryPayloads() {
        var e = BrokerEvent(kind: .publish, clientID: "dev-1", username: "alice")
        e.topic = "s/1"; e.payload = Array("21.5".utf8); e.qos = 1; e.timestamp = 1_765_000_000_000
        let text = WebhookBody.json(e, node: "a")
        XCTAssertEqual(text["event"]?.string, "message.publish")
        XCTAssertEqual(text["clientid"]?.string, "dev-1")
        XCTAssertEqual(text["username"]?.string, "alice")
        XCTAssertEqual(text["payload"]?.string, "21.5")
        XCTAssertEqual(text["qos"]?.number, 1)
        XCTAssertEqual(text["timestamp"]?.number, 1_765_000_000_000)
        XCTAssertEqual(text["node"]?.string, "a")
        e.payload = [0xFF, 0x00]
        let binary = WebhookBody.json(e, node: "a")
        XCTAssertEqual(binary["payload"]?.string, "/wA=")
        XCTAssertEqual(binary["payload_encoding"]?.string, "base64")
        let gone = WebhookBody.json(BrokerEvent(kind: .disconnected, clientID: "x", username: nil), node: "a")
        XCTAssertEqual(gone["username"], .null)
        XCTAssertNotNil(gone["disconnected_at"])
    }
}
