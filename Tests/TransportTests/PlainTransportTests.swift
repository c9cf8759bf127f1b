// The identity layer keeps bytes and their order, whether `wire` is empty (the bytes change
// hands) or not (they are appended), and input split at every byte arrives whole.

import XCTest
import ApusBase
import Transport

final class PlainTransportTests: XCTestCase {
    func testInputSplitAtEveryByteArrivesWhole() {
        let message: [UInt8] = Array("\u{30}\u{05}\u{00}\u{01}ahi".utf8)
        for split in 0...message.count {
            var layer = PlainTransport()
            var plaintext = ByteBuffer(), wire = ByteBuffer()
            defer { plaintext.deallocate(); wire.deallocate() }
            message[..<split].withUnsafeBytes { XCTAssertEqual(layer.received($0, plaintext: &plaintext, wire: &wire), .open) }
            message[split...].withUnsafeBytes { XCTAssertEqual(layer.received($0, plaintext: &plaintext, wire: &wire), .open) }
            XCTAssertEqual(plaintext.readableArray(), message)
            XCTAssertTrue(wire.isEmpty, "the identity layer never answers on its own")
        }
    }

    func testSendKeepsOrderWithOrWithoutBytesWaiting() {
        var layer = PlainTransport()
        var plaintext = ByteBuffer(), wire = ByteBuffer()
        defer { plaintext.deallocate(); wire.deallocate() }
        plaintext.writeBytes([1, 2, 3])
        layer.send(&plaintext, wire: &wire)
        XCTAssertEqual(wire.readableArray(), [1, 2, 3])
        XCTAssertTrue(plaintext.isEmpty)
        plaintext.writeBytes([4, 5])
        layer.send(&plaintext, wire: &wire)  // the kernel has not taken [1, 2, 3] yet
        XCTAssertEqual(wire.readableArray(), [1, 2, 3, 4, 5])
        XCTAssertTrue(plaintext.isEmpty)
        XCTAssertEqual(layer.heldBytes, 0)
        XCTAssertTrue(layer.isEstablished)
        XCTAssertEqual(Transport.plain.name, "tcp")
    }
}
