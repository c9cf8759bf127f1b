// Typed decoding errors. Each maps to the MQTT 5.0 reason code a broker answers with.

/// Why bytes could not be decoded into a packet.
public enum DecodeError: Error, Equatable, Sendable {
    /// Remaining length longer than 4 bytes, or a variable byte integer that is not minimal-safe.
    case malformedVariableByteInteger
    /// Fixed-header flag bits that the packet type reserves have the wrong value.
    case invalidFixedHeaderFlags
    /// Packet type 0 (reserved).
    case reservedPacketType
    /// QoS 3 in a PUBLISH, a will, or a subscription option.
    case invalidQoS
    /// A string that is not well-formed UTF-8, contains U+0000, or a surrogate [MQTT-1.5.4].
    case invalidUTF8
    /// The packet ended before a field it declares (also: property length past the end).
    case truncated
    /// Bytes left over after the last field of a packet that has a fixed layout.
    case trailingBytes
    /// Larger than the maximum packet size this side accepts.
    case packetTooLarge
    /// Unknown protocol name or level in CONNECT.
    case unsupportedProtocolVersion
    /// A v5 property identifier that does not exist, or that this packet may not carry.
    case invalidProperty
    /// A v5 property that may appear once was present twice.
    case duplicateProperty
    /// A property value out of its range (e.g. Receive Maximum 0, Payload Format 2).
    case invalidPropertyValue
    /// A topic name with wildcards, an empty topic, or one over 65535 bytes.
    case invalidTopicName
    /// A topic filter that breaks the wildcard rules, or an invalid `$share/` filter.
    case invalidTopicFilter
    /// Packet identifier 0 where a non-zero one is required.
    case invalidPacketIdentifier
    /// SUBSCRIBE/UNSUBSCRIBE with no topic filter.
    case emptySubscriptionList
    /// A field whose value the spec forbids (reserved bits in CONNECT flags or subscription options,
    /// will flags inconsistent, password without username in 3.1.1, ...).
    case protocolViolation
    /// A reason code that is not valid for this packet type.
    case invalidReasonCode

    /// A short explanation for the v5 Reason String of the DISCONNECT this error causes.
    public var explanation: String {
        switch self {
        case .malformedVariableByteInteger: return "malformed variable byte integer"
        case .invalidFixedHeaderFlags: return "reserved fixed header flags set"
        case .reservedPacketType: return "reserved packet type 0"
        case .invalidQoS: return "QoS 3"
        case .invalidUTF8: return "string is not well-formed UTF-8"
        case .truncated: return "packet shorter than its fields"
        case .trailingBytes: return "bytes after the last field of the packet"
        case .packetTooLarge: return "packet larger than the Maximum Packet Size"
        case .unsupportedProtocolVersion: return "unsupported protocol name or level"
        case .invalidProperty: return "property not allowed in this packet"
        case .duplicateProperty: return "property present twice"
        case .invalidPropertyValue: return "property value out of range"
        case .invalidTopicName: return "invalid Topic Name"
        case .invalidTopicFilter: return "invalid Topic Filter"
        case .invalidPacketIdentifier: return "Packet Identifier 0"
        case .emptySubscriptionList: return "no Topic Filter in the packet"
        case .protocolViolation: return "field value forbidden by the specification"
        case .invalidReasonCode: return "reason code not valid for this packet"
        }
    }

    /// The v5 reason code to answer with (DISCONNECT or CONNACK).
    public var reasonCode: ReasonCode {
        switch self {
        case .packetTooLarge: return .packetTooLarge
        case .unsupportedProtocolVersion: return .unsupportedProtocolVersion
        case .invalidTopicName: return .topicNameInvalid
        case .invalidTopicFilter: return .topicFilterInvalid
        case .protocolViolation, .duplicateProperty, .invalidPacketIdentifier, .invalidPropertyValue:
            return .protocolError
        default: return .malformedPacket
        }
    }
}
