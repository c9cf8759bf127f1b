// One TLS connection as a sans-IO transport layer: ciphertext from the socket in, plaintext for
// the protocol out; the protocol's plaintext in, records for the socket out. OpenSSL reads and
// writes through a BIO of ours (`apus_tls_io`): around each call it is handed the received bytes
// where they lie and a sink that appends to the caller's send buffer, so whatever OpenSSL writes
// (TLS 1.3 writes while reading: session tickets after the handshake, key updates) lands in the
// connection's send buffer, with no BIO buffer in between, and all bytes still move through the
// shard's ring. Before the handshake ends, the protocol's output is held (counted as held
// bytes). Everything the protocol queued in one loop turn is written with one SSL_write: as few
// records as 16 KiB allows (a 64-byte record costs about what a 1 KiB one does).

import ApusBase
import CApusTLS
import Transport

/// The TLS state of one connection.
public final class TLSSession: TransportLayer {
    let ssl: OpaquePointer
    /// What OpenSSL reads from and writes to during a call (set by `withIO`).
    let io: UnsafeMutablePointer<apus_tls_io>
    /// The protocol's output while the handshake runs.
    var held = ByteBuffer()
    public private(set) var isEstablished = false
    /// Why the layer failed, once it did.
    public private(set) var failure: String?
    /// Set when the handshake ended and the peer presented a verified certificate.
    public private(set) var peerCertificate = false

    /// A connection of `context` (a server context accepts, a client one connects).
    public init(context: TLSContext) throws(TLSError) {
        io = .allocate(capacity: 1)
        io.initialize(to: apus_tls_io(input: nil, input_left: 0, sink: nil, sink_context: nil))
        guard let made = apus_tls_new(context.pointer, context.isServer ? 1 : 0, io) else {
            io.deallocate()
            throw TLSError("SSL_new failed")
        }
        ssl = made
    }

    deinit {
        SSL_free(ssl)  // and its BIO
        io.deallocate()
        held.deallocate()
    }

    /// Runs `body` with OpenSSL reading `input` and writing into `wire`.
    @inline(__always)
    func withIO<R>(input: UnsafeRawBufferPointer, wire: inout ByteBuffer, _ body: () -> R) -> R {
        withUnsafeMutablePointer(to: &wire) { w in
            io.pointee.input = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
            io.pointee.input_left = input.count
            io.pointee.sink = tlsSink
            io.pointee.sink_context = UnsafeMutableRawPointer(w)
            defer { io.pointee = apus_tls_io(input: nil, input_left: 0, sink: nil, sink_context: nil) }
            return body()
        }
    }

    public var heldBytes: Int { held.readableBytes }

    /// A client session checks that the server's certificate names `host` (a DNS name, or an IPv4
    /// or IPv6 address against the certificate's IP addresses). Call before `start`.
    public func expectPeer(host: String) -> Bool {
        if host.contains(where: { $0 == ":" }) || host.split(separator: ".").count == 4 && host.allSatisfy({ $0.isNumber || $0 == "." }) {
            return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
        }
        return SSL_set1_host(ssl, host) == 1
    }

    /// A client's first flight (ClientHello): call once on a client session before any input.
    public func start(wire: inout ByteBuffer) -> TransportStatus {
        _ = withIO(input: UnsafeRawBufferPointer(start: nil, count: 0), wire: &wire) { handshake() }
        return failure.map { .failed($0) } ?? .open
    }

    public func received(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        if let failure { return .failed(failure) }
        holdsBuffers = true
        return withIO(input: bytes, wire: &wire) {
            if !isEstablished {
                if handshake() {
                    isEstablished = true
                    peerCertificate = SSL_get_verify_result(ssl) == X509_V_OK && SSL_get0_peer_certificate(ssl) != nil
                    if !held.isEmpty { write(&held) }
                } else if let failure {
                    return .failed(failure)  // the alert that tells the peer why is in `wire`
                }
            }
            // Everything received is taken: a handshake waits only once its input is used up,
            // and reading stops only when no whole record is left.
            return isEstablished ? read(into: &plaintext) : .open
        }
    }

    public func send(_ plaintext: inout ByteBuffer, wire: inout ByteBuffer) {
        guard !plaintext.isEmpty else { return }
        if !isEstablished || failure != nil {
            held.writeBytes(plaintext.readableView)
            plaintext.clear()
            return
        }
        holdsBuffers = true
        withIO(input: UnsafeRawBufferPointer(start: nil, count: 0), wire: &wire) { write(&plaintext) }
    }

    /// The close_notify alert, for a connection the broker ends.
    public func close(wire: inout ByteBuffer) {
        guard isEstablished, failure == nil else { return }
        _ = withIO(input: UnsafeRawBufferPointer(start: nil, count: 0), wire: &wire) { SSL_shutdown(ssl) }
    }

    /// The verified client certificate's subject CN (`subject` false) or whole subject (RFC 2253).
    public func peerIdentity(subject: Bool) -> String? {
        guard peerCertificate else { return nil }
        var out = [CChar](repeating: 0, count: 1024)
        let n = apus_tls_peer_identity(ssl, subject ? 1 : 0, &out, out.count)
        guard n > 0 else { return nil }
        return text(out)
    }

    /// Whether OpenSSL may hold record buffers (false right after `releaseBuffers`).
    public private(set) var holdsBuffers = true

    /// Gives OpenSSL's read and write buffers back while nothing is pending in them (a quiet
    /// connection); the next record allocates them again.
    public func releaseBuffers() {
        guard isEstablished, failure == nil, held.isEmpty else { return }
        let freed = SSL_free_buffers(ssl)
        if freed == 1 {
            holdsBuffers = false
            held.deallocate()
        }
    }

    /// The negotiated protocol version ("TLSv1.3"), for logs and tests.
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    // MARK: steps

    /// One handshake step: true once it is done; false while it needs more input (or failed:
    /// `failure` says why).
    func handshake() -> Bool {
        let r = SSL_do_handshake(ssl)
        if r == 1 { return true }
        let error = SSL_get_error(ssl, r)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return false }
        failure = reason(error)
        return false
    }

    /// Decrypts everything complete in the read BIO into `plaintext`.
    func read(into plaintext: inout ByteBuffer) -> TransportStatus {
        while true {
            let room = 16 << 10
            let p = plaintext.reserveWritable(room)
            let n = SSL_read(ssl, p, Int32(room))
            if n > 0 {
                plaintext.commitWritten(Int(n))
                continue
            }
            let error = SSL_get_error(ssl, n)
            switch error {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .open
            case SSL_ERROR_ZERO_RETURN: return .closed  // close_notify
            default:
                failure = reason(error)
                return .failed(failure!)
            }
        }
    }

    /// Encrypts all of `plaintext` (records of up to 16 KiB), consuming it.
    func write(_ plaintext: inout ByteBuffer) {
        while !plaintext.isEmpty {
            let view = plaintext.readableView
            let n = SSL_write(ssl, view.baseAddress!, Int32(clamping: view.count))
            if n <= 0 {
                failure = reason(SSL_get_error(ssl, n))
                plaintext.clear()
                return
            }
            plaintext.moveReaderIndex(forwardBy: Int(n))
        }
        plaintext.clear()
    }

    func reason(_ error: Int32) -> String {
        var text = [CChar](repeating: 0, count: 256)
        apus_tls_error(&text, text.count)
        let verify = String(cString: apus_tls_verify_error(ssl))
        var out = TLS.text(text)
        if out.isEmpty { out = error == SSL_ERROR_SYSCALL ? "connection broken during TLS" : "TLS error \(error)" }
        if !verify.isEmpty { out += " (certificate: \(verify))" }
        return out
    }
}

/// The BIO's sink: OpenSSL's output appended to the send buffer `withIO` pointed it at.
private let tlsSink: apus_tls_sink = { context, bytes, count in
    guard let context, let bytes else { return }
    context.assumingMemoryBound(to: ByteBuffer.self).pointee.writeBytes(UnsafeRawBufferPointer(start: bytes, count: count))
}
