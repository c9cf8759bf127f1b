// Decoding and encoding of v5 property blocks: wire types, which packet may carry which property,
// duplicates, value ranges. The PUBLISH variant validates without allocating.

extension PropertyID {
    /// The wire type of the property value [MQTT-2.2.2.2].
    @inlinable public var wireType: WireType {
        switch self {
        case .payloadFormatIndicator, .requestProblemInformation, .requestResponseInformation, .maximumQoS,
             .retainAvailable, .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable:
            return .byte
        case .serverKeepAlive, .receiveMaximum, .topicAliasMaximum, .topicAlias:
            return .twoByteInteger
        case .messageExpiryInterval, .sessionExpiryInterval, .willDelayInterval, .maximumPacketSize:
            return .fourByteInteger
        case .subscriptionIdentifier:
            return .variableByteInteger
        case .contentType, .responseTopic, .assignedClientIdentifier, .authenticationMethod, .responseInformation,
             .serverReference, .reasonString:
            return .utf8String
        case .correlationData, .authenticationData:
            return .binaryData
        case .userProperty:
            return .utf8StringPair
        }
    }

    /// Whether a packet (or will) of `context` may carry this property.
    @inlinable public func isAllowed(in context: PropertyContext) -> Bool {
        switch self {
        case .payloadFormatIndicator, .messageExpiryInterval, .contentType, .responseTopic, .correlationData:
            return context == .publish || context == .will
        case .subscriptionIdentifier: return context == .publish || context == .subscribe
        case .sessionExpiryInterval: return context == .connect || context == .connack || context == .disconnect
        case .assignedClientIdentifier, .serverKeepAlive, .responseInformation, .maximumQoS, .retainAvailable,
             .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable:
            return context == .connack
        case .authenticationMethod, .authenticationData: return context == .connect || context == .connack || context == .auth
        case .requestProblemInformation, .requestResponseInformation: return context == .connect
        case .willDelayInterval: return context == .will
        case .serverReference: return context == .connack || context == .disconnect
        case .reasonString:
            switch context {
            case .connect, .publish, .will, .subscribe, .unsubscribe: return false
            default: return true
            }
        case .receiveMaximum, .topicAliasMaximum, .maximumPacketSize: return context == .connect || context == .connack
        case .topicAlias: return context == .publish
        case .userProperty: return true
        }
    }

    /// May appear more than once in `context`.
    @inlinable func mayRepeat(in context: PropertyContext) -> Bool {
        self == .userProperty || (self == .subscriptionIdentifier && context == .publish)
    }
}

extension Properties {
    /// Decodes a property block (length prefix included) for a packet of `context`.
    static func decode(from reader: inout ByteReader, context: PropertyContext) throws(DecodeError) -> Properties {
        let length = try reader.readMinimalVariableByteInteger()
        guard length <= reader.remaining else { throw .truncated }
        var block = ByteReader(try reader.readBytes(length))
        var p = Properties()
        var seen: UInt64 = 0
        while !block.isAtEnd {
            let raw = try block.readMinimalVariableByteInteger()
            guard raw < 0x80, let id = PropertyID(rawValue: UInt8(raw)), id.isAllowed(in: context) else { throw .invalidProperty }
            let bit: UInt64 = 1 << UInt64(raw & 63)
            if seen & bit != 0 && !id.mayRepeat(in: context) { throw .duplicateProperty }
            seen |= bit
            switch id {
            case .payloadFormatIndicator: p.payloadFormatIndicator = try flag(&block)
            case .messageExpiryInterval: p.messageExpiryInterval = try block.readUInt32()
            case .contentType: p.contentType = try block.readString()
            case .responseTopic:
                let view = try block.readStringView()
                guard TopicValidation.isValidTopicName(view) else { throw .invalidTopicName }
                p.responseTopic = String(decoding: view, as: UTF8.self)
            case .correlationData: p.correlationData = try block.readBinary()
            case .subscriptionIdentifier:
                let v = try block.readMinimalVariableByteInteger()
                guard v > 0 else { throw .invalidPropertyValue }
                p.subscriptionIdentifiers.append(UInt32(v))
            case .sessionExpiryInterval: p.sessionExpiryInterval = try block.readUInt32()
            case .assignedClientIdentifier: p.assignedClientIdentifier = try block.readString()
            case .serverKeepAlive: p.serverKeepAlive = try block.readUInt16()
            case .authenticationMethod: p.authenticationMethod = try block.readString()
            case .authenticationData: p.authenticationData = try block.readBinary()
            case .requestProblemInformation: p.requestProblemInformation = try flag(&block)
            case .willDelayInterval: p.willDelayInterval = try block.readUInt32()
            case .requestResponseInformation: p.requestResponseInformation = try flag(&block)
            case .responseInformation: p.responseInformation = try block.readString()
            case .serverReference: p.serverReference = try block.readString()
            case .reasonString: p.reasonString = try block.readString()
            case .receiveMaximum:
                let v = try block.readUInt16()
                guard v > 0 else { throw .invalidPropertyValue }
                p.receiveMaximum = v
            case .topicAliasMaximum: p.topicAliasMaximum = try block.readUInt16()
            case .topicAlias:
                let v = try block.readUInt16()
                guard v > 0 else { throw .invalidPropertyValue }
                p.topicAlias = v
            case .maximumQoS: p.maximumQoS = try flag(&block)
            case .retainAvailable: p.retainAvailable = try flag(&block)
            case .userProperty:
                let name = try block.readString()
                let value = try block.readString()
                p.userProperties.append(UserProperty(name, value))
            case .maximumPacketSize:
                let v = try block.readUInt32()
                guard v > 0 else { throw .invalidPropertyValue }
                p.maximumPacketSize = v
            case .wildcardSubscriptionAvailable: p.wildcardSubscriptionAvailable = try flag(&block)
            case .subscriptionIdentifierAvailable: p.subscriptionIdentifierAvailable = try flag(&block)
            case .sharedSubscriptionAvailable: p.sharedSubscriptionAvailable = try flag(&block)
            }
        }
        if context == .subscribe && p.subscriptionIdentifiers.count > 1 { throw .duplicateProperty }
        return p
    }

    /// A byte property whose only values are 0 and 1.
    static func flag(_ reader: inout ByteReader) throws(DecodeError) -> UInt8 {
        let v = try reader.readByte()
        guard v <= 1 else { throw .invalidPropertyValue }
        return v
    }

    /// The length of the encoded property block, without its variable-byte-integer length prefix.
    public func encodedLength() -> Int {
        var n = 0
        func string(_ s: String?) { if let s { n += 3 + s.utf8.count } }
        func binary(_ b: [UInt8]?) { if let b { n += 3 + b.count } }
        if payloadFormatIndicator != nil { n += 2 }
        if messageExpiryInterval != nil { n += 5 }
        string(contentType)
        string(responseTopic)
        binary(correlationData)
        for id in subscriptionIdentifiers { n += 1 + variableByteIntegerLength(Int(id)) }
        if sessionExpiryInterval != nil { n += 5 }
        string(assignedClientIdentifier)
        if serverKeepAlive != nil { n += 3 }
        string(authenticationMethod)
        binary(authenticationData)
        if requestProblemInformation != nil { n += 2 }
        if willDelayInterval != nil { n += 5 }
        if requestResponseInformation != nil { n += 2 }
        string(responseInformation)
        string(serverReference)
        string(reasonString)
        if receiveMaximum != nil { n += 3 }
        if topicAliasMaximum != nil { n += 3 }
        if topicAlias != nil { n += 3 }
        if maximumQoS != nil { n += 2 }
        if retainAvailable != nil { n += 2 }
        for u in userProperties { n += 1 + 2 + u.name.utf8.count + 2 + u.value.utf8.count }
        if maximumPacketSize != nil { n += 5 }
        if wildcardSubscriptionAvailable != nil { n += 2 }
        if subscriptionIdentifierAvailable != nil { n += 2 }
        if sharedSubscriptionAvailable != nil { n += 2 }
        return n
    }

    /// Writes the property block with its length prefix, properties in identifier order.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeVariableByteInteger(encodedLength())
        func byte(_ id: PropertyID, _ v: UInt8?) { if let v { buffer.writeByte(id.rawValue); buffer.writeByte(v) } }
        func u16(_ id: PropertyID, _ v: UInt16?) { if let v { buffer.writeByte(id.rawValue); buffer.writeUInt16(v) } }
        func u32(_ id: PropertyID, _ v: UInt32?) { if let v { buffer.writeByte(id.rawValue); buffer.writeUInt32(v) } }
        func string(_ id: PropertyID, _ v: String?) { if let v { buffer.writeByte(id.rawValue); buffer.writeString(v) } }
        func binary(_ id: PropertyID, _ v: [UInt8]?) {
            if let v { buffer.writeByte(id.rawValue); v.withUnsafeBytes { buffer.writeLengthPrefixed($0) } }
        }
        byte(.payloadFormatIndicator, payloadFormatIndicator)
        u32(.messageExpiryInterval, messageExpiryInterval)
        string(.contentType, contentType)
        string(.responseTopic, responseTopic)
        binary(.correlationData, correlationData)
        for id in subscriptionIdentifiers {
            buffer.writeByte(PropertyID.subscriptionIdentifier.rawValue)
            buffer.writeVariableByteInteger(Int(id))
        }
        u32(.sessionExpiryInterval, sessionExpiryInterval)
        string(.assignedClientIdentifier, assignedClientIdentifier)
        u16(.serverKeepAlive, serverKeepAlive)
        string(.authenticationMethod, authenticationMethod)
        binary(.authenticationData, authenticationData)
        byte(.requestProblemInformation, requestProblemInformation)
        u32(.willDelayInterval, willDelayInterval)
        byte(.requestResponseInformation, requestResponseInformation)
        string(.responseInformation, responseInformation)
        string(.serverReference, serverReference)
        string(.reasonString, reasonString)
        u16(.receiveMaximum, receiveMaximum)
        u16(.topicAliasMaximum, topicAliasMaximum)
        u16(.topicAlias, topicAlias)
        byte(.maximumQoS, maximumQoS)
        byte(.retainAvailable, retainAvailable)
        for u in userProperties {
            buffer.writeByte(PropertyID.userProperty.rawValue)
            buffer.writeString(u.name)
            buffer.writeString(u.value)
        }
        u32(.maximumPacketSize, maximumPacketSize)
        byte(.wildcardSubscriptionAvailable, wildcardSubscriptionAvailable)
        byte(.subscriptionIdentifierAvailable, subscriptionIdentifierAvailable)
        byte(.sharedSubscriptionAvailable, sharedSubscriptionAvailable)
    }
}

extension PublishProperties {
    /// Validates a PUBLISH property block (length prefix included) and extracts the scalars,
    /// keeping `raw` as a view: no allocation.
    @inlinable
    static func decode(from reader: inout ByteReader) throws(DecodeError) -> PublishProperties {
        let length = try reader.readMinimalVariableByteInteger()
        guard length <= reader.remaining else { throw .truncated }
        let raw = try reader.readBytes(length)
        var block = ByteReader(raw)
        var p = PublishProperties(raw: raw)
        var seen: UInt64 = 0
        while !block.isAtEnd {
            let rawID = try block.readMinimalVariableByteInteger()
            guard rawID < 0x80, let id = PropertyID(rawValue: UInt8(rawID)), id.isAllowed(in: .publish) else { throw .invalidProperty }
            let bit: UInt64 = 1 << UInt64(rawID & 63)
            if seen & bit != 0 && !id.mayRepeat(in: .publish) { throw .duplicateProperty }
            seen |= bit
            switch id {
            case .payloadFormatIndicator:
                let v = try block.readByte()
                guard v <= 1 else { throw .invalidPropertyValue }
                p.payloadFormatIndicator = v
            case .messageExpiryInterval: p.messageExpiryInterval = try block.readUInt32()
            case .contentType: _ = try block.readStringView()
            case .responseTopic:
                guard TopicValidation.isValidTopicName(try block.readStringView()) else { throw .invalidTopicName }
            case .correlationData: _ = try block.readBinaryView()
            case .subscriptionIdentifier:
                guard try block.readMinimalVariableByteInteger() > 0 else { throw .invalidPropertyValue }
                p.subscriptionIdentifierCount += 1
            case .topicAlias:
                let v = try block.readUInt16()
                guard v > 0 else { throw .invalidPropertyValue }
                p.topicAlias = v
            case .userProperty:
                _ = try block.readStringView()
                _ = try block.readStringView()
            default:
                throw .invalidProperty
            }
        }
        return p
    }
}

extension Properties {
    /// Decodes a property block with its length prefix, as `encode(into:)` writes it (a will's
    /// properties kept by the store).
    public init(decodingBlock bytes: UnsafeRawBufferPointer, context: PropertyContext) throws(DecodeError) {
        var reader = ByteReader(bytes)
        self = try Properties.decode(from: &reader, context: context)
    }
}
