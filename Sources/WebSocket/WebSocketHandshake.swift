// The server side of RFC 6455's opening handshake: an HTTP/1.1 GET with Upgrade: websocket is
// answered 101 with Sec-WebSocket-Accept (SHA-1 of the key and the protocol's GUID, Base64), or
// refused with the status the RFC names (426 for a missing upgrade or another version, 400 for a
// malformed key, 403 for an origin not allowed, 404 for another path than the required one).
//
// Subprotocols (RFC 6455 §4.2.2, MQTT §6): clients offer `mqtt` (MQTT 3.1.1 and 5.0), older ones
// `mqttv3.1`, some several in one list; the answer names exactly one the client offered, the
// first it listed that is MQTT (Chrome fails the handshake otherwise). A client that offers none
// (some embedded clients) is accepted without the header — MQTT is all this listener speaks; one
// that offers only other protocols is refused (400), since a browser would fail anyway.
// permessage-deflate and other extensions are not negotiated: the answer names none, so clients
// send plain frames.

import ApusCrypto
import HTTP1
import Transport

public enum WebSocketHandshake {
    /// RFC 6455 §1.3's GUID, appended to the key before hashing.
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// The subprotocol names that mean MQTT (what mosquitto, EMQX and the common clients send).
    public static let mqttSubprotocols: Set<String> = ["mqtt", "mqttv3.1", "mqttv3.1.1", "mqtt-v3", "mqtt-v3.1.1", "mqttv5", "mqtt-v5"]

    /// Sec-WebSocket-Accept for a Sec-WebSocket-Key.
    public static func acceptValue(forKey key: String) -> String {
        Base64.encode(SHA1.hash(Array((key + guid).utf8)))
    }

    public enum Outcome: Sendable, Equatable {
        /// The 101 answer; the connection speaks frames from now on.
        case upgrade(response: [UInt8], subprotocol: String?, forwardedFor: String?)
        /// The refusal to send before closing, and why (for the log).
        case refuse(status: Int, reason: String, response: [UInt8])
    }

    /// The answer to a complete upgrade request.
    public static func answer(_ request: HTTPRequest, settings: WebSocketSettings) -> Outcome {
        guard request.method == "GET" else {
            return refuse(405, "the WebSocket upgrade is a GET, got \(request.method)", headers: [("Allow", "GET")])
        }
        guard request.version != "HTTP/1.0" else { return refuse(400, "the WebSocket upgrade needs HTTP/1.1") }
        if let path = settings.path, request.path != path {
            return refuse(404, "path \(request.path) is not this listener's WebSocket path (\(path))")
        }
        let upgrade = request.headerTokens("Upgrade").contains { $0.lowercased() == "websocket" }
        let connection = request.headerTokens("Connection").contains { $0.lowercased() == "upgrade" }
        guard upgrade && connection else {
            return refuse(426, "not a WebSocket upgrade (Upgrade: websocket and Connection: Upgrade are needed)",
                          headers: [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])
        }
        guard request.header("Sec-WebSocket-Version") == "13" else {
            return refuse(426, "Sec-WebSocket-Version \(request.header("Sec-WebSocket-Version") ?? "missing"): only 13 is spoken",
                          headers: [("Sec-WebSocket-Version", "13")])
        }
        guard let key = request.header("Sec-WebSocket-Key"), let nonce = Base64.decode(key), nonce.count == 16 else {
            return refuse(400, "Sec-WebSocket-Key missing or not 16 bytes in Base64")
        }
        guard request.header("Host") != nil else { return refuse(400, "no Host header") }
        if !settings.origins.isEmpty, let origin = request.header("Origin"),
           !settings.origins.contains(where: { $0.lowercased() == origin.lowercased() }) {
            return refuse(403, "origin \(origin) is not allowed")
        }
        let offered = request.headerTokens("Sec-WebSocket-Protocol")
        var subprotocol: String? = nil
        if !offered.isEmpty {
            guard let mqtt = offered.first(where: { mqttSubprotocols.contains($0.lowercased()) }) else {
                return refuse(400, "no MQTT subprotocol offered (\(offered.joined(separator: ", "))); this listener speaks mqtt")
            }
            subprotocol = mqtt
        }
        var head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        head += "Sec-WebSocket-Accept: \(acceptValue(forKey: key))\r\n"
        if let subprotocol { head += "Sec-WebSocket-Protocol: \(subprotocol)\r\n" }
        head += "\r\n"
        var forwardedFor: String? = nil
        if settings.trustForwardedFor, let first = request.headerTokens("X-Forwarded-For").first { forwardedFor = first }
        return .upgrade(response: Array(head.utf8), subprotocol: subprotocol, forwardedFor: forwardedFor)
    }

    /// A refusal with a plain-text body and Connection: close.
    public static func refuse(_ status: Int, _ reason: String, headers: [(String, String)] = []) -> Outcome {
        var response = HTTPResponse(status: status, contentType: "text/plain", body: Array((reason + "\n").utf8))
        response.headers = headers.map { (name: $0.0, value: $0.1) }
        return .refuse(status: status, reason: reason, response: response.bytes)
    }
}
