// Packet encoding into caller-provided `ByteBuffer`s. Non-PUBLISH packets reserve four bytes
// for the remaining length, write the body, then close the gap: no temporary buffer.

extension Packet {
    /// Appends the packet's wire form for `version` to `buffer`.
    /// For `.publish`, `properties.raw` is written verbatim as the v5 property block.
    public func encode(version: ProtocolVersion, into buffer: inout ByteBuffer) {
        let v5 = version == .v5
        switch self {
        case .publish(let p):
            PublishEncoder.encode(version: version, dup: p.dup, qos: p.qos, retain: p.retain, topic: p.topic,
                                  packetID: p.packetID, properties: p.properties.raw, payload: p.payload, into: &buffer)
        case .puback(let a): Packet.encodeAck(0x40, a, v5: v5, into: &buffer)
        case .pubrec(let a): Packet.encodeAck(0x50, a, v5: v5, into: &buffer)
        case .pubrel(let a): Packet.encodeAck(0x62, a, v5: v5, into: &buffer)
        case .pubcomp(let a): Packet.encodeAck(0x70, a, v5: v5, into: &buffer)
        case .pingreq: buffer.writeByte(0xC0); buffer.writeByte(0)
        case .pingresp: buffer.writeByte(0xD0); buffer.writeByte(0)
        case .connect(let c):
            Packet.framed(0x10, into: &buffer) { b in Packet.encodeConnectBody(c, into: &b) }
        case .connack(let a):
            Packet.framed(0x20, into: &buffer) { b in
                b.writeByte(a.sessionPresent ? 1 : 0)
                if v5 {
                    b.writeByte(a.reasonCode.rawValue)
                    a.properties.encode(into: &b)
                } else {
                    b.writeByte(ConnectReturnCode(reason: a.reasonCode).rawValue)
                }
            }
        case .subscribe(let s):
            Packet.framed(0x82, into: &buffer) { b in
                b.writeUInt16(s.packetID)
                if v5 { s.properties.encode(into: &b) }
                for r in s.subscriptions {
                    b.writeString(r.filter)
                    var options = r.options.qos.rawValue
                    if v5 {
                        if r.options.noLocal { options |= 0b100 }
                        if r.options.retainAsPublished { options |= 0b1000 }
                        options |= r.options.retainHandling.rawValue << 4
                    }
                    b.writeByte(options)
                }
            }
        case .suback(let s):
            Packet.framed(0x90, into: &buffer) { b in
                b.writeUInt16(s.packetID)
                if v5 { s.properties.encode(into: &b) }
                for code in s.reasonCodes {
                    // 3.1.1 knows only 0, 1, 2 and 0x80 (failure).
                    b.writeByte(v5 || code.rawValue <= 2 ? code.rawValue : 0x80)
                }
            }
        case .unsubscribe(let u):
            Packet.framed(0xA2, into: &buffer) { b in
                b.writeUInt16(u.packetID)
                if v5 { u.properties.encode(into: &b) }
                for f in u.filters { b.writeString(f) }
            }
        case .unsuback(let u):
            Packet.framed(0xB0, into: &buffer) { b in
                b.writeUInt16(u.packetID)
                if v5 {
                    u.properties.encode(into: &b)
                    for code in u.reasonCodes { b.writeByte(code.rawValue) }
                }
            }
        case .disconnect(let d):
            if !v5 || (d.reasonCode == .success && d.properties.isEmpty) {
                buffer.writeByte(0xE0); buffer.writeByte(0)
            } else {
                Packet.framed(0xE0, into: &buffer) { b in
                    b.writeByte(d.reasonCode.rawValue)
                    if !d.properties.isEmpty { d.properties.encode(into: &b) }
                }
            }
        case .auth(let a):
            if a.reasonCode == .success && a.properties.isEmpty {
                buffer.writeByte(0xF0); buffer.writeByte(0)
            } else {
                Packet.framed(0xF0, into: &buffer) { b in
                    b.writeByte(a.reasonCode.rawValue)
                    if !a.properties.isEmpty { a.properties.encode(into: &b) }
                }
            }
        }
    }

    /// The wire form as an array (tests and cold paths).
    public func encoded(version: ProtocolVersion) -> [UInt8] {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        encode(version: version, into: &buffer)
        return buffer.readableArray()
    }

    /// PUBACK/PUBREC/PUBREL/PUBCOMP; v5 uses the short form when it can [MQTT-3.4.2.1].
    @inline(__always)
    static func encodeAck(_ first: UInt8, _ ack: PublishAck, v5: Bool, into buffer: inout ByteBuffer) {
        if !v5 || (ack.reasonCode == .success && ack.properties.isEmpty) {
            buffer.writeByte(first)
            buffer.writeByte(2)
            buffer.writeUInt16(ack.packetID)
        } else if ack.properties.isEmpty {
            buffer.writeByte(first)
            buffer.writeByte(3)
            buffer.writeUInt16(ack.packetID)
            buffer.writeByte(ack.reasonCode.rawValue)
        } else {
            framed(first, into: &buffer) { b in
                b.writeUInt16(ack.packetID)
                b.writeByte(ack.reasonCode.rawValue)
                ack.properties.encode(into: &b)
            }
        }
    }

    /// Writes the first byte, the body produced by `body`, and the remaining length in between.
    static func framed(_ first: UInt8, into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
        buffer.writeByte(first)
        let lengthAt = buffer.writerIndex
        buffer.writeUInt32(0)  // room for the longest remaining length
        let bodyStart = buffer.writerIndex
        body(&buffer)
        let bodyLength = buffer.writerIndex - bodyStart
        let lengthBytes = variableByteIntegerLength(bodyLength)
        let base = buffer.base!
        if lengthBytes < 4 {
            (base + lengthAt + lengthBytes).copyMemory(from: base + bodyStart, byteCount: bodyLength)
        }
        var v = bodyLength
        for i in 0..<lengthBytes {
            var byte = UInt8(v & 0x7F)
            v >>= 7
            if v > 0 { byte |= 0x80 }
            (base + lengthAt + i).storeBytes(of: byte, as: UInt8.self)
        }
        buffer.writerIndex = lengthAt + lengthBytes + bodyLength
    }

    static func encodeConnectBody(_ c: Connect, into b: inout ByteBuffer) {
        b.writeString(c.version == .v3_1 ? "MQIsdp" : "MQTT")
        // A bridge's 3.1/3.1.1 level has bit 7 set (mosquitto's try_private); v5 has no such bit.
        b.writeByte(c.version.rawValue | (c.isBridge && c.version != .v5 ? 0x80 : 0))
        var flags: UInt8 = 0
        if c.cleanStart { flags |= 0b10 }
        if let will = c.will {
            flags |= 0b100 | will.qos.rawValue << 3
            if will.retain { flags |= 0b10_0000 }
        }
        if c.password != nil { flags |= 0b100_0000 }
        if c.username != nil { flags |= 0b1000_0000 }
        b.writeByte(flags)
        b.writeUInt16(c.keepAlive)
        let v5 = c.version == .v5
        if v5 { c.properties.encode(into: &b) }
        b.writeString(c.clientID)
        if let will = c.will {
            if v5 { will.properties.encode(into: &b) }
            b.writeString(will.topic)
            will.payload.withUnsafeBytes { b.writeLengthPrefixed($0) }
        }
        if let username = c.username { b.writeString(username) }
        if let password = c.password { password.withUnsafeBytes { b.writeLengthPrefixed($0) } }
    }
}

/// The hot-path PUBLISH encoder, used by the broker for every delivery without building a `Packet`.
public enum PublishEncoder {
    /// Appends a PUBLISH. `properties` is the v5 property block without its length prefix
    /// (ignored for 3.1/3.1.1). `packetID` is ignored for QoS 0. A non-zero v5 `topicAlias` is
    /// written as the first property (pass an empty `topic` to send the alias alone). With
    /// `payloadFollows`, everything but the payload is written (its length counted): the caller
    /// sends the payload after these bytes from where it is.
    @inlinable
    public static func encode(
        version: ProtocolVersion, dup: Bool, qos: QoS, retain: Bool,
        topic: UnsafeRawBufferPointer, packetID: UInt16,
        properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
        topicAlias: UInt16 = 0, payloadFollows: Bool = false,
        into buffer: inout ByteBuffer
    ) {
        let v5 = version == .v5
        let propertiesLength = properties.count + (v5 && topicAlias != 0 ? 3 : 0)
        var remaining = 2 + topic.count + payload.count
        if qos != .atMostOnce { remaining += 2 }
        if v5 { remaining += variableByteIntegerLength(propertiesLength) + propertiesLength }
        let total = 1 + variableByteIntegerLength(remaining) + remaining
        buffer.reserveWritable(payloadFollows ? total - payload.count : total)
        var first: UInt8 = 0x30 | qos.rawValue << 1
        if dup && qos != .atMostOnce { first |= 0b1000 }
        if retain { first |= 1 }
        buffer.writeByte(first)
        buffer.writeVariableByteInteger(remaining)
        buffer.writeLengthPrefixed(topic)
        if qos != .atMostOnce { buffer.writeUInt16(packetID) }
        if v5 {
            buffer.writeVariableByteInteger(propertiesLength)
            if topicAlias != 0 {
                buffer.writeByte(0x23)  // Topic Alias
                buffer.writeUInt16(topicAlias)
            }
            buffer.writeBytes(properties)
        }
        if !payloadFollows { buffer.writeBytes(payload) }
    }

    /// The encoded size of such a PUBLISH (for Maximum Packet Size checks).
    @inlinable
    public static func encodedLength(version: ProtocolVersion, qos: QoS, topicLength: Int, propertiesLength: Int, payloadLength: Int) -> Int {
        var remaining = 2 + topicLength + payloadLength
        if qos != .atMostOnce { remaining += 2 }
        if version == .v5 { remaining += variableByteIntegerLength(propertiesLength) + propertiesLength }
        return 1 + variableByteIntegerLength(remaining) + remaining
    }
}
