// TLS and WebSocket for the load generator's pub/sub connections (--cafile, --cert, --key;
// --ws): the same sans-IO TLSSession the broker uses, as a client, and the WebSocket module's
// client layer above it (wss) or above TCP (ws). Set-up (handshake, upgrade, CONNECT/CONNACK,
// SUBSCRIBE/SUBACK) is blocking on the socket; the measured phase runs the layers between the
// ring and the codec, as the broker's shards do.

import ApusBase
import Codec
import TLS
import Transport
import WebSocket
@preconcurrency import Glibc

/// One set-up connection: its socket and, over TLS or WebSocket, their layers and the MQTT bytes
/// read ahead.
final class BenchLink {
    let fd: Int32
    let tls: TLSSession?
    var ws: WebSocketClient? = nil
    var plaintext = ByteBuffer()

    init(fd: Int32, tls: TLSSession?) { self.fd = fd; self.tls = tls }
    deinit { plaintext.deallocate() }

    /// Connects to `host:port`, with a context runs the TLS handshake, and with a path the
    /// WebSocket upgrade (blocking).
    static func open(host: String, port: UInt16, tls context: TLSContext?, webSocketPath: String? = nil) throws -> BenchLink {
        let fd = try BenchSocket.connect(host: host, port: port)
        var session: TLSSession? = nil
        if let context {
            do { session = try TLSSession(context: context) } catch { close(fd); throw BenchError("\(error)") }
        }
        let link = BenchLink(fd: fd, tls: session)
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        do {
            if let session {
                if case .failed(let why) = session.start(wire: &wire) { throw BenchError("TLS: \(why)") }
                while true {
                    if !wire.isEmpty {
                        try BenchSocket.send(fd, wire.readableArray())
                        wire.clear()
                    }
                    if session.isEstablished { break }
                    try link.readSome(into: &wire)
                }
            }
            if let webSocketPath {
                let ws = WebSocketClient()
                var request = ByteBuffer()
                defer { request.deallocate() }
                ws.start(host: host, path: webSocketPath, wire: &request)
                try link.sendLayered(request.readableArray())
                link.ws = ws
                while !ws.isEstablished {
                    try link.readSome(into: &wire)
                    if !wire.isEmpty { try BenchSocket.send(fd, wire.readableArray()); wire.clear() }
                }
            }
        } catch {
            close(fd)
            throw error
        }
        return link
    }

    /// Reads what the socket has (blocking) through the layers into `plaintext`; what they
    /// answer is sent.
    func readSome(into wire: inout ByteBuffer) throws {
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { throw BenchError("connection closed during set-up") }
        var bytes = ByteBuffer()
        defer { bytes.deallocate() }
        if let tls {
            let status = chunk.withUnsafeBytes { tls.received(UnsafeRawBufferPointer(rebasing: $0[..<n]), plaintext: &bytes, wire: &wire) }
            if case .failed(let why) = status { throw BenchError("TLS: \(why)") }
            if status == .closed { throw BenchError("TLS closed during set-up") }
        } else {
            chunk[..<n].withUnsafeBytes { bytes.writeBytes(UnsafeRawBufferPointer($0)) }
        }
        guard let ws else { return plaintext.writeBytes(bytes.readableView) }
        var answer = ByteBuffer()
        defer { answer.deallocate() }
        let status = ws.received(bytes.readableView, plaintext: &plaintext, wire: &answer)
        if status != .open { throw BenchError("WebSocket during set-up: \(status)") }
        if !answer.isEmpty { try sendLayered(answer.readableArray()) }
    }

    /// Bytes above TLS (the WebSocket layer's, or MQTT's without one): encrypted if need be, sent.
    func sendLayered(_ bytes: [UInt8]) throws {
        guard let tls else { return try BenchSocket.send(fd, bytes) }
        var plain = ByteBuffer()
        var wire = ByteBuffer()
        defer { plain.deallocate(); wire.deallocate() }
        plain.writeBytes(bytes)
        tls.send(&plain, wire: &wire)
        try BenchSocket.send(fd, wire.readableArray())
    }

    func send(_ bytes: [UInt8]) throws {
        guard let ws else { return try sendLayered(bytes) }
        var plain = ByteBuffer()
        var framed = ByteBuffer()
        defer { plain.deallocate(); framed.deallocate() }
        plain.writeBytes(bytes)
        ws.send(&plain, wire: &framed)
        try sendLayered(framed.readableArray())
    }

    /// The next whole packet (blocking).
    func readPacket(version: ProtocolVersion) throws -> Packet {
        guard tls != nil || ws != nil else { return try BenchSocket.readPacket(fd, version: version) }
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        while true {
            if let frame = try Self.frame(in: plaintext.readableView) {
                let packet = try PacketDecoder.decode(frame: UnsafeRawBufferPointer(rebasing: plaintext.readableView[..<frame]), version: version)
                plaintext.moveReaderIndex(forwardBy: frame)
                return packet
            }
            try readSome(into: &wire)
            if !wire.isEmpty { try BenchSocket.send(fd, wire.readableArray()); wire.clear() }
        }
    }

    /// The length of the whole packet at the start of `bytes`, if it is all there.
    static func frame(in bytes: UnsafeRawBufferPointer) throws -> Int? {
        guard let total = try PacketDecoder.frameLength(bytes, maxPacketSize: Int.max), bytes.count >= total else { return nil }
        return total
    }

    /// Connects and completes CONNECT/CONNACK.
    static func mqttConnect(host: String, port: UInt16, tls: TLSContext?, webSocketPath: String? = nil, clientID: String,
                            version: ProtocolVersion, clean: Bool, keepAlive: UInt16 = 300,
                            properties: Properties = Properties()) throws -> BenchLink {
        let link = try open(host: host, port: port, tls: tls, webSocketPath: webSocketPath)
        try link.send(Packet.connect(Connect(version: version, cleanStart: clean, keepAlive: keepAlive, clientID: clientID,
                                             properties: properties)).encoded(version: version))
        guard case .connack(let ack) = try link.readPacket(version: version), ack.reasonCode == .success else {
            close(link.fd)
            throw BenchError("CONNECT \(clientID) refused")
        }
        return link
    }

    func subscribe(filter: String, qos: QoS, version: ProtocolVersion) throws {
        try send(Packet.subscribe(Subscribe(packetID: 1, subscriptions: [
            SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])).encoded(version: version))
        while true {
            if case .suback(let ack) = try readPacket(version: version) {
                guard ack.reasonCodes.first.map({ !$0.isError }) ?? false else { throw BenchError("SUBSCRIBE \(filter) refused") }
                return
            }
        }
    }

    /// DISCONNECT and close.
    func disconnect() {
        try? send(BenchSocket.disconnectPacket)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

/// The client context of `--cafile` (and `--cert`/`--key`), or nil without TLS.
func benchTLSContext(cafile: String?, cert: String?, key: String?) throws -> TLSContext? {
    guard cafile != nil || cert != nil else { return nil }
    do { return try TLSContext(clientTrusting: cafile, certfile: cert, keyfile: key) } catch { throw BenchError("TLS: \(error)") }
}
