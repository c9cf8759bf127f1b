// The JSON body of a webhook's POST: one event in EMQX's field names (its rule engine's and
// webhook's `event`, `clientid`, `username`, `topic`, `payload`, `qos`, `timestamp`, …).

import Broker
import ApusCrypto

public enum WebhookBody {
    /// The body for `event` from node `node`.
    public static func json(_ e: BrokerEvent, node: String) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("event", .string(e.kind.name)),
            ("clientid", .string(e.clientID)),
            ("username", e.username.map { .string($0) } ?? .null),
        ]
        switch e.kind {
        case .connected:
            fields += [("proto_ver", .number(Double(e.protocolVersion))), ("keepalive", .number(Double(e.keepAlive))),
                       ("clean_start", .bool(e.cleanStart)), ("connected_at", .number(Double(e.timestamp)))]
        case .disconnected:
            fields += [("reason", .string(e.reason)), ("disconnected_at", .number(Double(e.timestamp)))]
        case .connack:
            fields += [("reason_code", .string(e.reason)), ("proto_ver", .number(Double(e.protocolVersion)))]
        case .subscribed:
            fields += [("topic", .string(e.topic)), ("qos", .number(Double(e.qos)))]
        case .unsubscribed:
            fields += [("topic", .string(e.topic))]
        case .publish, .delivered, .dropped:
            fields += [("topic", .string(e.topic)), ("qos", .number(Double(e.qos))), ("retain", .bool(e.retain))]
            if let text = String(validating: e.payload, as: UTF8.self) {
                fields.append(("payload", .string(text)))
            } else {
                fields += [("payload", .string(Base64.encode(e.payload))), ("payload_encoding", .string("base64"))]
            }
            if e.kind == .publish { fields.append(("publish_received_at", .number(Double(e.timestamp)))) }
            if e.kind == .delivered { fields.append(("from_clientid", .string(e.fromClientID))) }
            if e.kind == .dropped { fields.append(("reason", .string(e.reason))) }
        }
        fields += [("timestamp", .number(Double(e.timestamp))), ("node", .string(node))]
        return .object(fields)
    }
}
