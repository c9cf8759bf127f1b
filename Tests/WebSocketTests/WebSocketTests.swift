// The WebSocket layer without sockets: RFC 6455's own handshake example, refusals, subprotocol
// choice, client frames split at every byte, control frames between fragments, the close
// handshake, every protocol error's close code, and the server's frames written in place.

import XCTest
import ApusBase
import HTTP1
import Transport
@testable import WebSocket

final class WebSocketTests: XCTestCase {
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    func upgradeRequest(path: String = "/mqtt", protocols: String? = "mqtt", extra: String = "", version: String = "13") -> [UInt8] {
        var text = "GET \(path) HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: \(Self.key)\r\nSec-WebSocket-Version: \(version)\r\n"
        if let protocols { text += "Sec-WebSocket-Protocol: \(protocols)\r\n" }
        return Array((text + extra + "\r\n").utf8)
    }

    func settings(_ edit: (inout WebSocketSettings) -> Void = { _ in }) -> WebSocketSettings {
        var s = WebSocketSettings()
        s.isEnabled = true
        edit(&s)
        return s
    }

    /// Feeds `bytes` to `session` in pieces cut at `cuts`; returns the plaintext, the wire bytes and the last status.
    func feed(_ session: WebSocketSession, _ bytes: [UInt8], cuts: [Int] = []) -> (plain: [UInt8], wire: [UInt8], status: TransportStatus) {
        var plaintext = ByteBuffer()
        var wire = ByteBuffer()
        defer { plaintext.deallocate(); wire.deallocate() }
        var status = TransportStatus.open
        var start = 0
        for end in cuts + [bytes.count] where end >= start {
            status = bytes[start..<end].withUnsafeBytes { session.received($0, plaintext: &plaintext, wire: &wire) }
            start = end
            if status != .open { break }
        }
        return (plaintext.readableArray(), wire.readableArray(), status)
    }

    func openSession(_ s: WebSocketSettings? = nil) -> WebSocketSession {
        let session = WebSocketSession(settings: s ?? settings())
        let result = feed(session, upgradeRequest())
        XCTAssertEqual(result.status, .open)
        XCTAssertTrue(session.isEstablished)
        return session
    }

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    // MARK: handshake

    func testRFC6455ExampleAcceptValue() {
        XCTAssertEqual(WebSocketHandshake.acceptValue(forKey: Self.key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    func testUpgradeSplitAtEveryByteAndFramesInTheSamePacket() {
        let frame = WebSocketFrame.clientFrame(.binary, [0x10, 0x00, 0x01], mask: 0x1234_5678)
        let bytes = upgradeRequest() + frame
        for cut in 0...bytes.count {
            let session = WebSocketSession(settings: settings())
            let result = feed(session, bytes, cuts: [cut])
            XCTAssertEqual(result.status, .open, "cut \(cut)")
            XCTAssertEqual(result.plain, [0x10, 0x00, 0x01], "cut \(cut)")
            let answer = text(result.wire)
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"), answer)
            XCTAssertTrue(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), answer)
            XCTAssertTrue(answer.contains("Sec-WebSocket-Protocol: mqtt\r\n"), answer)
            XCTAssertTrue(answer.hasSuffix("\r\n\r\n"))
        }
    }

    func answer(_ request: [UInt8], _ s: WebSocketSettings? = nil) -> (status: Int?, text: String, session: WebSocketSession) {
        let session = WebSocketSession(settings: s ?? settings())
        let result = feed(session, request)
        return (session.refusalStatus, text(result.wire), session)
    }

    func testSubprotocolChoice() {
        var r = answer(upgradeRequest(protocols: "foo, mqttv3.1, mqtt"))
        XCTAssertNil(r.status)
        XCTAssertTrue(r.text.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"), r.text)
        XCTAssertEqual(r.session.subprotocol, "mqttv3.1")
        // Offered over two header lines: the first MQTT one in the client's order.
        r = answer(upgradeRequest(protocols: "chat", extra: "Sec-WebSocket-Protocol: mqtt\r\n"))
        XCTAssertTrue(r.text.contains("Sec-WebSocket-Protocol: mqtt\r\n"), r.text)
        // None offered (embedded clients): accepted without the header.
        r = answer(upgradeRequest(protocols: nil))
        XCTAssertNil(r.status)
        XCTAssertFalse(r.text.contains("Sec-WebSocket-Protocol"), r.text)
        // Only others: refused.
        r = answer(upgradeRequest(protocols: "chat, superchat"))
        XCTAssertEqual(r.status, 400)
        XCTAssertTrue(r.text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        // permessage-deflate is not negotiated.
        r = answer(upgradeRequest(extra: "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
        XCTAssertNil(r.status)
        XCTAssertFalse(r.text.contains("Sec-WebSocket-Extensions"), r.text)
    }

    func testRefusals() {
        var r = answer(upgradeRequest(version: "8"))
        XCTAssertEqual(r.status, 426)
        XCTAssertTrue(r.text.contains("Sec-WebSocket-Version: 13\r\n"), r.text)
        r = answer(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertEqual(r.status, 426)
        XCTAssertTrue(r.text.contains("Upgrade: websocket\r\n"))
        r = answer(Array(text(upgradeRequest()).replacingOccurrences(of: "GET", with: "POST").utf8))
        XCTAssertEqual(r.status, 405)
        r = answer(Array(text(upgradeRequest()).replacingOccurrences(of: Self.key, with: "c2hvcnQ=").utf8))
        XCTAssertEqual(r.status, 400)
        r = answer(Array(text(upgradeRequest()).replacingOccurrences(of: "Host: server.example.com\r\n", with: "").utf8))
        XCTAssertEqual(r.status, 400)
        r = answer(Array(text(upgradeRequest()).replacingOccurrences(of: "HTTP/1.1", with: "HTTP/1.0").utf8))
        XCTAssertEqual(r.status, 400)
        // The required path, and any path without one.
        XCTAssertEqual(answer(upgradeRequest(path: "/"), settings { $0.path = "/mqtt" }).status, 404)
        XCTAssertNil(answer(upgradeRequest(path: "/mqtt"), settings { $0.path = "/mqtt" }).status)
        XCTAssertNil(answer(upgradeRequest(path: "/anything")).status)
        // Origins: listed ones and requests without Origin pass.
        let origins = settings { $0.origins = ["https://dash.example"] }
        XCTAssertEqual(answer(upgradeRequest(extra: "Origin: https://evil.example\r\n"), origins).status, 403)
        XCTAssertNil(answer(upgradeRequest(extra: "Origin: https://DASH.example\r\n"), origins).status)
        XCTAssertNil(answer(upgradeRequest(), origins).status)
        // Headers over the limit, complete or not.
        let big = upgradeRequest(extra: "Cookie: \(String(repeating: "a", count: 5000))\r\n")
        XCTAssertEqual(answer(big).status, 431)
        XCTAssertEqual(answer(Array(big[..<4500])).status, 431)
        XCTAssertNil(answer(big, settings { $0.headersSize = 8192 }).status)
        // An upgrade has no body: one announced is refused, not buffered.
        XCTAssertEqual(answer(upgradeRequest(extra: "Content-Length: 100000\r\n")).status, 413)
    }

    func testWhitespaceAroundHeaderValuesIsNotPartOfThem() {
        let padded = text(upgradeRequest(extra: "Origin: \thttps://dash.example \r\n"))
            .replacingOccurrences(of: "Version: 13", with: "Version: 13 \t")
            .replacingOccurrences(of: Self.key, with: " \(Self.key)  ")
        let r = answer(Array(padded.utf8), settings { $0.origins = ["https://dash.example"] })
        XCTAssertNil(r.status, r.text)
        XCTAssertTrue(r.text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), r.text)
    }

    func testForwardedForOnlyWhenTrusted() {
        let request = upgradeRequest(extra: "X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n")
        XCTAssertNil(answer(request).session.forwardedFor)
        XCTAssertEqual(answer(request, settings { $0.trustForwardedFor = true }).session.forwardedFor, "203.0.113.7")
    }

    // MARK: frames in

    func testFramesSplitAtEveryByte() {
        // A packet over two fragments, a ping between them, three frames' lengths in all three encodings.
        let big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let medium = (0..<300).map { UInt8(truncatingIfNeeded: $0) }
        var stream: [UInt8] = []
        stream += WebSocketFrame.clientFrame(.binary, [1, 2, 3], mask: 0xA1B2_C3D4, fin: false)
        stream += WebSocketFrame.clientFrame(.ping, Array("hi".utf8), mask: 0x0102_0304)
        stream += WebSocketFrame.clientFrame(.continuation, [4, 5], mask: 0xFFFF_0000, fin: true)
        stream += WebSocketFrame.clientFrame(.binary, medium, mask: 0x0BAD_F00D)
        stream += WebSocketFrame.clientFrame(.binary, [], mask: 0x1111_1111)
        stream += WebSocketFrame.clientFrame(.binary, big, mask: 0xDEAD_BEEF)
        let expected = [1, 2, 3, 4, 5] + medium + big
        let pong: [UInt8] = [0x8A, 0x02] + Array("hi".utf8)
        // Every cut in the first 400 bytes (headers, fragments, control frames), then a sample.
        for cut in Array(0...400) + Array(stride(from: 401, to: stream.count, by: 997)) {
            let session = openSession()
            let result = feed(session, stream, cuts: [cut])
            XCTAssertEqual(result.status, .open, "cut \(cut)")
            XCTAssertEqual(result.plain, expected, "cut \(cut)")
            XCTAssertEqual(result.wire, pong, "cut \(cut)")
        }
        // Byte by byte.
        let session = openSession()
        let result = feed(session, stream, cuts: Array(1..<stream.count))
        XCTAssertEqual(result.plain, expected)
        XCTAssertEqual(result.wire, pong)
    }

    func testUnmaskMatchesTheDefinitionAtEveryPhaseAndLength() {
        let source = (0..<40).map { UInt8($0 * 13 & 0xFF) }
        let key: UInt32 = 0x8142_C3F4
        let keyBytes = [UInt8(0x81), 0x42, 0xC3, 0xF4]
        for phase in 0..<4 {
            for count in 0...source.count {
                var out = [UInt8](repeating: 0, count: count)
                let next = source.withUnsafeBytes { s in
                    out.withUnsafeMutableBytes { WebSocketFrame.unmask(s.baseAddress!, into: $0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 8)!, count: count, key: key, phase: phase) }
                }
                XCTAssertEqual(out, (0..<count).map { source[$0] ^ keyBytes[($0 + phase) & 3] }, "phase \(phase) count \(count)")
                XCTAssertEqual(next, (phase + count) & 3)
            }
        }
    }

    /// The close frame the session sent, as (code, reason).
    func closeFrame(_ wire: [UInt8]) -> (UInt16, String)? {
        guard wire.count >= 4, wire[0] == 0x88 else { return nil }
        let length = Int(wire[1] & 0x7F)
        return (UInt16(wire[2]) << 8 | UInt16(wire[3]), text(Array(wire[4..<(2 + length)])))
    }

    func assertCloses(_ bytes: [UInt8], with code: UInt16, settings s: WebSocketSettings? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let session = openSession(s)
        let result = feed(session, bytes)
        guard case .failed = result.status else { return XCTFail("status \(result.status)", file: file, line: line) }
        XCTAssertEqual(closeFrame(result.wire)?.0, code, file: file, line: line)
        XCTAssertEqual(session.closeCode, code, file: file, line: line)
        // Nothing more is read or sent for data.
        XCTAssertEqual(feed(session, WebSocketFrame.clientFrame(.binary, [1], mask: 1)).plain, [], file: file, line: line)
    }

    func testProtocolErrorsCloseWithTheirCodes() {
        var unmasked = WebSocketFrame.clientFrame(.binary, [1, 2], mask: 0)
        unmasked[1] &= 0x7F
        unmasked.removeSubrange(2..<6)
        assertCloses(unmasked, with: 1002)
        assertCloses(WebSocketFrame.clientFrame(.text, Array("hello".utf8), mask: 7), with: 1003)
        var reserved = WebSocketFrame.clientFrame(.binary, [1], mask: 7)
        reserved[0] |= 0x40  // RSV1: permessage-deflate was not negotiated
        assertCloses(reserved, with: 1002)
        var opcode = WebSocketFrame.clientFrame(.binary, [1], mask: 7)
        opcode[0] = 0x83
        assertCloses(opcode, with: 1002)
        assertCloses(WebSocketFrame.clientFrame(.continuation, [1], mask: 7), with: 1002)
        assertCloses(WebSocketFrame.clientFrame(.binary, [1], mask: 7, fin: false) + WebSocketFrame.clientFrame(.binary, [2], mask: 7), with: 1002)
        assertCloses(WebSocketFrame.clientFrame(.ping, [UInt8](repeating: 1, count: 126), mask: 7), with: 1002)
        assertCloses(WebSocketFrame.clientFrame(.ping, [1], mask: 7, fin: false), with: 1002)
        // Lengths not in their shortest form: 5 in 16 bits, 200 in 64 bits.
        assertCloses([0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4], with: 1002)
        assertCloses([0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4], with: 1002)
        assertCloses([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], with: 1002)
        // Too big: one frame, or fragments together.
        let small = settings { $0.maxFrameSize = 100 }
        assertCloses(WebSocketFrame.clientFrame(.binary, [UInt8](repeating: 0, count: 101), mask: 7), with: 1009, settings: small)
        assertCloses(WebSocketFrame.clientFrame(.binary, [UInt8](repeating: 0, count: 60), mask: 7, fin: false)
                     + WebSocketFrame.clientFrame(.continuation, [UInt8](repeating: 0, count: 60), mask: 7), with: 1009, settings: small)
        // Without a limit of its own, a message of any size is streamed (it may carry many packets).
        let session = WebSocketSession(settings: settings())
        _ = feed(session, upgradeRequest())
        let large = feed(session, WebSocketFrame.clientFrame(.binary, [UInt8](repeating: 9, count: 3 << 20), mask: 7))
        XCTAssertEqual(large.status, .open)
        XCTAssertEqual(large.plain.count, 3 << 20)
        // Close frames that break the rules.
        assertCloses(WebSocketFrame.clientFrame(.close, [3], mask: 7), with: 1002)
        assertCloses(WebSocketFrame.clientFrame(.close, [0x03, 0xED], mask: 7), with: 1002)  // 1005 may not be sent
        assertCloses(WebSocketFrame.clientFrame(.close, [0x03, 0xE7], mask: 7), with: 1002)  // 999
        assertCloses(WebSocketFrame.clientFrame(.close, [0x03, 0xE8, 0xC3, 0x28], mask: 7), with: 1007)  // not UTF-8
    }

    func testCloseHandshake() {
        // The peer closes: the code is echoed and the layer is done.
        var session = openSession()
        var result = feed(session, WebSocketFrame.clientFrame(.close, [0x03, 0xE9] + Array("bye".utf8), mask: 9))
        XCTAssertEqual(result.status, .closed)
        XCTAssertEqual(result.wire, [0x88, 0x02, 0x03, 0xE9])
        XCTAssertEqual(session.closeCode, 1001)
        // No code: answered with 1000.
        session = openSession()
        result = feed(session, WebSocketFrame.clientFrame(.close, [], mask: 9))
        XCTAssertEqual(result.wire, [0x88, 0x02, 0x03, 0xE8])
        XCTAssertEqual(session.closeCode, 1005)
        // The broker closes first: 1000 out, nothing more sent, the peer's answer ends it.
        session = openSession()
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        XCTAssertTrue(session.close(wire: &wire))
        XCTAssertEqual(wire.readableArray(), [0x88, 0x02, 0x03, 0xE8])
        XCTAssertFalse(session.close(wire: &wire))
        var more = ByteBuffer()
        more.writeBytes([1, 2, 3])
        wire.clear()
        session.send(&more, wire: &wire)
        XCTAssertTrue(wire.isEmpty, "no data frame after a close")
        more.deallocate()
        result = feed(session, WebSocketFrame.clientFrame(.ping, [], mask: 1) + WebSocketFrame.clientFrame(.close, [0x03, 0xE8], mask: 9))
        XCTAssertEqual(result.status, .closed)
        XCTAssertEqual(result.wire, [], "a close is not answered twice, pings after ours are not answered")
    }

    // MARK: frames out

    func testOutputIsOneFramePerSendWithTheHeaderInTheHeadroom() {
        let session = openSession()
        for count in [1, 125, 126, 65_535, 65_536, 200_000] {
            var plaintext = ByteBuffer(capacity: count + 64)
            plaintext.clear(leavingHeadroom: WebSocketFrame.maxServerHeaderLength)
            let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 31) }
            plaintext.writeBytes(payload)
            let start = plaintext.base
            var wire = ByteBuffer()
            session.send(&plaintext, wire: &wire)
            XCTAssertTrue(plaintext.isEmpty)
            XCTAssertEqual(wire.base, start, "framed in place (\(count))")
            let bytes = wire.readableArray()
            let header = WebSocketFrame.serverHeaderLength(payload: count)
            XCTAssertEqual(bytes[0], 0x82)
            switch header {
            case 2: XCTAssertEqual(Int(bytes[1]), count)
            case 4: XCTAssertEqual(bytes[1], 126); XCTAssertEqual(Int(bytes[2]) << 8 | Int(bytes[3]), count)
            default:
                XCTAssertEqual(bytes[1], 127)
                XCTAssertEqual(bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }, count)
            }
            XCTAssertEqual(Array(bytes[header...]), payload)
            wire.deallocate()
            plaintext.deallocate()
        }
        // Without headroom the bytes move up; after the layer's own bytes they are appended.
        var plaintext = ByteBuffer()
        plaintext.writeBytes([9, 8, 7])
        var wire = ByteBuffer()
        session.send(&plaintext, wire: &wire)
        XCTAssertEqual(wire.readableArray(), [0x82, 3, 9, 8, 7])
        plaintext.writeBytes([6])
        session.send(&plaintext, wire: &wire)
        XCTAssertEqual(wire.readableArray(), [0x82, 3, 9, 8, 7, 0x82, 1, 6])
        wire.deallocate()
        plaintext.deallocate()
    }

    func testOutputBeforeTheUpgradeIsHeld() {
        let session = WebSocketSession(settings: settings())
        var plaintext = ByteBuffer()
        plaintext.writeBytes([1, 2])
        var wire = ByteBuffer()
        session.send(&plaintext, wire: &wire)
        XCTAssertTrue(wire.isEmpty)
        XCTAssertEqual(session.heldBytes, 2)
        let result = feed(session, upgradeRequest())
        XCTAssertTrue(text(result.wire).hasPrefix("HTTP/1.1 101"))
        XCTAssertEqual(Array(result.wire.suffix(4)), [0x82, 2, 1, 2])
        XCTAssertEqual(session.heldBytes, 0)
        wire.deallocate()
        plaintext.deallocate()
    }

    // MARK: the client (apus-bench's ws connections)

    /// Client and server talking through each other, every transfer cut at byte `cut` (0: whole).
    func converse(cut: Int) -> (toServer: [UInt8], toClient: [UInt8], client: WebSocketClient, server: WebSocketSession) {
        let client = WebSocketClient(seed: 42)
        let server = WebSocketSession(settings: settings())
        var toServer: [UInt8] = []
        var toClient: [UInt8] = []
        func carry(_ bytes: [UInt8], into layer: (UnsafeRawBufferPointer, inout ByteBuffer, inout ByteBuffer) -> TransportStatus,
                   plaintext: inout [UInt8]) -> [UInt8] {
            var plain = ByteBuffer()
            var answer = ByteBuffer()
            defer { plain.deallocate(); answer.deallocate() }
            let pieces = cut > 0 && cut < bytes.count ? [bytes[..<cut], bytes[cut...]] : [bytes[...]]
            for piece in pieces { XCTAssertEqual(piece.withUnsafeBytes { layer($0, &plain, &answer) }, .open) }
            plaintext += plain.readableArray()
            return answer.readableArray()
        }
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        client.start(host: "127.0.0.1", wire: &wire)
        var payload = ByteBuffer()
        defer { payload.deallocate() }
        payload.writeBytes([0x10, 0x02, 0xAA, 0xBB])
        client.send(&payload, wire: &wire)  // held until the 101
        XCTAssertEqual(client.heldBytes, 4)
        var fromServer = carry(wire.readableArray(), into: server.received, plaintext: &toServer)
        XCTAssertTrue(server.isEstablished)
        XCTAssertEqual(server.subprotocol, "mqtt")
        // The server's 101 reaches the client, which then sends what it held and a ping.
        var clientWire = carry(fromServer, into: client.received, plaintext: &toClient)
        XCTAssertTrue(client.isEstablished)
        XCTAssertEqual(client.heldBytes, 0)
        clientWire += WebSocketFrame.clientFrame(.ping, [7, 7], mask: 99)
        var big = ByteBuffer()
        defer { big.deallocate() }
        big.writeBytes((0..<70_000).map { UInt8(truncatingIfNeeded: $0 * 31) })
        var bigWire = ByteBuffer()
        defer { bigWire.deallocate() }
        client.send(&big, wire: &bigWire)
        clientWire += bigWire.readableArray()
        fromServer = carry(clientWire, into: server.received, plaintext: &toServer)
        XCTAssertEqual(fromServer, [0x8A, 2, 7, 7], "the pong")
        // The server's frames (small, 16-bit and 64-bit lengths) reach the client.
        var out = ByteBuffer()
        var outWire = ByteBuffer()
        defer { out.deallocate(); outWire.deallocate() }
        for count in [3, 300, 70_000] {
            out.writeBytes([UInt8](repeating: UInt8(count & 0xFF), count: count))
            server.send(&out, wire: &outWire)
            XCTAssertTrue(carry(outWire.readableArray(), into: client.received, plaintext: &toClient).isEmpty)
            outWire.clear()
        }
        return (toServer, toClient, client, server)
    }

    func testClientAndServerTalkThroughEachOtherSplitAtEveryByte() {
        let expectedToServer = [0x10, 0x02, 0xAA, 0xBB] + (0..<70_000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let expectedToClient = [UInt8](repeating: 3, count: 3) + [UInt8](repeating: UInt8(300 & 0xFF), count: 300)
            + [UInt8](repeating: UInt8(70_000 & 0xFF), count: 70_000)
        for cut in [0, 1, 2, 3, 5, 6, 7, 8, 13, 14, 100, 129, 130, 131, 135, 140, 1000] {
            let r = converse(cut: cut)
            XCTAssertEqual(r.toServer, expectedToServer, "cut \(cut)")
            XCTAssertEqual(r.toClient, expectedToClient, "cut \(cut)")
        }
    }

    func testClientRefusesAWrongAcceptValueAndEchoesAClose() {
        let client = WebSocketClient(seed: 1)
        var plain = ByteBuffer()
        var wire = ByteBuffer()
        defer { plain.deallocate(); wire.deallocate() }
        let bad = Array("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n".utf8)
        guard case .failed = bad.withUnsafeBytes({ client.received($0, plaintext: &plain, wire: &wire) }) else {
            return XCTFail("a wrong accept value is accepted")
        }
        let refused = WebSocketClient(seed: 1)
        let notFound = Array("HTTP/1.1 404 Not Found\r\n\r\n".utf8)
        guard case .failed = notFound.withUnsafeBytes({ refused.received($0, plaintext: &plain, wire: &wire) }) else {
            return XCTFail("a 404 is accepted")
        }
        let r = converse(cut: 0)
        var close = ByteBuffer()
        defer { close.deallocate() }
        XCTAssertTrue(r.server.close(wire: &close))
        let status = close.readableArray().withUnsafeBytes { r.client.received($0, plaintext: &plain, wire: &wire) }
        XCTAssertEqual(status, .closed)
        XCTAssertEqual(r.client.closeCode, 1000)
        // The echo is a masked close frame the server reads as the end of the handshake.
        XCTAssertEqual(feed(r.server, wire.readableArray()).status, .closed)
    }
}
