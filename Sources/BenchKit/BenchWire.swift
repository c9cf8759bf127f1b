// The load generator's own fast paths on the wire (issue 21: apus-bench must never be what limits
// a run). A publisher copies one pre-encoded PUBLISH per message and patches its sequence number,
// send time and packet id in place; a subscriber splits its input into frames and reads a PUBLISH's
// topic, packet id, topic alias and payload header without building a `Packet` — anything else
// (other packets, a PUBLISH with properties it does not know) goes to the full decoder.

import ApusBase
import Codec

/// One publisher's PUBLISH, encoded once.
public struct PublishTemplate: Sendable {
    public let bytes: [UInt8]
    /// Where the payload (and so BenchPayload's header) starts.
    public let payloadOffset: Int
    /// Where the packet id is (QoS 1/2), or -1.
    public let packetIDOffset: Int

    public init(version: ProtocolVersion, qos: QoS, retain: Bool, topic: String, payloadSize: Int) {
        let payload = [UInt8](repeating: 0x61, count: max(payloadSize, BenchPayload.headerSize))
        var buffer = ByteBuffer()
        var topic = topic
        topic.withUTF8 { t in
            payload.withUnsafeBytes { p in
                PublishEncoder.encode(version: version, dup: false, qos: qos, retain: retain, topic: UnsafeRawBufferPointer(t),
                                      packetID: 1, properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p,
                                      into: &buffer)
            }
        }
        bytes = buffer.readableArray()
        buffer.deallocate()
        payloadOffset = bytes.count - payload.count
        // Packet id, then (v5) a property length of 0, then the payload.
        packetIDOffset = qos == .atMostOnce ? -1 : payloadOffset - 2 - (version == .v5 ? 1 : 0)
    }

    /// Appends `count` copies, numbered from `sequence` on, with packet ids from `packetID` on
    /// (wrapping 65535 → 1). Returns the next packet id.
    @inlinable
    public func write(count: Int, sequence: UInt64, sentAt: UInt64, measured: Bool, packetID: UInt16,
                      into buffer: inout ByteBuffer) -> UInt16 {
        let size = bytes.count
        var id = packetID
        bytes.withUnsafeBytes { template in
            let base = buffer.reserveWritable(size * count)
            for i in 0..<count {
                let packet = base + i * size
                packet.copyMemory(from: template.baseAddress!, byteCount: size)
                BenchPayload.write(sequence: sequence &+ UInt64(i), sentAt: sentAt, measured: measured, into: packet + payloadOffset)
                if packetIDOffset >= 0 {
                    packet.storeBytes(of: id.bigEndian, toByteOffset: packetIDOffset, as: UInt16.self)
                    id = id == .max ? 1 : id + 1
                }
            }
            buffer.commitWritten(size * count)
        }
        return id
    }
}

/// A PUBLISH as a subscriber of the load generator reads it.
public struct BenchPublish {
    public var qos: QoS
    public var packetID: UInt16
    /// Empty when the broker sent a v5 topic alias alone.
    public var topic: UnsafeRawBufferPointer
    /// 0: none.
    public var topicAlias: UInt16
    public var payload: UnsafeRawBufferPointer

    @inlinable
    public init(qos: QoS, packetID: UInt16, topic: UnsafeRawBufferPointer, topicAlias: UInt16, payload: UnsafeRawBufferPointer) {
        self.qos = qos
        self.packetID = packetID
        self.topic = topic
        self.topicAlias = topicAlias
        self.payload = payload
    }

    /// Reads a complete PUBLISH frame (fixed header included). Nil when the frame is not a
    /// PUBLISH, is malformed, or has v5 properties other than a topic alias: decode those fully.
    @inlinable
    public static func read(frame: UnsafeRawBufferPointer, version: ProtocolVersion) -> BenchPublish? {
        guard frame.count >= 2, let base = frame.baseAddress else { return nil }
        let first = frame[0]
        guard first >> 4 == 3 else { return nil }
        guard let qos = QoS(rawValue: (first >> 1) & 3) else { return nil }
        var i = 1
        while i < 5 && i < frame.count && frame[i] & 0x80 != 0 { i += 1 }
        i += 1  // past the remaining length
        guard i + 2 <= frame.count else { return nil }
        let topicLength = Int(frame[i]) << 8 | Int(frame[i + 1])
        i += 2
        guard i + topicLength <= frame.count else { return nil }
        let topic = UnsafeRawBufferPointer(start: base + i, count: topicLength)
        i += topicLength
        var packetID: UInt16 = 0
        if qos != .atMostOnce {
            guard i + 2 <= frame.count else { return nil }
            packetID = UInt16(frame[i]) << 8 | UInt16(frame[i + 1])
            i += 2
        }
        var alias: UInt16 = 0
        if version == .v5 {
            guard i < frame.count else { return nil }
            let propertiesLength = Int(frame[i])
            guard propertiesLength & 0x80 == 0 else { return nil }  // a long property block: not ours
            i += 1
            if propertiesLength == 3 && i + 3 <= frame.count && frame[i] == 0x23 {
                alias = UInt16(frame[i + 1]) << 8 | UInt16(frame[i + 2])
            } else if propertiesLength != 0 {
                return nil
            }
            i += propertiesLength
        }
        guard i <= frame.count else { return nil }
        return BenchPublish(qos: qos, packetID: packetID, topic: topic, topicAlias: alias,
                            payload: UnsafeRawBufferPointer(start: base + i, count: frame.count - i))
    }
}

/// Splits a connection's input into complete frames: a partial frame at the end of one read waits
/// in `pending` for the next. A PUBLISH longer than `truncateAbove` reaches the caller as its first
/// `headBytes` bytes only (enough for its header, topic and BenchPayload's header) and the rest of
/// it is skipped as it arrives, never copied: the load generator reads large payloads at the
/// kernel's cost alone.
public struct FrameSplitter: Sendable {
    public var pending = ByteBuffer()
    /// Bytes of a truncated PUBLISH still to skip.
    public var skipping = 0
    public static let truncateAbove = 64 << 10
    public static let headBytes = 4096

    public init() {}

    /// The length of the frame at the start of `bytes` when it is complete, or the length of its
    /// head when it is a large PUBLISH whose head is here (`truncated`), or nil (wait for more).
    @inlinable
    public static func frameLength(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> (length: Int, truncated: Bool)? {
        guard let length = try PacketDecoder.frameLength(bytes, maxPacketSize: 268_435_460) else { return nil }
        if length > truncateAbove && bytes[0] >> 4 == 3 {
            return bytes.count >= headBytes ? (length, true) : nil
        }
        return length <= bytes.count ? (length, false) : nil
    }

    /// Calls `frame` with each frame (or large PUBLISH's head) of what came before plus `bytes`,
    /// in order; keeps the incomplete rest. Throws on a malformed fixed header.
    @inlinable
    public mutating func split(_ bytes: UnsafeRawBufferPointer, _ frame: (UnsafeRawBufferPointer) -> Void) throws(DecodeError) {
        var bytes = bytes
        if skipping > 0 {
            let skip = Swift.min(skipping, bytes.count)
            skipping -= skip
            bytes = UnsafeRawBufferPointer(rebasing: bytes[skip...])
        }
        if pending.isEmpty {
            let used = try each(in: bytes, frame)
            if used < bytes.count { pending.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[used...])) }
            return
        }
        pending.writeBytes(bytes)
        let used = try each(in: pending.readableView, frame)
        pending.moveReaderIndex(forwardBy: used)
        if pending.isEmpty {
            if pending.capacity > 1 << 20 { pending.deallocate() } else { pending.clear() }
        }
    }

    /// Calls `frame` for each frame at the start of `bytes`; returns the bytes used (a truncated
    /// frame uses all of `bytes` it covers and leaves the rest of itself to `skipping`).
    @inlinable
    mutating func each(in bytes: UnsafeRawBufferPointer, _ frame: (UnsafeRawBufferPointer) -> Void) throws(DecodeError) -> Int {
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            guard let (length, truncated) = try FrameSplitter.frameLength(rest) else { break }
            if truncated {
                frame(UnsafeRawBufferPointer(rebasing: rest[0..<FrameSplitter.headBytes]))
                let here = Swift.min(length, rest.count)
                skipping = length - here
                offset += here
                continue
            }
            frame(UnsafeRawBufferPointer(rebasing: rest[0..<length]))
            offset += length
        }
        return offset
    }

    public mutating func deallocate() { pending.deallocate() }
}
