// What the broker's settings refuse in a PUBLISH, whoever sends it: an MQTT client or the HTTP
// publish API. One list of checks, so the API cannot drift from what clients are held to; each
// sender turns a refusal into its own answer (a protocol error, a PUBACK/PUBREC reason code, a 400).

import Codec

/// Why the broker's settings refuse a PUBLISH.
public enum PublishRefusal: Sendable, Equatable {
    /// QoS above max_qos [MQTT-3.2.2-11].
    case qosNotSupported
    /// Retain while retain_available is false [MQTT-3.2.2-14].
    case retainNotSupported
    /// A payload over message_size_limit (the limit in bytes).
    case overSizeLimit(Int)

    /// The v5 reason code a client is answered with.
    public var reasonCode: ReasonCode {
        switch self {
        case .qosNotSupported: .qosNotSupported
        case .retainNotSupported: .retainNotSupported
        // 0x95 (Packet too large) is not a PUBACK/PUBREC code; 0x97 (an imposed limit was exceeded) is.
        case .overSizeLimit: .quotaExceeded
        }
    }

    /// What is wrong, for a reason string, a log line or an HTTP answer.
    public var explanation: String {
        switch self {
        case .qosNotSupported: "QoS above max_qos"
        case .retainNotSupported: "retained messages are disabled"
        case .overSizeLimit(let limit): "payload over message_size_limit (\(limit) bytes)"
        }
    }
}

/// Where a PUBLISH from the broker itself (the HTTP API) went.
public enum PublishOutcome: Sendable, Equatable {
    /// Routed; `matched` tells whether any subscriber (here or on another shard) has it.
    case routed(matched: Bool)
    case refused(PublishRefusal)
}

extension PublishRefusal {
    /// The verdict of the settings `maximumQoS`, `retainAvailable` and `messageSizeLimit` on a
    /// PUBLISH: nil when it may be routed.
    @inline(__always)
    public static func check(qos: QoS, retain: Bool, payloadCount: Int,
                             maximumQoS: QoS, retainAvailable: Bool, messageSizeLimit: Int) -> PublishRefusal? {
        if qos.rawValue > maximumQoS.rawValue { return .qosNotSupported }
        if retain && !retainAvailable { return .retainNotSupported }
        if messageSizeLimit > 0 && payloadCount > messageSizeLimit { return .overSizeLimit(messageSizeLimit) }
        return nil
    }
}

extension BrokerConfig {
    /// The settings' verdict on a PUBLISH: nil when it may be routed.
    public func refusal(qos: QoS, retain: Bool, payloadCount: Int) -> PublishRefusal? {
        PublishRefusal.check(qos: qos, retain: retain, payloadCount: payloadCount, maximumQoS: maximumQoS,
                             retainAvailable: retainAvailable, messageSizeLimit: messageSizeLimit)
    }
}

extension ShardCore {
    /// `BrokerConfig.refusal` on the data path: the three fields read in place (calling a method
    /// on `config`, a class's stored struct, would copy the whole configuration, retains and all).
    @inline(__always)
    func publishRefusal(qos: QoS, retain: Bool, payloadCount: Int) -> PublishRefusal? {
        PublishRefusal.check(qos: qos, retain: retain, payloadCount: payloadCount, maximumQoS: config.maximumQoS,
                             retainAvailable: config.retainAvailable, messageSizeLimit: config.messageSizeLimit)
    }
}
