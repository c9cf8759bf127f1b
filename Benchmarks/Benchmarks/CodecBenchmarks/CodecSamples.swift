// The packets the codec benchmarks decode and encode: typical sizes (a 64-byte payload, a
// 14-byte topic, a 22-byte client id) and, for MQTT 5, a typical PUBLISH property block.

import Codec

/// Bytes that live for the whole process (benchmarks keep raw pointers into them).
func permanentBytes(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
    memory.copyBytes(from: bytes)
    return UnsafeRawBufferPointer(rebasing: memory[0..<bytes.count])
}

struct DecodeCase: @unchecked Sendable {
    var name: String
    var version: ProtocolVersion
    var frame: UnsafeRawBufferPointer
}

struct EncodeCase: @unchecked Sendable {
    var name: String
    var version: ProtocolVersion
    var packet: Packet
}

enum CodecSamples {
    nonisolated(unsafe) static let topic = permanentBytes(Array("sensors/7/temp".utf8))
    nonisolated(unsafe) static let payload = permanentBytes([UInt8](repeating: 0x61, count: 64))
    nonisolated(unsafe) static let empty = UnsafeRawBufferPointer(start: nil, count: 0)

    /// Message Expiry Interval 3600, Content Type "text/plain", User Property ("trace", "abc123").
    nonisolated(unsafe) static let publishProperties: UnsafeRawBufferPointer = {
        var bytes: [UInt8] = [0x02, 0x00, 0x00, 0x0E, 0x10]
        bytes += [0x03, 0x00, 0x0A] + Array("text/plain".utf8)
        bytes += [0x26, 0x00, 0x05] + Array("trace".utf8) + [0x00, 0x06] + Array("abc123".utf8)
        return permanentBytes(bytes)
    }()

    static let clientID = "apus-bench-client-0001"

    /// A complete PUBLISH frame (v5: with `publishProperties`).
    static func publishFrame(qos: QoS, version: ProtocolVersion) -> UnsafeRawBufferPointer {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        PublishEncoder.encode(version: version, dup: false, qos: qos, retain: false, topic: topic,
                              packetID: qos == .atMostOnce ? 0 : 7,
                              properties: version == .v5 ? publishProperties : empty, payload: payload, into: &buffer)
        return permanentBytes(buffer.readableArray())
    }

    static func frame(_ packet: Packet, _ version: ProtocolVersion) -> UnsafeRawBufferPointer {
        permanentBytes(packet.encoded(version: version))
    }

    static var connect5: Connect {
        var properties = Properties()
        properties.sessionExpiryInterval = 3600
        properties.receiveMaximum = 100
        properties.topicAliasMaximum = 16
        return Connect(version: .v5, cleanStart: true, keepAlive: 60, clientID: clientID, properties: properties)
    }

    static func subscribe(_ version: ProtocolVersion) -> Packet {
        .subscribe(Subscribe(packetID: 3, subscriptions: [
            SubscriptionRequest(filter: "sensors/+/temp", options: SubscriptionOptions(qos: .atLeastOnce)),
        ]))
    }

    static let decodeCases: [DecodeCase] = [
        DecodeCase(name: "CONNECT 3.1.1", version: .v3_1_1,
                   frame: frame(.connect(Connect(clientID: clientID)), .v3_1_1)),
        DecodeCase(name: "CONNECT 5.0 with properties", version: .v5, frame: frame(.connect(connect5), .v5)),
        DecodeCase(name: "PUBLISH QoS 0 3.1.1", version: .v3_1_1, frame: publishFrame(qos: .atMostOnce, version: .v3_1_1)),
        DecodeCase(name: "PUBLISH QoS 1 3.1.1", version: .v3_1_1, frame: publishFrame(qos: .atLeastOnce, version: .v3_1_1)),
        DecodeCase(name: "PUBLISH QoS 0 5.0 with properties", version: .v5, frame: publishFrame(qos: .atMostOnce, version: .v5)),
        DecodeCase(name: "PUBLISH QoS 1 5.0 with properties", version: .v5, frame: publishFrame(qos: .atLeastOnce, version: .v5)),
        DecodeCase(name: "PUBACK 3.1.1", version: .v3_1_1, frame: frame(.puback(PublishAck(packetID: 7)), .v3_1_1)),
        DecodeCase(name: "PUBACK 5.0 with reason code", version: .v5,
                   frame: frame(.puback(PublishAck(packetID: 7, reasonCode: .noMatchingSubscribers)), .v5)),
        DecodeCase(name: "SUBSCRIBE 3.1.1", version: .v3_1_1, frame: frame(subscribe(.v3_1_1), .v3_1_1)),
        DecodeCase(name: "SUBSCRIBE 5.0", version: .v5, frame: frame(subscribe(.v5), .v5)),
        DecodeCase(name: "UNSUBSCRIBE 3.1.1", version: .v3_1_1,
                   frame: frame(.unsubscribe(Unsubscribe(packetID: 4, filters: ["sensors/+/temp"])), .v3_1_1)),
        DecodeCase(name: "PINGREQ", version: .v3_1_1, frame: frame(.pingreq, .v3_1_1)),
        DecodeCase(name: "DISCONNECT 5.0", version: .v5, frame: frame(.disconnect(Disconnect(reasonCode: .disconnectWithWill)), .v5)),
    ]

    static let encodeCases: [EncodeCase] = [
        EncodeCase(name: "PUBACK 3.1.1", version: .v3_1_1, packet: .puback(PublishAck(packetID: 7))),
        EncodeCase(name: "PUBACK 5.0 with reason code", version: .v5,
                   packet: .puback(PublishAck(packetID: 7, reasonCode: .noMatchingSubscribers))),
        EncodeCase(name: "CONNACK 3.1.1", version: .v3_1_1, packet: .connack(ConnAck())),
        EncodeCase(name: "SUBACK 3.1.1", version: .v3_1_1,
                   packet: .suback(SubAck(packetID: 3, reasonCodes: [.grantedQoS1]))),
        EncodeCase(name: "CONNECT 3.1.1", version: .v3_1_1, packet: .connect(Connect(clientID: clientID))),
        EncodeCase(name: "SUBSCRIBE 3.1.1", version: .v3_1_1, packet: subscribe(.v3_1_1)),
        EncodeCase(name: "PINGRESP", version: .v3_1_1, packet: .pingresp),
    ]
}
