// The body of `POST /api/v5/publish`, as EMQX defines it (`POST /api/v5/publish/bulk`: an array of them):
//   {"topic": "t", "payload": "...", "payload_encoding": "plain"|"base64", "qos": 0, "retain": false,
//    "properties": {"payload_format_indicator": 1, "message_expiry_interval": 60, "content_type": "...",
//                   "response_topic": "...", "correlation_data": "...", "user_properties": {"k": "v"}}}

import ApusCrypto
import Codec

public struct PublishRequest: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool
    /// The v5 PUBLISH property block (without its length prefix), as the broker routes it.
    public var properties: [UInt8]

    /// Decodes and validates a request body; the error is a message for a 400 answer.
    public static func decode(_ body: [UInt8]) -> Result<PublishRequest, PublishRequestError> {
        guard let json = JSONValue.parse(body) else { return .failure(.init("body is not a JSON object")) }
        return decode(json: json)
    }

    /// Decodes the body of `POST /api/v5/publish/bulk`: a non-empty JSON array of publish bodies.
    /// One bad element fails the whole batch (as EMQX does: nothing is published), its error
    /// naming the element's index.
    public static func decodeBatch(_ body: [UInt8]) -> Result<[PublishRequest], PublishRequestError> {
        guard case .array(let elements)? = JSONValue.parse(body) else { return .failure(.init("body is not a JSON array")) }
        guard !elements.isEmpty else { return .failure(.init("the batch is empty")) }
        var requests: [PublishRequest] = []
        requests.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            switch decode(json: element) {
            case .success(let request): requests.append(request)
            case .failure(let error): return .failure(.init("message \(i): \(error.message)"))
            }
        }
        return .success(requests)
    }

    /// Decodes and validates one publish body, already parsed.
    public static func decode(json: JSONValue) -> Result<PublishRequest, PublishRequestError> {
        guard case .object = json else { return .failure(.init("body is not a JSON object")) }
        guard let topic = json["topic"]?.string else { return .failure(.init("topic is required")) }
        guard Array(topic.utf8).withUnsafeBytes({ TopicValidation.isValidTopicName($0) }) else {
            return .failure(.init("topic is not a valid topic name"))
        }
        let text = json["payload"]?.string ?? ""
        var payload = Array(text.utf8)
        switch json["payload_encoding"]?.string ?? "plain" {
        case "plain": break
        case "base64":
            guard let decoded = Base64.decode(text) else { return .failure(.init("payload is not valid base64")) }
            payload = decoded
        default: return .failure(.init("payload_encoding is plain or base64"))
        }
        let qosNumber = json["qos"]?.number ?? 0
        guard qosNumber == qosNumber.rounded(), let qos = QoS(rawValue: UInt8(clamping: Int(qosNumber))), qosNumber >= 0 else {
            return .failure(.init("qos is 0, 1 or 2"))
        }
        var properties = Properties()
        if let p = json["properties"] {
            guard case .object = p else { return .failure(.init("properties is an object")) }
            if let v = p["payload_format_indicator"]?.number {
                guard v == 0 || v == 1 else { return .failure(.init("payload_format_indicator is 0 or 1")) }
                properties.payloadFormatIndicator = UInt8(v)
                if v == 1 && String(validating: payload, as: UTF8.self) == nil {
                    return .failure(.init("payload is not UTF-8 but payload_format_indicator is 1"))
                }
            }
            if let v = p["message_expiry_interval"]?.number {
                guard v >= 0 && v <= Double(UInt32.max) else { return .failure(.init("message_expiry_interval out of range")) }
                properties.messageExpiryInterval = UInt32(v)
            }
            properties.contentType = p["content_type"]?.string
            if let topic = p["response_topic"]?.string {
                guard Array(topic.utf8).withUnsafeBytes({ TopicValidation.isValidTopicName($0) }) else {
                    return .failure(.init("response_topic is not a valid topic name"))
                }
                properties.responseTopic = topic
            }
            properties.correlationData = p["correlation_data"]?.string.map { Array($0.utf8) }
            if case .object(let pairs)? = p["user_properties"] {
                for (key, value) in pairs {
                    guard let v = value.string else { return .failure(.init("user_properties values are strings")) }
                    properties.userProperties.append(UserProperty(key, v))
                }
            }
        }
        var block = ByteBuffer()
        defer { block.deallocate() }
        properties.encode(into: &block)
        // Drop the length prefix: the broker routes bare property blocks.
        block.moveReaderIndex(forwardBy: variableByteIntegerLength(properties.encodedLength()))
        return .success(PublishRequest(topic: topic, payload: payload, qos: qos, retain: json["retain"]?.bool ?? false,
                                       properties: block.readableArray()))
    }
}

public struct PublishRequestError: Error, Equatable, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
}
