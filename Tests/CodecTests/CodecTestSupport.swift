// Helpers shared by the codec tests: decoding whole byte arrays and comparing packets.

import XCTest
@testable import Codec

/// A packet with PUBLISH copied out of its views, so packets can be compared after decoding.
enum Decoded: Equatable {
    case publish(dup: Bool, qos: QoS, retain: Bool, topic: [UInt8], packetID: UInt16, properties: [UInt8], payload: [UInt8])
    case other(String)

    init(_ packet: Packet) {
        if case .publish(let p) = packet {
            self = .publish(dup: p.dup, qos: p.qos, retain: p.retain, topic: Array(p.topic), packetID: p.packetID,
                            properties: Array(p.properties.raw), payload: Array(p.payload))
        } else {
            // Every other packet is an owned value whose description includes all fields.
            self = .other(String(describing: packet))
        }
    }
}

func decodeFrame(_ bytes: [UInt8], _ version: ProtocolVersion) throws -> Packet {
    try bytes.withUnsafeBytes { raw in
        guard let total = try PacketDecoder.frameLength(raw, maxPacketSize: 268_435_460) else { throw DecodeError.truncated }
        guard total == raw.count else { throw total > raw.count ? DecodeError.truncated : DecodeError.trailingBytes }
        return try PacketDecoder.decode(frame: raw, version: version)
    }
}

/// Feeds `chunks` to a StreamDecoder and returns every packet (copied out) in order.
func streamDecode(_ chunks: [[UInt8]], _ version: ProtocolVersion, maxPacketSize: Int = 268_435_460) throws(DecodeError) -> [Decoded] {
    var decoder = StreamDecoder(version: version, maxPacketSize: maxPacketSize)
    defer { decoder.deallocate() }
    var out: [Decoded] = []
    for chunk in chunks {
        let result: DecodeError? = chunk.withUnsafeBytes { raw -> DecodeError? in
            decoder.feed(raw)
            do throws(DecodeError) {
                while let packet = try decoder.next() { out.append(Decoded(packet)) }
            } catch {
                return error
            }
            return nil
        }
        if let result { throw result }
    }
    return out
}

/// Builds a PUBLISH packet's bytes from owned values.
func publishBytes(_ version: ProtocolVersion, topic: String, payload: [UInt8], qos: QoS = .atMostOnce, packetID: UInt16 = 0,
                  retain: Bool = false, dup: Bool = false, properties: [UInt8] = []) -> [UInt8] {
    var buffer = ByteBuffer()
    defer { buffer.deallocate() }
    var t = topic
    t.withUTF8 { topicBytes in
        payload.withUnsafeBytes { payloadBytes in
            properties.withUnsafeBytes { props in
                PublishEncoder.encode(version: version, dup: dup, qos: qos, retain: retain, topic: UnsafeRawBufferPointer(topicBytes),
                                      packetID: packetID, properties: props, payload: payloadBytes, into: &buffer)
            }
        }
    }
    return buffer.readableArray()
}
