// Core MQTT enumerations shared by every packet: versions, QoS, packet types, reason codes.

/// The protocol level byte of CONNECT: 3 = MQTT 3.1, 4 = MQTT 3.1.1, 5 = MQTT 5.0.
public enum ProtocolVersion: UInt8, Sendable, Comparable {
    case v3_1 = 3
    case v3_1_1 = 4
    case v5 = 5

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Quality of service of a PUBLISH or a subscription.
public enum QoS: UInt8, Sendable, Comparable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The 4-bit control packet type of the fixed header.
public enum PacketType: UInt8, Sendable {
    case connect = 1, connack, publish, puback, pubrec, pubrel, pubcomp
    case subscribe, suback, unsubscribe, unsuback, pingreq, pingresp, disconnect, auth
}

/// An MQTT 5.0 reason code (also used internally to say why a 3.1.1 client was refused).
public struct ReasonCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let success = ReasonCode(rawValue: 0x00)  // also normal disconnection, granted QoS 0
    public static let grantedQoS1 = ReasonCode(rawValue: 0x01)
    public static let grantedQoS2 = ReasonCode(rawValue: 0x02)
    public static let disconnectWithWill = ReasonCode(rawValue: 0x04)
    public static let noMatchingSubscribers = ReasonCode(rawValue: 0x10)
    public static let noSubscriptionExisted = ReasonCode(rawValue: 0x11)
    public static let continueAuthentication = ReasonCode(rawValue: 0x18)
    public static let reAuthenticate = ReasonCode(rawValue: 0x19)
    public static let unspecifiedError = ReasonCode(rawValue: 0x80)
    public static let malformedPacket = ReasonCode(rawValue: 0x81)
    public static let protocolError = ReasonCode(rawValue: 0x82)
    public static let implementationSpecificError = ReasonCode(rawValue: 0x83)
    public static let unsupportedProtocolVersion = ReasonCode(rawValue: 0x84)
    public static let clientIdentifierNotValid = ReasonCode(rawValue: 0x85)
    public static let badUserNameOrPassword = ReasonCode(rawValue: 0x86)
    public static let notAuthorized = ReasonCode(rawValue: 0x87)
    public static let serverUnavailable = ReasonCode(rawValue: 0x88)
    public static let serverBusy = ReasonCode(rawValue: 0x89)
    public static let banned = ReasonCode(rawValue: 0x8A)
    public static let serverShuttingDown = ReasonCode(rawValue: 0x8B)
    public static let badAuthenticationMethod = ReasonCode(rawValue: 0x8C)
    public static let keepAliveTimeout = ReasonCode(rawValue: 0x8D)
    public static let sessionTakenOver = ReasonCode(rawValue: 0x8E)
    public static let topicFilterInvalid = ReasonCode(rawValue: 0x8F)
    public static let topicNameInvalid = ReasonCode(rawValue: 0x90)
    public static let packetIdentifierInUse = ReasonCode(rawValue: 0x91)
    public static let packetIdentifierNotFound = ReasonCode(rawValue: 0x92)
    public static let receiveMaximumExceeded = ReasonCode(rawValue: 0x93)
    public static let topicAliasInvalid = ReasonCode(rawValue: 0x94)
    public static let packetTooLarge = ReasonCode(rawValue: 0x95)
    public static let messageRateTooHigh = ReasonCode(rawValue: 0x96)
    public static let quotaExceeded = ReasonCode(rawValue: 0x97)
    public static let administrativeAction = ReasonCode(rawValue: 0x98)
    public static let payloadFormatInvalid = ReasonCode(rawValue: 0x99)
    public static let retainNotSupported = ReasonCode(rawValue: 0x9A)
    public static let qosNotSupported = ReasonCode(rawValue: 0x9B)
    public static let useAnotherServer = ReasonCode(rawValue: 0x9C)
    public static let serverMoved = ReasonCode(rawValue: 0x9D)
    public static let sharedSubscriptionsNotSupported = ReasonCode(rawValue: 0x9E)
    public static let connectionRateExceeded = ReasonCode(rawValue: 0x9F)
    public static let maximumConnectTime = ReasonCode(rawValue: 0xA0)
    public static let subscriptionIdentifiersNotSupported = ReasonCode(rawValue: 0xA1)
    public static let wildcardSubscriptionsNotSupported = ReasonCode(rawValue: 0xA2)

    public var isError: Bool { rawValue >= 0x80 }

    /// The name the MQTT 5.0 specification gives this code (section 2.4); the default Reason String.
    public var name: String {
        switch rawValue {
        case 0x00: return "Success"
        case 0x01: return "Granted QoS 1"
        case 0x02: return "Granted QoS 2"
        case 0x04: return "Disconnect with Will Message"
        case 0x10: return "No matching subscribers"
        case 0x11: return "No subscription existed"
        case 0x18: return "Continue authentication"
        case 0x19: return "Re-authenticate"
        case 0x80: return "Unspecified error"
        case 0x81: return "Malformed Packet"
        case 0x82: return "Protocol Error"
        case 0x83: return "Implementation specific error"
        case 0x84: return "Unsupported Protocol Version"
        case 0x85: return "Client Identifier not valid"
        case 0x86: return "Bad User Name or Password"
        case 0x87: return "Not authorized"
        case 0x88: return "Server unavailable"
        case 0x89: return "Server busy"
        case 0x8A: return "Banned"
        case 0x8B: return "Server shutting down"
        case 0x8C: return "Bad authentication method"
        case 0x8D: return "Keep Alive timeout"
        case 0x8E: return "Session taken over"
        case 0x8F: return "Topic Filter invalid"
        case 0x90: return "Topic Name invalid"
        case 0x91: return "Packet Identifier in use"
        case 0x92: return "Packet Identifier not found"
        case 0x93: return "Receive Maximum exceeded"
        case 0x94: return "Topic Alias invalid"
        case 0x95: return "Packet too large"
        case 0x96: return "Message rate too high"
        case 0x97: return "Quota exceeded"
        case 0x98: return "Administrative action"
        case 0x99: return "Payload format invalid"
        case 0x9A: return "Retain not supported"
        case 0x9B: return "QoS not supported"
        case 0x9C: return "Use another server"
        case 0x9D: return "Server moved"
        case 0x9E: return "Shared Subscriptions not supported"
        case 0x9F: return "Connection rate exceeded"
        case 0xA0: return "Maximum connect time"
        case 0xA1: return "Subscription Identifiers not supported"
        case 0xA2: return "Wildcard Subscriptions not supported"
        default: return "Reason code \(description)"
        }
    }
    public var description: String {
        let hex = "0123456789ABCDEF"
        let hi = hex[hex.index(hex.startIndex, offsetBy: Int(rawValue >> 4))]
        let lo = hex[hex.index(hex.startIndex, offsetBy: Int(rawValue & 0xF))]
        return "0x\(hi)\(lo)"
    }
}

/// MQTT 3.1.1 CONNACK return codes (v3.1 and v3.1.1 only).
public enum ConnectReturnCode: UInt8, Sendable {
    case accepted = 0
    case unacceptableProtocolVersion = 1
    case identifierRejected = 2
    case serverUnavailable = 3
    case badUserNameOrPassword = 4
    case notAuthorized = 5

    /// The 3.1.1 return code closest to a v5 reason code, for refusing older clients.
    public init(reason: ReasonCode) {
        switch reason {
        case .success: self = .accepted
        case .unsupportedProtocolVersion: self = .unacceptableProtocolVersion
        case .clientIdentifierNotValid: self = .identifierRejected
        case .badUserNameOrPassword: self = .badUserNameOrPassword
        case .notAuthorized, .banned, .badAuthenticationMethod: self = .notAuthorized
        default: self = .serverUnavailable
        }
    }
}
