// The 15 MQTT control packets as Swift values. All are owned values except `Publish`,
// whose topic, properties and payload point into the decoder's input (zero copy).

/// The will message of a CONNECT.
public struct Will: Hashable, Sendable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool
    /// v5 will properties (Will Delay Interval, Payload Format, Message Expiry, Content Type,
    /// Response Topic, Correlation Data, User Properties).
    public var properties: Properties
    public init(topic: String, payload: [UInt8], qos: QoS = .atMostOnce, retain: Bool = false, properties: Properties = Properties()) {
        self.topic = topic; self.payload = payload; self.qos = qos; self.retain = retain; self.properties = properties
    }
}

/// CONNECT.
public struct Connect: Hashable, Sendable {
    public var version: ProtocolVersion
    /// The protocol level has bit 7 set (3.1/3.1.1): a bridge says it is one (mosquitto's
    /// `try_private`); it is then sent nothing it published itself. Decoded and encoded.
    public var isBridge = false
    /// Clean Session (3.1.1) / Clean Start (5.0).
    public var cleanStart: Bool
    public var keepAlive: UInt16
    public var clientID: String
    public var will: Will?
    public var username: String?
    public var password: [UInt8]?
    public var properties: Properties
    public init(version: ProtocolVersion = .v3_1_1, cleanStart: Bool = true, keepAlive: UInt16 = 60, clientID: String,
                will: Will? = nil, username: String? = nil, password: [UInt8]? = nil, properties: Properties = Properties()) {
        self.version = version; self.cleanStart = cleanStart; self.keepAlive = keepAlive; self.clientID = clientID
        self.will = will; self.username = username; self.password = password; self.properties = properties
    }
}

/// CONNACK. For 3.1/3.1.1 `reasonCode` is encoded as the nearest `ConnectReturnCode`.
public struct ConnAck: Hashable, Sendable {
    public var sessionPresent: Bool
    public var reasonCode: ReasonCode
    public var properties: Properties
    public init(sessionPresent: Bool = false, reasonCode: ReasonCode = .success, properties: Properties = Properties()) {
        self.sessionPresent = sessionPresent; self.reasonCode = reasonCode; self.properties = properties
    }
}

/// The v5 properties of a PUBLISH, decoded without allocating: the scalar ones are parsed,
/// everything is validated, and `raw` keeps the property bytes as on the wire so a broker can
/// pass Content Type, Response Topic, Correlation Data and User Properties through unchanged.
public struct PublishProperties: @unchecked Sendable {
    /// The property bytes without their length prefix (empty for 3.1.1 or no properties).
    public var raw: UnsafeRawBufferPointer
    public var payloadFormatIndicator: UInt8?
    public var messageExpiryInterval: UInt32?
    public var topicAlias: UInt16?
    /// Number of Subscription Identifier properties present (a client must not send any).
    public var subscriptionIdentifierCount: Int
    public init(raw: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        self.raw = raw; self.payloadFormatIndicator = nil; self.messageExpiryInterval = nil
        self.topicAlias = nil; self.subscriptionIdentifierCount = 0
    }
}

/// PUBLISH, as a view into the bytes it was decoded from: valid only until the decoder's
/// buffer is reused. The topic may be empty in v5 when a Topic Alias stands for it.
public struct Publish: @unchecked Sendable {
    public var dup: Bool
    public var qos: QoS
    public var retain: Bool
    /// The topic name bytes (validated UTF-8, no wildcards).
    public var topic: UnsafeRawBufferPointer
    /// 0 for QoS 0.
    public var packetID: UInt16
    public var properties: PublishProperties
    public var payload: UnsafeRawBufferPointer
    public init(dup: Bool = false, qos: QoS, retain: Bool = false, topic: UnsafeRawBufferPointer, packetID: UInt16 = 0,
                properties: PublishProperties = PublishProperties(), payload: UnsafeRawBufferPointer) {
        self.dup = dup; self.qos = qos; self.retain = retain; self.topic = topic
        self.packetID = packetID; self.properties = properties; self.payload = payload
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share this shape.
public struct PublishAck: Hashable, Sendable {
    public var packetID: UInt16
    public var reasonCode: ReasonCode
    public var properties: Properties
    public init(packetID: UInt16, reasonCode: ReasonCode = .success, properties: Properties = Properties()) {
        self.packetID = packetID; self.reasonCode = reasonCode; self.properties = properties
    }
}

/// Retain Handling subscription option (v5).
public enum RetainHandling: UInt8, Sendable {
    case sendOnSubscribe = 0
    case sendOnNewSubscribe = 1
    case doNotSend = 2
}

/// Subscription options byte [MQTT-3.8.3.1]. For 3.1.1 only `qos` is meaningful.
public struct SubscriptionOptions: Hashable, Sendable {
    public var qos: QoS
    public var noLocal: Bool
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling
    public init(qos: QoS, noLocal: Bool = false, retainAsPublished: Bool = false, retainHandling: RetainHandling = .sendOnSubscribe) {
        self.qos = qos; self.noLocal = noLocal; self.retainAsPublished = retainAsPublished; self.retainHandling = retainHandling
    }
}

/// One topic filter of a SUBSCRIBE.
public struct SubscriptionRequest: Hashable, Sendable {
    /// The filter exactly as sent (a `$share/group/filter` stays in this form).
    public var filter: String
    public var options: SubscriptionOptions
    public init(filter: String, options: SubscriptionOptions) { self.filter = filter; self.options = options }
}

/// SUBSCRIBE. Filters are validated as UTF-8 but *not* as topic filters: a broker must answer an
/// invalid filter with a SUBACK failure code (v5 0x8F) rather than by closing the connection, so the
/// session layer calls `TopicValidation.validateFilter` on each.
public struct Subscribe: Hashable, Sendable {
    public var packetID: UInt16
    public var subscriptions: [SubscriptionRequest]
    public var properties: Properties
    public init(packetID: UInt16, subscriptions: [SubscriptionRequest], properties: Properties = Properties()) {
        self.packetID = packetID; self.subscriptions = subscriptions; self.properties = properties
    }
}

/// SUBACK: one reason code per requested filter (granted QoS 0/1/2 or a failure; 3.1.1 failure is 0x80).
public struct SubAck: Hashable, Sendable {
    public var packetID: UInt16
    public var reasonCodes: [ReasonCode]
    public var properties: Properties
    public init(packetID: UInt16, reasonCodes: [ReasonCode], properties: Properties = Properties()) {
        self.packetID = packetID; self.reasonCodes = reasonCodes; self.properties = properties
    }
}

/// UNSUBSCRIBE.
public struct Unsubscribe: Hashable, Sendable {
    public var packetID: UInt16
    public var filters: [String]
    public var properties: Properties
    public init(packetID: UInt16, filters: [String], properties: Properties = Properties()) {
        self.packetID = packetID; self.filters = filters; self.properties = properties
    }
}

/// UNSUBACK: v5 carries one reason code per filter; 3.1.1 has none (`reasonCodes` is empty).
public struct UnsubAck: Hashable, Sendable {
    public var packetID: UInt16
    public var reasonCodes: [ReasonCode]
    public var properties: Properties
    public init(packetID: UInt16, reasonCodes: [ReasonCode] = [], properties: Properties = Properties()) {
        self.packetID = packetID; self.reasonCodes = reasonCodes; self.properties = properties
    }
}

/// DISCONNECT (v5 carries a reason code and properties; 3.1.1 is two bytes).
public struct Disconnect: Hashable, Sendable {
    public var reasonCode: ReasonCode
    public var properties: Properties
    public init(reasonCode: ReasonCode = .success, properties: Properties = Properties()) {
        self.reasonCode = reasonCode; self.properties = properties
    }
}

/// AUTH (v5 only).
public struct Auth: Hashable, Sendable {
    public var reasonCode: ReasonCode
    public var properties: Properties
    public init(reasonCode: ReasonCode = .success, properties: Properties = Properties()) {
        self.reasonCode = reasonCode; self.properties = properties
    }
}

/// Any decoded MQTT control packet.
public enum Packet: @unchecked Sendable {
    case connect(Connect)
    case connack(ConnAck)
    case publish(Publish)
    case puback(PublishAck)
    case pubrec(PublishAck)
    case pubrel(PublishAck)
    case pubcomp(PublishAck)
    case subscribe(Subscribe)
    case suback(SubAck)
    case unsubscribe(Unsubscribe)
    case unsuback(UnsubAck)
    case pingreq
    case pingresp
    case disconnect(Disconnect)
    case auth(Auth)

    public var type: PacketType {
        switch self {
        case .connect: .connect
        case .connack: .connack
        case .publish: .publish
        case .puback: .puback
        case .pubrec: .pubrec
        case .pubrel: .pubrel
        case .pubcomp: .pubcomp
        case .subscribe: .subscribe
        case .suback: .suback
        case .unsubscribe: .unsubscribe
        case .unsuback: .unsuback
        case .pingreq: .pingreq
        case .pingresp: .pingresp
        case .disconnect: .disconnect
        case .auth: .auth
        }
    }
}
