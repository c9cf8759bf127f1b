// The variable header and payload of each packet type, per version.

extension PacketDecoder {
    @inlinable
    static func decodePublish(flags: UInt8, reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> Publish {
        guard let qos = QoS(rawValue: (flags >> 1) & 3) else { throw .invalidQoS }
        let dup = flags & 0b1000 != 0
        if qos == .atMostOnce && dup { throw .invalidFixedHeaderFlags }  // [MQTT-3.3.1-2]
        let topic = try reader.readBinaryView()
        var packetID: UInt16 = 0
        if qos != .atMostOnce {
            packetID = try reader.readUInt16()
            if packetID == 0 { throw .invalidPacketIdentifier }
        }
        var properties = PublishProperties()
        if version == .v5 { properties = try PublishProperties.decode(from: &reader) }
        if topic.count == 0 {
            // Only a v5 PUBLISH that names its topic by alias may have an empty topic.
            guard version == .v5, properties.topicAlias != nil else { throw .invalidTopicName }
        } else if !TopicValidation.isValidTopicName(topic) {
            throw TopicValidation.isValidMQTTString(topic) ? .invalidTopicName : .invalidUTF8
        }
        let payload = try reader.readBytes(reader.remaining)
        return Publish(dup: dup, qos: qos, retain: flags & 1 != 0, topic: topic, packetID: packetID,
                       properties: properties, payload: payload)
    }

    @usableFromInline
    static func decodeOther(_ type: PacketType, reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> Packet {
        switch type {
        case .connect: return .connect(try decodeConnect(&reader))
        case .connack: return .connack(try decodeConnAck(&reader, version: version))
        case .publish: fatalError("handled by decodePublish")
        case .puback: return .puback(try decodeAck(&reader, version: version, allowed: pubackCodes, context: .puback))
        case .pubrec: return .pubrec(try decodeAck(&reader, version: version, allowed: pubackCodes, context: .pubrec))
        case .pubrel: return .pubrel(try decodeAck(&reader, version: version, allowed: pubrelCodes, context: .pubrel))
        case .pubcomp: return .pubcomp(try decodeAck(&reader, version: version, allowed: pubrelCodes, context: .pubcomp))
        case .subscribe: return .subscribe(try decodeSubscribe(&reader, version: version))
        case .suback: return .suback(try decodeSubAck(&reader, version: version))
        case .unsubscribe: return .unsubscribe(try decodeUnsubscribe(&reader, version: version))
        case .unsuback: return .unsuback(try decodeUnsubAck(&reader, version: version))
        case .pingreq, .pingresp:
            guard reader.isAtEnd else { throw .trailingBytes }
            return type == .pingreq ? .pingreq : .pingresp
        case .disconnect: return .disconnect(try decodeDisconnect(&reader, version: version))
        case .auth:
            guard version == .v5 else { throw .reservedPacketType }
            return .auth(try decodeAuth(&reader))
        }
    }

    static let pubackCodes: Set<UInt8> = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
    static let pubrelCodes: Set<UInt8> = [0x00, 0x92]
    static let subackCodes5: Set<UInt8> = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
    static let subackCodes3: Set<UInt8> = [0x00, 0x01, 0x02, 0x80]
    static let unsubackCodes: Set<UInt8> = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]
    static let disconnectCodes: Set<UInt8> = [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
                                               0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2]
    static let authCodes: Set<UInt8> = [0x00, 0x18, 0x19]
    static let connackCodes5: Set<UInt8> = [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
                                            0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F]

    static func decodeConnect(_ reader: inout ByteReader) throws(DecodeError) -> Connect {
        let name = try reader.readBinaryView()
        let rawLevel = try reader.readByte()
        let isMQTT = name.elementsEqual("MQTT".utf8)
        let isMQIsdp = name.elementsEqual("MQIsdp".utf8)
        // Bit 7 of a 3.1/3.1.1 level: a bridge (mosquitto's convention, not the specification's).
        let isBridge = rawLevel & 0x80 != 0 && (rawLevel & 0x7F == 3 || rawLevel & 0x7F == 4)
        let level = isBridge ? rawLevel & 0x7F : rawLevel
        let version: ProtocolVersion
        switch (isMQTT, isMQIsdp, level) {
        case (true, _, 4): version = .v3_1_1
        case (true, _, 5): version = .v5
        case (_, true, 3): version = .v3_1
        default: throw .unsupportedProtocolVersion
        }
        let flags = try reader.readByte()
        if flags & 1 != 0 { throw .protocolViolation }  // [MQTT-3.1.2-3]
        let willFlag = flags & 0b100 != 0
        let willQoSBits = (flags >> 3) & 3
        let willRetain = flags & 0b10_0000 != 0
        let hasPassword = flags & 0b100_0000 != 0
        let hasUsername = flags & 0b1000_0000 != 0
        if !willFlag && (willQoSBits != 0 || willRetain) { throw .protocolViolation }  // [MQTT-3.1.2-11, -13]
        guard let willQoS = QoS(rawValue: willQoSBits) else { throw .invalidQoS }
        if version != .v5 && hasPassword && !hasUsername { throw .protocolViolation }  // [MQTT-3.1.2-22]
        let keepAlive = try reader.readUInt16()
        let properties = version == .v5 ? try Properties.decode(from: &reader, context: .connect) : Properties()
        let clientID = try reader.readString()
        var will: Will? = nil
        if willFlag {
            let willProperties = version == .v5 ? try Properties.decode(from: &reader, context: .will) : Properties()
            let topicView = try reader.readStringView()
            guard TopicValidation.isValidTopicName(topicView) else { throw .invalidTopicName }
            let payload = try reader.readBinary()
            will = Will(topic: String(decoding: topicView, as: UTF8.self), payload: payload, qos: willQoS,
                        retain: willRetain, properties: willProperties)
        }
        let username = hasUsername ? try reader.readString() : nil
        let password = hasPassword ? try reader.readBinary() : nil
        guard reader.isAtEnd else { throw .trailingBytes }
        var connect = Connect(version: version, cleanStart: flags & 0b10 != 0, keepAlive: keepAlive, clientID: clientID,
                              will: will, username: username, password: password, properties: properties)
        connect.isBridge = isBridge
        return connect
    }

    static func decodeConnAck(_ reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> ConnAck {
        let ackFlags = try reader.readByte()
        if ackFlags & 0xFE != 0 { throw .protocolViolation }
        let code = try reader.readByte()
        var ack = ConnAck(sessionPresent: ackFlags & 1 != 0)
        if version == .v5 {
            guard connackCodes5.contains(code) else { throw .invalidReasonCode }
            ack.reasonCode = ReasonCode(rawValue: code)
            if !reader.isAtEnd { ack.properties = try Properties.decode(from: &reader, context: .connack) }
        } else {
            guard let rc = ConnectReturnCode(rawValue: code) else { throw .invalidReasonCode }
            ack.reasonCode = rc.reasonCode
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        return ack
    }

    static func decodeAck(_ reader: inout ByteReader, version: ProtocolVersion, allowed: Set<UInt8>,
                          context: PropertyContext) throws(DecodeError) -> PublishAck {
        let packetID = try reader.readUInt16()
        if packetID == 0 { throw .invalidPacketIdentifier }
        var ack = PublishAck(packetID: packetID)
        if version == .v5 && !reader.isAtEnd {
            let code = try reader.readByte()
            guard allowed.contains(code) else { throw .invalidReasonCode }
            ack.reasonCode = ReasonCode(rawValue: code)
            if !reader.isAtEnd { ack.properties = try Properties.decode(from: &reader, context: context) }
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        return ack
    }

    static func decodeSubscribe(_ reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> Subscribe {
        let packetID = try reader.readUInt16()
        if packetID == 0 { throw .invalidPacketIdentifier }
        let properties = version == .v5 ? try Properties.decode(from: &reader, context: .subscribe) : Properties()
        var requests: [SubscriptionRequest] = []
        while !reader.isAtEnd {
            let filter = try reader.readString()
            let options = try reader.readByte()
            guard let qos = QoS(rawValue: options & 3) else { throw .invalidQoS }
            var parsed = SubscriptionOptions(qos: qos)
            if version == .v5 {
                if options & 0b1100_0000 != 0 { throw .protocolViolation }  // [MQTT-3.8.3-5]
                guard let handling = RetainHandling(rawValue: (options >> 4) & 3) else { throw .protocolViolation }
                parsed.noLocal = options & 0b100 != 0
                parsed.retainAsPublished = options & 0b1000 != 0
                parsed.retainHandling = handling
            } else if options & 0b1111_1100 != 0 {
                throw .protocolViolation  // [MQTT-3-8.3-4] reserved bits
            }
            requests.append(SubscriptionRequest(filter: filter, options: parsed))
        }
        if requests.isEmpty { throw .emptySubscriptionList }  // [MQTT-3.8.3-3]
        return Subscribe(packetID: packetID, subscriptions: requests, properties: properties)
    }

    static func decodeSubAck(_ reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> SubAck {
        let packetID = try reader.readUInt16()
        let properties = version == .v5 ? try Properties.decode(from: &reader, context: .suback) : Properties()
        let codes = try readReasonCodes(&reader, allowed: version == .v5 ? subackCodes5 : subackCodes3)
        return SubAck(packetID: packetID, reasonCodes: codes, properties: properties)
    }

    static func decodeUnsubscribe(_ reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> Unsubscribe {
        let packetID = try reader.readUInt16()
        if packetID == 0 { throw .invalidPacketIdentifier }
        let properties = version == .v5 ? try Properties.decode(from: &reader, context: .unsubscribe) : Properties()
        var filters: [String] = []
        while !reader.isAtEnd { filters.append(try reader.readString()) }
        if filters.isEmpty { throw .emptySubscriptionList }  // [MQTT-3.10.3-2]
        return Unsubscribe(packetID: packetID, filters: filters, properties: properties)
    }

    static func decodeUnsubAck(_ reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> UnsubAck {
        let packetID = try reader.readUInt16()
        guard version == .v5 else {
            guard reader.isAtEnd else { throw .trailingBytes }
            return UnsubAck(packetID: packetID)
        }
        let properties = try Properties.decode(from: &reader, context: .unsuback)
        return UnsubAck(packetID: packetID, reasonCodes: try readReasonCodes(&reader, allowed: unsubackCodes), properties: properties)
    }

    /// The reason codes that make up the rest of a SUBACK or UNSUBACK: at least one, each allowed.
    static func readReasonCodes(_ reader: inout ByteReader, allowed: Set<UInt8>) throws(DecodeError) -> [ReasonCode] {
        var codes: [ReasonCode] = []
        while !reader.isAtEnd {
            let code = try reader.readByte()
            guard allowed.contains(code) else { throw .invalidReasonCode }
            codes.append(ReasonCode(rawValue: code))
        }
        if codes.isEmpty { throw .emptySubscriptionList }
        return codes
    }

    static func decodeDisconnect(_ reader: inout ByteReader, version: ProtocolVersion) throws(DecodeError) -> Disconnect {
        var disconnect = Disconnect()
        if version == .v5 && !reader.isAtEnd {
            let code = try reader.readByte()
            guard disconnectCodes.contains(code) else { throw .invalidReasonCode }
            disconnect.reasonCode = ReasonCode(rawValue: code)
            if !reader.isAtEnd { disconnect.properties = try Properties.decode(from: &reader, context: .disconnect) }
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        return disconnect
    }

    static func decodeAuth(_ reader: inout ByteReader) throws(DecodeError) -> Auth {
        var auth = Auth()
        if !reader.isAtEnd {
            let code = try reader.readByte()
            guard authCodes.contains(code) else { throw .invalidReasonCode }
            auth.reasonCode = ReasonCode(rawValue: code)
            if !reader.isAtEnd { auth.properties = try Properties.decode(from: &reader, context: .auth) }
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        return auth
    }
}

extension ConnectReturnCode {
    /// The v5 reason code this 3.1.1 return code stands for.
    public var reasonCode: ReasonCode {
        switch self {
        case .accepted: return .success
        case .unacceptableProtocolVersion: return .unsupportedProtocolVersion
        case .identifierRejected: return .clientIdentifierNotValid
        case .serverUnavailable: return .serverUnavailable
        case .badUserNameOrPassword: return .badUserNameOrPassword
        case .notAuthorized: return .notAuthorized
        }
    }
}
