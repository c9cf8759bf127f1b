// MQTT 5.0 properties: identifiers, their wire types, and the owned property set used by
// every packet except PUBLISH (PUBLISH uses the zero-copy `PublishProperties`).

/// A v5 property identifier [MQTT-2.2.2.2].
public enum PropertyID: UInt8, Sendable, CaseIterable {
    case payloadFormatIndicator = 0x01
    case messageExpiryInterval = 0x02
    case contentType = 0x03
    case responseTopic = 0x08
    case correlationData = 0x09
    case subscriptionIdentifier = 0x0B
    case sessionExpiryInterval = 0x11
    case assignedClientIdentifier = 0x12
    case serverKeepAlive = 0x13
    case authenticationMethod = 0x15
    case authenticationData = 0x16
    case requestProblemInformation = 0x17
    case willDelayInterval = 0x18
    case requestResponseInformation = 0x19
    case responseInformation = 0x1A
    case serverReference = 0x1C
    case reasonString = 0x1F
    case receiveMaximum = 0x21
    case topicAliasMaximum = 0x22
    case topicAlias = 0x23
    case maximumQoS = 0x24
    case retainAvailable = 0x25
    case userProperty = 0x26
    case maximumPacketSize = 0x27
    case wildcardSubscriptionAvailable = 0x28
    case subscriptionIdentifierAvailable = 0x29
    case sharedSubscriptionAvailable = 0x2A

    /// The wire type of the property value.
    public enum WireType: Sendable { case byte, twoByteInteger, fourByteInteger, variableByteInteger, utf8String, binaryData, utf8StringPair }
}

/// A user property: a name/value pair of UTF-8 strings; order and duplicates are significant.
public struct UserProperty: Hashable, Sendable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) { self.name = name; self.value = value }
}

/// The owned set of v5 properties of a CONNECT, CONNACK, will, PUBACK-family, SUBSCRIBE, SUBACK,
/// UNSUBSCRIBE, UNSUBACK, DISCONNECT or AUTH packet. `nil` means absent.
/// In 3.1/3.1.1 packets it is always empty.
///
/// The values live in a copy-on-write box that exists only once a property is set: most packets
/// carry none (PUBACK, PINGREQ, 3.1.1 traffic), and a `Packet` that holds 8 bytes here instead of
/// some 200 is cheap to return and move on the hot path, without allocating.
public struct Properties: Hashable, Sendable {
    var storage: Storage?

    public init() {}

    /// True when no property is present.
    public var isEmpty: Bool { storage.map { $0.values == Values() } ?? true }

    public static func == (lhs: Properties, rhs: Properties) -> Bool {
        if lhs.storage === rhs.storage { return true }
        return (lhs.storage?.values ?? Values()) == (rhs.storage?.values ?? Values())
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(storage?.values ?? Values()) }

    /// Changes the values, copying the box first when it is shared; setting a property to nil on
    /// an empty set allocates nothing.
    @inline(__always)
    mutating func modify(_ body: (inout Values) -> Void) {
        if storage == nil {
            var values = Values()
            body(&values)
            if values != Values() { storage = Storage(values) }
            return
        }
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage!.values) }
        body(&storage!.values)
    }

    /// The box. Invariant: its values change only while one `Properties` references it (`modify`).
    final class Storage: @unchecked Sendable {
        var values: Values
        init(_ values: Values) { self.values = values }
    }

    struct Values: Hashable, Sendable {
        var payloadFormatIndicator: UInt8?
        var messageExpiryInterval: UInt32?
        var contentType: String?
        var responseTopic: String?
        var correlationData: [UInt8]?
        var subscriptionIdentifiers: [UInt32] = []
        var sessionExpiryInterval: UInt32?
        var assignedClientIdentifier: String?
        var serverKeepAlive: UInt16?
        var authenticationMethod: String?
        var authenticationData: [UInt8]?
        var requestProblemInformation: UInt8?
        var willDelayInterval: UInt32?
        var requestResponseInformation: UInt8?
        var responseInformation: String?
        var serverReference: String?
        var reasonString: String?
        var receiveMaximum: UInt16?
        var topicAliasMaximum: UInt16?
        var topicAlias: UInt16?
        var maximumQoS: UInt8?
        var retainAvailable: UInt8?
        var userProperties: [UserProperty] = []
        var maximumPacketSize: UInt32?
        var wildcardSubscriptionAvailable: UInt8?
        var subscriptionIdentifierAvailable: UInt8?
        var sharedSubscriptionAvailable: UInt8?
    }

    public var payloadFormatIndicator: UInt8? {
        get { storage?.values.payloadFormatIndicator }
        set { modify { $0.payloadFormatIndicator = newValue } }
    }
    public var messageExpiryInterval: UInt32? {
        get { storage?.values.messageExpiryInterval }
        set { modify { $0.messageExpiryInterval = newValue } }
    }
    public var contentType: String? {
        get { storage?.values.contentType }
        set { modify { $0.contentType = newValue } }
    }
    public var responseTopic: String? {
        get { storage?.values.responseTopic }
        set { modify { $0.responseTopic = newValue } }
    }
    public var correlationData: [UInt8]? {
        get { storage?.values.correlationData }
        set { modify { $0.correlationData = newValue } }
    }
    /// Subscription identifiers (SUBSCRIBE carries at most one; a will never any).
    public var subscriptionIdentifiers: [UInt32] {
        get { storage?.values.subscriptionIdentifiers ?? [] }
        set { modify { $0.subscriptionIdentifiers = newValue } }
    }
    public var sessionExpiryInterval: UInt32? {
        get { storage?.values.sessionExpiryInterval }
        set { modify { $0.sessionExpiryInterval = newValue } }
    }
    public var assignedClientIdentifier: String? {
        get { storage?.values.assignedClientIdentifier }
        set { modify { $0.assignedClientIdentifier = newValue } }
    }
    public var serverKeepAlive: UInt16? {
        get { storage?.values.serverKeepAlive }
        set { modify { $0.serverKeepAlive = newValue } }
    }
    public var authenticationMethod: String? {
        get { storage?.values.authenticationMethod }
        set { modify { $0.authenticationMethod = newValue } }
    }
    public var authenticationData: [UInt8]? {
        get { storage?.values.authenticationData }
        set { modify { $0.authenticationData = newValue } }
    }
    public var requestProblemInformation: UInt8? {
        get { storage?.values.requestProblemInformation }
        set { modify { $0.requestProblemInformation = newValue } }
    }
    public var willDelayInterval: UInt32? {
        get { storage?.values.willDelayInterval }
        set { modify { $0.willDelayInterval = newValue } }
    }
    public var requestResponseInformation: UInt8? {
        get { storage?.values.requestResponseInformation }
        set { modify { $0.requestResponseInformation = newValue } }
    }
    public var responseInformation: String? {
        get { storage?.values.responseInformation }
        set { modify { $0.responseInformation = newValue } }
    }
    public var serverReference: String? {
        get { storage?.values.serverReference }
        set { modify { $0.serverReference = newValue } }
    }
    public var reasonString: String? {
        get { storage?.values.reasonString }
        set { modify { $0.reasonString = newValue } }
    }
    public var receiveMaximum: UInt16? {
        get { storage?.values.receiveMaximum }
        set { modify { $0.receiveMaximum = newValue } }
    }
    public var topicAliasMaximum: UInt16? {
        get { storage?.values.topicAliasMaximum }
        set { modify { $0.topicAliasMaximum = newValue } }
    }
    public var topicAlias: UInt16? {
        get { storage?.values.topicAlias }
        set { modify { $0.topicAlias = newValue } }
    }
    public var maximumQoS: UInt8? {
        get { storage?.values.maximumQoS }
        set { modify { $0.maximumQoS = newValue } }
    }
    public var retainAvailable: UInt8? {
        get { storage?.values.retainAvailable }
        set { modify { $0.retainAvailable = newValue } }
    }
    public var userProperties: [UserProperty] {
        get { storage?.values.userProperties ?? [] }
        set { modify { $0.userProperties = newValue } }
    }
    public var maximumPacketSize: UInt32? {
        get { storage?.values.maximumPacketSize }
        set { modify { $0.maximumPacketSize = newValue } }
    }
    public var wildcardSubscriptionAvailable: UInt8? {
        get { storage?.values.wildcardSubscriptionAvailable }
        set { modify { $0.wildcardSubscriptionAvailable = newValue } }
    }
    public var subscriptionIdentifierAvailable: UInt8? {
        get { storage?.values.subscriptionIdentifierAvailable }
        set { modify { $0.subscriptionIdentifierAvailable = newValue } }
    }
    public var sharedSubscriptionAvailable: UInt8? {
        get { storage?.values.sharedSubscriptionAvailable }
        set { modify { $0.sharedSubscriptionAvailable = newValue } }
    }
}

/// Which packet (or will) a property set belongs to; decides which identifiers are allowed.
public enum PropertyContext: Sendable {
    case connect, connack, publish, will, puback, pubrec, pubrel, pubcomp
    case subscribe, suback, unsubscribe, unsuback, disconnect, auth
}
