// RFC 6455 §5 frames: the header a server writes in front of its payload (no mask, the shortest
// length encoding), a client's masked frame (tests and apus-bench), the opcodes and the close
// codes a peer may send.

import ApusBase

public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// The close status codes Apus sends (RFC 6455 §7.4.1).
public enum WebSocketCloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let unsupportedData: UInt16 = 1003
    /// Received as "no status code in the close frame" (never sent).
    public static let noStatus: UInt16 = 1005
    public static let invalidPayload: UInt16 = 1007
    public static let messageTooBig: UInt16 = 1009

    /// Whether a peer may send `code` in a close frame (§7.4: 1000–1003, 1007–1014 and the
    /// registered or private 3000–4999; 1004–1006 and 1015 are reserved, the rest unassigned).
    public static func isValidReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}

public enum WebSocketFrame {
    /// The largest server frame header: 2 bytes, 8 of extended length, no mask.
    public static let maxServerHeaderLength = 10

    /// The length of a server (unmasked) header for a payload of `count` bytes.
    @inlinable
    public static func serverHeaderLength(payload count: Int) -> Int {
        count < 126 ? 2 : count <= 0xFFFF ? 4 : 10
    }

    /// Writes a final frame's unmasked header for `count` payload bytes at `p`
    /// (`serverHeaderLength(payload:)` bytes).
    @inlinable
    public static func writeServerHeader(_ opcode: WebSocketOpcode, payload count: Int, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: 0x80 | opcode.rawValue, as: UInt8.self)
        if count < 126 {
            p.storeBytes(of: UInt8(count), toByteOffset: 1, as: UInt8.self)
        } else if count <= 0xFFFF {
            p.storeBytes(of: 126, toByteOffset: 1, as: UInt8.self)
            p.storeBytes(of: UInt16(count).bigEndian, toByteOffset: 2, as: UInt16.self)
        } else {
            p.storeBytes(of: 127, toByteOffset: 1, as: UInt8.self)
            p.storeBytes(of: UInt64(count).bigEndian, toByteOffset: 2, as: UInt64.self)
        }
    }

    /// A whole unmasked frame (the server's control frames: pong, close).
    public static func writeServerFrame(_ opcode: WebSocketOpcode, payload: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        let header = serverHeaderLength(payload: payload.count)
        writeServerHeader(opcode, payload: payload.count, at: buffer.reserveWritable(header))
        buffer.commitWritten(header)
        buffer.writeBytes(payload)
    }

    /// A client frame: masked with `mask`, `fin` false for all but a message's last fragment.
    /// For tests and the load generator; the broker never sends one.
    public static func clientFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], mask: UInt32, fin: Bool = true) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode.rawValue]
        if payload.count < 126 {
            out.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out.append(0x80 | 126)
            out += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        let key = [UInt8(mask >> 24), UInt8((mask >> 16) & 0xFF), UInt8((mask >> 8) & 0xFF), UInt8(mask & 0xFF)]
        out += key
        for (i, byte) in payload.enumerated() { out.append(byte ^ key[i & 3]) }
        return out
    }

    /// Copies `count` bytes from `source` to `target`, XOR-ing them with the 4-byte `key`
    /// (network order) starting at key byte `phase`; returns the phase after them. Eight bytes
    /// at a time.
    @inlinable
    public static func unmask(_ source: UnsafeRawPointer, into target: UnsafeMutableRawPointer, count: Int,
                              key: UInt32, phase: Int) -> Int {
        // The key as it lies in memory, rotated so that byte 0 applies to source[0].
        let keyBytes = UInt32(bigEndian: key)  // memory order = network order
        let rotated = phase == 0 ? keyBytes : (keyBytes >> UInt32(8 * phase)) | (keyBytes << UInt32(32 - 8 * phase))
        let wide = UInt64(rotated) | (UInt64(rotated) << 32)
        var i = 0
        while i + 8 <= count {
            let word = source.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            target.storeBytes(of: word ^ wide, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        var k = rotated
        while i < count {
            let byte = source.load(fromByteOffset: i, as: UInt8.self)
            target.storeBytes(of: byte ^ UInt8(truncatingIfNeeded: k), toByteOffset: i, as: UInt8.self)
            k = (k >> 8) | (k << 24)
            i += 1
        }
        return (phase + count) & 3
    }
}
