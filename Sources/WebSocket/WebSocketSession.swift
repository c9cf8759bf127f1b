// One WebSocket connection as a sans-IO transport layer (RFC 6455, server side; MQTT §6): the
// upgrade request in, the 101 (or a refusal) out; then client frames in — their binary payload,
// unmasked, is the MQTT byte stream (a packet may span frames, a frame may carry several
// packets: the layer knows nothing of packets) — and the protocol's bytes out as one binary
// frame per send, its header written into room in front of them so they are not copied.
//
// What a client must do and what it gets otherwise (§5, §7):
//   unmasked frame, reserved bits, unknown opcode, a continuation with no message begun, a new
//   message inside a fragmented one, a fragmented or >125-byte control frame, a length not in
//   its shortest form: close 1002. A text frame: 1003 (MQTT is binary, MQTT-6.0.0-1). A message
//   over the limit: 1009. A close with a bad code: 1002; with a reason not UTF-8: 1007.
// Pings are answered with pongs carrying their payload (between fragments too); pongs are
// ignored. A close is answered with a close echoing its code; the broker's own close (it ended
// the connection) is 1000, and the peer's answer is not waited for beyond the runtime's linger.

import ApusBase
import HTTP1
import Transport

/// The WebSocket state of one connection.
public final class WebSocketSession: TransportLayer {
    enum Phase { case upgrading, open, closeSent, closed }

    let settings: WebSocketSettings
    /// The largest message a client may send (Int.max: no limit).
    let maxMessage: Int
    var phase = Phase.upgrading
    /// The upgrade request so far (freed once answered).
    var request: [UInt8] = []

    // The frame being read.
    /// Header bytes so far (at most 14), and how many the header has in all once known.
    var header: (UInt64, UInt64) = (0, 0)
    var headerCount = 0
    var inPayload = false
    var payloadLeft: UInt64 = 0
    var opcode = WebSocketOpcode.binary
    var key: UInt32 = 0
    var maskPhase = 0
    /// A fragmented message is open (its first frame had FIN clear), and its bytes so far.
    var fragmented = false
    var messageBytes = 0
    /// A control frame's payload (at most 125 bytes).
    var control: [UInt8] = []
    /// The protocol's output before the upgrade was answered.
    var held = ByteBuffer()

    /// The subprotocol the answer named (nil: the client offered none).
    public private(set) var subprotocol: String? = nil
    /// The client's address as a proxy reported it (X-Forwarded-For, when trusted).
    public private(set) var forwardedFor: String? = nil
    /// The close code received from the peer or sent for its fault, once there is one.
    public private(set) var closeCode: UInt16? = nil
    /// The refusal status of a failed upgrade (426, 400, …), for counters and tests.
    public private(set) var refusalStatus: Int? = nil

    /// A connection of a listener with `settings`. Messages have no limit of their own unless
    /// the settings set one: their payload is streamed to the protocol, never held whole, and a
    /// message may carry several MQTT packets, each bounded by the broker's max_packet_size.
    public init(settings: WebSocketSettings) {
        self.settings = settings
        self.maxMessage = settings.maxFrameSize ?? Int.max
    }

    deinit { held.deallocate() }

    public var isEstablished: Bool { phase != .upgrading }
    public var heldBytes: Int { held.readableBytes }
    /// Whether a close frame went out or came in (no data frame may follow one).
    public var isClosing: Bool { phase == .closeSent || phase == .closed }

    // MARK: input

    public func received(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        switch phase {
        case .upgrading: return upgrade(bytes, plaintext: &plaintext, wire: &wire)
        case .open, .closeSent: return frames(bytes, plaintext: &plaintext, wire: &wire)
        case .closed: return .closed  // after the close handshake input is discarded
        }
    }

    func upgrade(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        request.append(contentsOf: bytes)
        let (result, consumed) = HTTPRequestParser.parse(request, maxHeaderBytes: settings.headersSize, maxBodyBytes: 0)
        let outcome: WebSocketHandshake.Outcome
        switch result {
        case .incomplete: return .open
        case .invalid(let status, let reason): outcome = WebSocketHandshake.refuse(status, reason)
        case .complete(let request): outcome = WebSocketHandshake.answer(request, settings: settings)
        }
        switch outcome {
        case .refuse(let status, let reason, let response):
            request = []
            refusalStatus = status
            phase = .closed
            wire.writeBytes(response)
            return .failed("WebSocket upgrade refused (\(status)): \(reason)")
        case .upgrade(let response, let subprotocol, let forwardedFor):
            self.subprotocol = subprotocol
            self.forwardedFor = forwardedFor
            wire.writeBytes(response)
            phase = .open
            let rest = Array(request[consumed...])
            request = []
            if !held.isEmpty {
                send(&held, wire: &wire)
                held.deallocate()
            }
            if rest.isEmpty { return .open }
            return rest.withUnsafeBytes { frames($0, plaintext: &plaintext, wire: &wire) }
        }
    }

    /// Reads frames: binary payload to `plaintext`, control answers to `wire`.
    func frames(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        guard let base = bytes.baseAddress else { return .open }
        var i = 0
        let n = bytes.count
        while i < n {
            if !inPayload {
                // Header bytes: 2, then the extended length (0, 2 or 8), then the mask (4).
                while i < n {
                    withUnsafeMutableBytes(of: &header) { $0[headerCount] = base.load(fromByteOffset: i, as: UInt8.self) }
                    headerCount += 1
                    i += 1
                    if headerCount >= 2 && headerCount == headerLength() { break }
                }
                guard headerCount >= 2, headerCount == headerLength() else { return .open }
                if let failure = beginFrame(wire: &wire) { return failure }
                if payloadLeft == 0, let status = endFrame(plaintext: &plaintext, wire: &wire) { return status }
                continue
            }
            let take = Int(min(payloadLeft, UInt64(n - i)))
            if opcode.isControl {
                control.reserveCapacity(125)
                let start = control.count
                control.append(contentsOf: repeatElement(0, count: take))
                control.withUnsafeMutableBytes { c in
                    maskPhase = WebSocketFrame.unmask(base + i, into: c.baseAddress! + start, count: take, key: key, phase: maskPhase)
                }
            } else if phase == .open {
                let p = plaintext.reserveWritable(take)
                maskPhase = WebSocketFrame.unmask(base + i, into: p, count: take, key: key, phase: maskPhase)
                plaintext.commitWritten(take)
            }  // after our close, data frames are read and dropped
            i += take
            payloadLeft -= UInt64(take)
            if payloadLeft == 0, let status = endFrame(plaintext: &plaintext, wire: &wire) { return status }
        }
        return .open
    }

    /// How long the header being read is, from its second byte on.
    func headerLength() -> Int {
        let second = withUnsafeBytes(of: header) { $0[1] }
        let length = second & 0x7F
        return 2 + (length == 126 ? 2 : length == 127 ? 8 : 0) + (second & 0x80 != 0 ? 4 : 0)
    }

    /// Checks the header just read; nil, or the failure (its close frame is in `wire`).
    func beginFrame(wire: inout ByteBuffer) -> TransportStatus? {
        let (first, second, length, maskKey) = withUnsafeBytes(of: header) { h -> (UInt8, UInt8, UInt64, UInt32) in
            let second = h[1]
            var length = UInt64(second & 0x7F)
            var at = 2
            if length == 126 {
                length = UInt64(h[2]) << 8 | UInt64(h[3])
                at = 4
            } else if length == 127 {
                length = 0
                for j in 2..<10 { length = length << 8 | UInt64(h[j]) }
                at = 10
            }
            var mask: UInt32 = 0
            if second & 0x80 != 0 { for j in at..<(at + 4) { mask = mask << 8 | UInt32(h[j]) } }
            return (h[0], second, length, mask)
        }
        headerCount = 0
        header = (0, 0)
        let fin = first & 0x80 != 0
        if first & 0x70 != 0 { return fail(WebSocketCloseCode.protocolError, "reserved bits set (no extension was negotiated)", wire: &wire) }
        guard second & 0x80 != 0 else { return fail(WebSocketCloseCode.protocolError, "unmasked client frame", wire: &wire) }
        let short = second & 0x7F
        if (short == 126 && length < 126) || (short == 127 && length <= 0xFFFF) {
            return fail(WebSocketCloseCode.protocolError, "payload length not in its shortest form", wire: &wire)
        }
        if short == 127 && length >> 63 != 0 { return fail(WebSocketCloseCode.protocolError, "payload length over 2^63", wire: &wire) }
        guard let op = WebSocketOpcode(rawValue: first & 0x0F) else {
            return fail(WebSocketCloseCode.protocolError, "unknown opcode \(first & 0x0F)", wire: &wire)
        }
        switch op {
        case .close, .ping, .pong:
            if !fin { return fail(WebSocketCloseCode.protocolError, "fragmented control frame", wire: &wire) }
            if length > 125 { return fail(WebSocketCloseCode.protocolError, "control frame over 125 bytes", wire: &wire) }
            control.removeAll(keepingCapacity: true)
        case .text:
            return fail(WebSocketCloseCode.unsupportedData, "text frame: MQTT travels in binary frames", wire: &wire)
        case .binary, .continuation:
            if op == .binary && fragmented { return fail(WebSocketCloseCode.protocolError, "new message inside a fragmented one", wire: &wire) }
            if op == .continuation && !fragmented { return fail(WebSocketCloseCode.protocolError, "continuation frame with no message begun", wire: &wire) }
            if length > UInt64(maxMessage - messageBytes) {
                return fail(WebSocketCloseCode.messageTooBig, "message over \(maxMessage) bytes", wire: &wire)
            }
            fragmented = !fin
            messageBytes = fin ? 0 : messageBytes + Int(length)
        }
        opcode = op
        key = maskKey
        maskPhase = 0
        payloadLeft = length
        inPayload = true
        return nil
    }

    /// A frame's payload is all read: acts on control frames. Nil, or the layer's new status.
    func endFrame(plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus? {
        inPayload = false
        switch opcode {
        case .ping:
            if phase == .open { control.withUnsafeBytes { WebSocketFrame.writeServerFrame(.pong, payload: $0, into: &wire) } }
        case .close:
            return peerClosed(wire: &wire)
        default:
            break
        }
        return nil
    }

    func peerClosed(wire: inout ByteBuffer) -> TransportStatus {
        var code = WebSocketCloseCode.noStatus
        if control.count == 1 { return fail(WebSocketCloseCode.protocolError, "close frame with a 1-byte payload", wire: &wire) }
        if control.count >= 2 {
            code = UInt16(control[0]) << 8 | UInt16(control[1])
            guard WebSocketCloseCode.isValidReceived(code) else {
                return fail(WebSocketCloseCode.protocolError, "close code \(code) may not be sent", wire: &wire)
            }
            guard String(validating: control[2...], as: UTF8.self) != nil else {
                return fail(WebSocketCloseCode.invalidPayload, "close reason is not UTF-8", wire: &wire)
            }
        }
        if closeCode == nil { closeCode = code }
        if phase == .open {
            // Echo the code (none received: 1000).
            let echo = code == WebSocketCloseCode.noStatus ? WebSocketCloseCode.normal : code
            writeClose(echo, reason: "", wire: &wire)
        }
        phase = .closed
        control = []
        return .closed
    }

    /// The peer broke the protocol: a close frame with `code` goes out and the layer is done.
    func fail(_ code: UInt16, _ reason: String, wire: inout ByteBuffer) -> TransportStatus {
        if phase == .open {
            closeCode = code
            writeClose(code, reason: reason, wire: &wire)
        }
        phase = .closed
        control = []
        return .failed("WebSocket close \(code): \(reason)")
    }

    func writeClose(_ code: UInt16, reason: String, wire: inout ByteBuffer) {
        var payload = [UInt8(code >> 8), UInt8(code & 0xFF)]
        payload += reason.utf8.prefix(123)
        payload.withUnsafeBytes { WebSocketFrame.writeServerFrame(.close, payload: $0, into: &wire) }
    }

    // MARK: output

    /// The protocol's bytes as one binary frame. With `wire` empty, the header goes into the room
    /// in front of `plaintext`'s bytes and the two buffers change hands: nothing is copied when
    /// `plaintext` was cleared with headroom (`ByteBuffer.clear(leavingHeadroom:)`).
    public func send(_ plaintext: inout ByteBuffer, wire: inout ByteBuffer) {
        guard !plaintext.isEmpty else { return }
        switch phase {
        case .upgrading:
            held.writeBytes(plaintext.readableView)
            plaintext.clear()
            return
        case .closeSent, .closed:
            plaintext.clear()  // no data frame after a close
            return
        case .open:
            break
        }
        let count = plaintext.readableBytes
        let headerLength = WebSocketFrame.serverHeaderLength(payload: count)
        if wire.isEmpty {
            WebSocketFrame.writeServerHeader(.binary, payload: count, at: plaintext.prependRoom(headerLength))
            swap(&plaintext, &wire)
        } else {
            WebSocketFrame.writeServerHeader(.binary, payload: count, at: wire.reserveWritable(headerLength))
            wire.commitWritten(headerLength)
            wire.writeBytes(plaintext.readableView)
            plaintext.clear()
        }
    }

    /// The broker ends the connection: a close frame with `code` (1000) unless one was already
    /// sent or received. Returns whether one was written.
    @discardableResult
    public func close(code: UInt16 = WebSocketCloseCode.normal, wire: inout ByteBuffer) -> Bool {
        guard phase == .open else { return false }
        writeClose(code, reason: "", wire: &wire)
        closeCode = code
        phase = .closeSent
        return true
    }
}
