// The TLS layer on memory buffers: a server and a client session (both through the layer) talk
// with no socket, the bytes between them split at every boundary; a certificate from another CA,
// a missing client certificate, a refused protocol version and close_notify. The certificates are
// made by the `openssl` command in a temporary directory.

import ApusBase
import Foundation
import TLS
import Transport
import XCTest

final class TLSSessionTests: XCTestCase {
    static let dir: String = {
        let dir = NSTemporaryDirectory() + "apus-tls-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func run(_ args: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "cd \(dir) && \(args) 2>/dev/null"]
            try! p.run()
            p.waitUntilExit()
        }
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        for ca in ["ca", "other-ca"] {
            run("openssl req -x509 \(ec) -keyout \(ca).key -out \(ca).crt -days 2 -subj /CN=\(ca)")
        }
        for (name, ca) in [("server", "ca"), ("client", "ca"), ("stranger", "other-ca")] {
            run("openssl req \(ec) -keyout \(name).key -out \(name).csr -subj /O=Apus/CN=\(name)")
            run("openssl x509 -req -in \(name).csr -CA \(ca).crt -CAkey \(ca).key -CAcreateserial -out \(name).crt -days 2")
        }
        return dir
    }()

    func path(_ name: String) -> String { "\(Self.dir)/\(name)" }

    func server(requireCertificate: Bool = false, minimum: TLSSettings.Version = .tls12) throws -> TLSContext {
        var s = TLSSettings()
        s.certfile = path("server.crt")
        s.keyfile = path("server.key")
        s.cafile = path("ca.crt")
        s.requireCertificate = requireCertificate
        s.minimumVersion = minimum
        return try TLSContext(server: s)
    }

    /// Runs the handshake and then `messages` both ways, moving each side's output to the other
    /// `chunk` bytes at a time; returns what each side received and the last statuses.
    struct Exchange {
        var serverGot = ByteBuffer()
        var clientGot = ByteBuffer()
        var serverStatus = TransportStatus.open
        var clientStatus = TransportStatus.open
    }

    func exchange(server: TLSSession, client: TLSSession, chunk: Int, toServer: [UInt8], toClient: [UInt8]) -> Exchange {
        var e = Exchange()
        var toS = ByteBuffer(), toC = ByteBuffer()
        defer { toS.deallocate(); toC.deallocate() }
        _ = client.start(wire: &toS)
        // The protocols' output is given before the handshake ends: the layers hold it.
        var out = ByteBuffer()
        out.writeBytes(toServer)
        client.send(&out, wire: &toS)
        out.writeBytes(toClient)
        server.send(&out, wire: &toC)
        out.deallocate()
        var rounds = 0
        while (!toS.isEmpty || !toC.isEmpty) && rounds < 100_000 {
            rounds += 1
            if !toS.isEmpty {
                let n = min(chunk, toS.readableBytes)
                let piece = Array(toS.readableView.prefix(n))
                toS.moveReaderIndex(forwardBy: n)
                piece.withUnsafeBytes { e.serverStatus = server.received($0, plaintext: &e.serverGot, wire: &toC) }
            }
            if !toC.isEmpty {
                let n = min(chunk, toC.readableBytes)
                let piece = Array(toC.readableView.prefix(n))
                toC.moveReaderIndex(forwardBy: n)
                piece.withUnsafeBytes { e.clientStatus = client.received($0, plaintext: &e.clientGot, wire: &toS) }
            }
            if case .failed = e.serverStatus { break }
            if case .failed = e.clientStatus { break }
        }
        return e
    }

    func testHandshakeAndDataSplitAtEveryBoundary() throws {
        let serverContext = try server()
        let clientContext = try TLSContext(clientTrusting: path("ca.crt"))
        let toServer = Array("CONNECT and a PUBLISH, sent before the handshake ended".utf8) + Array(repeating: 0x5A, count: 40_000)
        let toClient = Array("CONNACK".utf8)
        for chunk in [1, 2, 3, 5, 7, 13, 64, 100, 517, 1000, 1500, 4096, 16_384, 1 << 20] {
            let s = try TLSSession(context: serverContext)
            let c = try TLSSession(context: clientContext)
            var e = exchange(server: s, client: c, chunk: chunk, toServer: toServer, toClient: toClient)
            XCTAssertEqual(e.serverStatus, .open, "chunk \(chunk)")
            XCTAssertEqual(e.clientStatus, .open, "chunk \(chunk)")
            XCTAssertTrue(s.isEstablished && c.isEstablished, "chunk \(chunk)")
            XCTAssertEqual(e.serverGot.readableArray(), toServer, "chunk \(chunk)")
            XCTAssertEqual(e.clientGot.readableArray(), toClient, "chunk \(chunk)")
            XCTAssertEqual(s.heldBytes, 0)
            XCTAssertEqual(s.protocolVersion, "TLSv1.3")
            XCTAssertNil(s.peerIdentity(subject: false), "no client certificate was asked for")
            e.serverGot.deallocate(); e.clientGot.deallocate()
        }
    }

    func testClientCertificateIdentityAndCloseNotify() throws {
        let s = try TLSSession(context: try server(requireCertificate: true))
        let c = try TLSSession(context: try TLSContext(clientTrusting: path("ca.crt"), certfile: path("client.crt"), keyfile: path("client.key")))
        var e = exchange(server: s, client: c, chunk: 300, toServer: [1, 2, 3], toClient: [4])
        XCTAssertEqual(e.serverGot.readableArray(), [1, 2, 3])
        XCTAssertEqual(s.peerIdentity(subject: false), "client")
        XCTAssertEqual(s.peerIdentity(subject: true), "CN=client,O=Apus")
        // The server ends the connection: the client reads close_notify as the end.
        var wire = ByteBuffer(), plain = ByteBuffer()
        s.close(wire: &wire)
        XCTAssertFalse(wire.isEmpty)
        var back = ByteBuffer()
        XCTAssertEqual(wire.readableArray().withUnsafeBytes { c.received($0, plaintext: &plain, wire: &back) }, .closed)
        wire.deallocate(); plain.deallocate(); back.deallocate(); e.serverGot.deallocate(); e.clientGot.deallocate()
    }

    func testRefusals() throws {
        // A client certificate from another CA; none where one is required; a server certificate
        // the client does not trust; a protocol version below the minimum.
        let cases: [(TLSContext, TLSContext, String)] = [
            (try server(requireCertificate: true),
             try TLSContext(clientTrusting: path("ca.crt"), certfile: path("stranger.crt"), keyfile: path("stranger.key")), "unknown ca"),
            (try server(requireCertificate: true), try TLSContext(clientTrusting: path("ca.crt")), "certificate"),
            (try server(), try TLSContext(clientTrusting: path("other-ca.crt")), "client side"),
            (try server(minimum: .tls13), try TLSContext(clientTrusting: path("ca.crt"), maximumVersion: .tls12), "version"),
        ]
        for (i, (serverContext, clientContext, what)) in cases.enumerated() {
            let s = try TLSSession(context: serverContext)
            let c = try TLSSession(context: clientContext)
            var e = exchange(server: s, client: c, chunk: 1 << 20, toServer: Array("CONNECT".utf8), toClient: [])
            let serverFailed: Bool
            if case .failed = e.serverStatus { serverFailed = true } else { serverFailed = false }
            let clientFailed: Bool
            if case .failed = e.clientStatus { clientFailed = true } else { clientFailed = false }
            XCTAssertTrue(serverFailed || clientFailed, "case \(i): \(what)")
            XCTAssertTrue(e.serverGot.isEmpty, "case \(i): the protocol above got nothing")
            if i != 2 { XCTAssertTrue(serverFailed, "case \(i): the server refuses (\(what)): \(String(describing: s.failure))") }
            e.serverGot.deallocate(); e.clientGot.deallocate()
        }
    }

    func testBadSettingsAreRefusedWithTheReason() {
        var s = TLSSettings()
        s.certfile = path("server.crt")
        s.keyfile = path("client.key")
        XCTAssertThrowsError(try TLSContext(server: s)) { XCTAssertTrue("\($0)".contains("mismatch") || "\($0)".contains("does not match"), "\($0)") }
        s.keyfile = path("missing.key")
        XCTAssertThrowsError(try TLSContext(server: s)) { XCTAssertTrue("\($0)".contains("missing.key"), "\($0)") }
        s.keyfile = path("server.key")
        s.requireCertificate = true
        XCTAssertThrowsError(try TLSContext(server: s)) { XCTAssertTrue("\($0)".contains("cafile"), "\($0)") }
        s.cafile = path("ca.crt")
        s.ciphers = "NO-SUCH-CIPHER"
        XCTAssertThrowsError(try TLSContext(server: s)) { XCTAssertTrue("\($0)".contains("ciphers"), "\($0)") }
    }
}

extension TLSSessionTests {
    func testGarbageAndMangledHandshakesFailCleanly() throws {
        // A real ClientHello with one byte changed, cut short, or random bytes: the server layer
        // answers .failed (or waits for more), gives the protocol nothing, and never crashes.
        let serverContext = try server()
        let clientContext = try TLSContext(clientTrusting: path("ca.crt"))
        var hello = ByteBuffer()
        defer { hello.deallocate() }
        _ = try TLSSession(context: clientContext).start(wire: &hello)
        let clientHello = hello.readableArray()
        XCTAssertGreaterThan(clientHello.count, 100)
        var generator = SplitMix64(seed: 42)
        var failed = [0, 0, 0]
        for round in 0..<600 {
            var input: [UInt8]
            switch round % 3 {
            case 0:
                input = clientHello
                let i = Int(generator.next() % UInt64(input.count))
                input[i] ^= UInt8(truncatingIfNeeded: generator.next() | 1)
            case 1:
                input = Array(clientHello.prefix(Int(generator.next() % UInt64(clientHello.count))))
            default:
                input = (0..<Int(generator.next() % 4096)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            }
            let s = try TLSSession(context: serverContext)
            var plain = ByteBuffer(), wire = ByteBuffer()
            let status = input.withUnsafeBytes { s.received($0, plaintext: &plain, wire: &wire) }
            if case .failed = status { failed[round % 3] += 1 }
            XCTAssertTrue(plain.isEmpty, "round \(round): nothing reaches the protocol")
            XCTAssertFalse(s.isEstablished)
            plain.deallocate(); wire.deallocate()
        }
        // Random bytes are not a TLS record: refused at once (an empty input just waits). A changed
        // byte of a real hello is refused when it breaks its structure, else the handshake goes
        // on; a hello cut short waits for the rest.
        XCTAssertGreaterThanOrEqual(failed[2], 190, "\(failed)")
        XCTAssertGreaterThan(failed[0], 0, "\(failed)")
    }
}
