// The client side of a WebSocket connection (RFC 6455), sans-IO: what apus-bench's ws and wss
// connections and the module's tests speak; the broker never uses it. It writes the upgrade
// request (one subprotocol, `mqtt`), checks the 101 (the accept value of its key, the
// subprotocol it offered or none), then reads server frames — unmasked, binary, fragments
// joined, pings answered, a close echoed — and sends the protocol's bytes as one masked binary
// frame per send (a fresh mask key each frame, RFC 6455 §5.3).

import ApusBase
import ApusCrypto
import Transport

public final class WebSocketClient: TransportLayer {
    enum Phase { case upgrading, open, closed }

    var phase = Phase.upgrading
    let key: String
    var response: [UInt8] = []
    var masks: SplitMix64
    // The frame being read.
    var header: [UInt8] = []
    var inPayload = false
    var payloadLeft = 0
    var opcode = WebSocketOpcode.binary
    var control: [UInt8] = []
    var held = ByteBuffer()
    /// The close code the server sent, once it sent one.
    public private(set) var closeCode: UInt16? = nil

    /// A client with a random key and mask sequence (`seed` fixes both, for tests).
    public init(seed: UInt64? = nil) {
        masks = seed.map { SplitMix64(seed: $0) } ?? SplitMix64(seed: SecureRandom.bytes(8).reduce(0) { $0 << 8 | UInt64($1) })
        var nonce: [UInt8] = []
        for _ in 0..<2 { withUnsafeBytes(of: masks.next()) { nonce += $0 } }
        key = Base64.encode(nonce)
    }

    deinit { held.deallocate() }

    public var isEstablished: Bool { phase == .open }
    public var heldBytes: Int { held.readableBytes }

    /// The upgrade request for `path` on `host`, into `wire`.
    public func start(host: String, path: String = "/mqtt", subprotocol: String? = "mqtt", wire: inout ByteBuffer) {
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        if let subprotocol { request += "Sec-WebSocket-Protocol: \(subprotocol)\r\n" }
        request += "\r\n"
        wire.writeBytes(Array(request.utf8))
    }

    public func received(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        switch phase {
        case .closed: return .closed
        case .open: return frames(bytes, plaintext: &plaintext, wire: &wire)
        case .upgrading: break
        }
        response.append(contentsOf: bytes)
        guard let end = Self.headEnd(response) else {
            return response.count > 16 << 10 ? fail("no end of the upgrade answer in 16 KiB") : .open
        }
        let head = String(decoding: response[..<end], as: UTF8.self)
        let rest = Array(response[(end + 4)...])
        response = []
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let status = lines.first, status.hasPrefix("HTTP/1.1 101") else {
            return fail("upgrade refused: \(lines.first ?? "")")
        }
        var accept: Substring? = nil
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].lowercased() == "sec-websocket-accept" {
                accept = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            }
        }
        guard accept.map({ String($0) }) == WebSocketHandshake.acceptValue(forKey: key) else {
            return fail("Sec-WebSocket-Accept missing or not the key's")
        }
        phase = .open
        if !held.isEmpty {
            send(&held, wire: &wire)
            held.deallocate()
        }
        return rest.isEmpty ? .open : rest.withUnsafeBytes { frames($0, plaintext: &plaintext, wire: &wire) }
    }

    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    func frames(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        var i = 0
        while i < bytes.count {
            if !inPayload {
                header.append(bytes[i])
                i += 1
                guard header.count >= 2 else { continue }
                if header[1] & 0x80 != 0 { return fail("masked server frame") }
                let short = Int(header[1] & 0x7F)
                let needed = short == 126 ? 4 : short == 127 ? 10 : 2
                guard header.count == needed else { continue }
                var length = short
                if short == 126 { length = Int(header[2]) << 8 | Int(header[3]) }
                if short == 127 { length = header[2...].reduce(0) { $0 << 8 | Int($1) } }
                guard let op = WebSocketOpcode(rawValue: header[0] & 0x0F), header[0] & 0x70 == 0, op != .text else {
                    return fail("unexpected frame \(header[0])")
                }
                header.removeAll(keepingCapacity: true)
                opcode = op
                payloadLeft = length
                inPayload = true
                control.removeAll(keepingCapacity: true)
            } else {
                let take = min(payloadLeft, bytes.count - i)
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])
                if opcode.isControl { control += chunk } else { plaintext.writeBytes(chunk) }
                i += take
                payloadLeft -= take
            }
            if inPayload && payloadLeft == 0 {
                inPayload = false
                switch opcode {
                case .ping:
                    writeFrame(.pong, control, wire: &wire)
                case .close:
                    closeCode = control.count >= 2 ? UInt16(control[0]) << 8 | UInt16(control[1]) : WebSocketCloseCode.noStatus
                    writeFrame(.close, Array(control.prefix(2)), wire: &wire)
                    phase = .closed
                    return .closed
                default:
                    break
                }
            }
        }
        return .open
    }

    func fail(_ reason: String) -> TransportStatus {
        phase = .closed
        return .failed("WebSocket: \(reason)")
    }

    func writeFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], wire: inout ByteBuffer) {
        wire.writeBytes(WebSocketFrame.clientFrame(opcode, payload, mask: UInt32(truncatingIfNeeded: masks.next())))
    }

    /// The protocol's bytes as one masked binary frame appended to `wire`.
    public func send(_ plaintext: inout ByteBuffer, wire: inout ByteBuffer) {
        let count = plaintext.readableBytes
        guard count > 0 else { return }
        switch phase {
        case .upgrading:
            held.writeBytes(plaintext.readableView)
            plaintext.clear()
            return
        case .closed:
            plaintext.clear()
            return
        case .open:
            break
        }
        let mask = UInt32(truncatingIfNeeded: masks.next())
        let headerLength = count < 126 ? 6 : count <= 0xFFFF ? 8 : 14
        let h = wire.reserveWritable(headerLength)
        h.storeBytes(of: 0x80 | WebSocketOpcode.binary.rawValue, as: UInt8.self)
        if count < 126 {
            h.storeBytes(of: 0x80 | UInt8(count), toByteOffset: 1, as: UInt8.self)
        } else if count <= 0xFFFF {
            h.storeBytes(of: 0x80 | 126, toByteOffset: 1, as: UInt8.self)
            h.storeBytes(of: UInt16(count).bigEndian, toByteOffset: 2, as: UInt16.self)
        } else {
            h.storeBytes(of: 0x80 | 127, toByteOffset: 1, as: UInt8.self)
            h.storeBytes(of: UInt64(count).bigEndian, toByteOffset: 2, as: UInt64.self)
        }
        h.storeBytes(of: mask.bigEndian, toByteOffset: headerLength - 4, as: UInt32.self)
        wire.commitWritten(headerLength)
        let p = wire.reserveWritable(count)
        _ = WebSocketFrame.unmask(plaintext.readableView.baseAddress!, into: p, count: count, key: mask, phase: 0)
        wire.commitWritten(count)
        plaintext.clear()
    }
}
