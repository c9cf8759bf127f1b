// TLS for the load generator's pub/sub connections (--cafile, --cert, --key): the same sans-IO
// TLSSession the broker uses, as a client. Set-up (handshake, CONNECT/CONNACK, SUBSCRIBE/SUBACK)
// is blocking on the socket; the measured phase runs the session between the ring and the codec,
// as the broker's shards do.

import ApusBase
import Codec
import TLS
import Transport
@preconcurrency import Glibc

/// One set-up connection: its socket and, over TLS, its session and the plaintext read ahead.
final class BenchLink {
    let fd: Int32
    let tls: TLSSession?
    var plaintext = ByteBuffer()

    init(fd: Int32, tls: TLSSession?) { self.fd = fd; self.tls = tls }
    deinit { plaintext.deallocate() }

    /// Connects to `host:port` and, with a context, runs the TLS handshake (blocking).
    static func open(host: String, port: UInt16, tls context: TLSContext?) throws -> BenchLink {
        let fd = try BenchSocket.connect(host: host, port: port)
        guard let context else { return BenchLink(fd: fd, tls: nil) }
        let session: TLSSession
        do { session = try TLSSession(context: context) } catch { close(fd); throw BenchError("\(error)") }
        let link = BenchLink(fd: fd, tls: session)
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        if case .failed(let why) = session.start(wire: &wire) { close(fd); throw BenchError("TLS: \(why)") }
        while true {
            if !wire.isEmpty {
                try BenchSocket.send(fd, wire.readableArray())
                wire.clear()
            }
            if session.isEstablished { return link }
            try link.readSome(into: &wire)
        }
    }

    /// Reads what the socket has (blocking) through the session into `plaintext`; `wire` gets what
    /// the session answers.
    func readSome(into wire: inout ByteBuffer) throws {
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { throw BenchError("connection closed during set-up") }
        guard let tls else { plaintext.writeBytes(chunk[..<n].withUnsafeBytes { UnsafeRawBufferPointer($0) }); return }
        let status = chunk.withUnsafeBytes { tls.received(UnsafeRawBufferPointer(rebasing: $0[..<n]), plaintext: &plaintext, wire: &wire) }
        if case .failed(let why) = status { throw BenchError("TLS: \(why)") }
        if status == .closed { throw BenchError("TLS closed during set-up") }
    }

    func send(_ bytes: [UInt8]) throws {
        guard let tls else { return try BenchSocket.send(fd, bytes) }
        var plain = ByteBuffer()
        var wire = ByteBuffer()
        defer { plain.deallocate(); wire.deallocate() }
        plain.writeBytes(bytes)
        tls.send(&plain, wire: &wire)
        try BenchSocket.send(fd, wire.readableArray())
    }

    /// The next whole packet (blocking).
    func readPacket(version: ProtocolVersion) throws -> Packet {
        guard tls != nil else { return try BenchSocket.readPacket(fd, version: version) }
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
    static func mqttConnect(host: String, port: UInt16, tls: TLSContext?, clientID: String, version: ProtocolVersion, clean: Bool,
                            keepAlive: UInt16 = 300, properties: Properties = Properties()) throws -> BenchLink {
        let link = try open(host: host, port: port, tls: tls)
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
