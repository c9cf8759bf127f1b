// The identity layer: what arrives is the protocol's, what the protocol sends goes out as is.
// The runtime's plain path does the same without copies (it swaps buffers); this type states the
// contract every layer meets, and the tests that a stack of layers keeps bytes in order use it.

import ApusBase

/// The identity transport layer.
public struct PlainTransport: TransportLayer, Sendable {
    public init() {}

    public mutating func received(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus {
        plaintext.writeBytes(bytes)
        return .open
    }

    public mutating func send(_ plaintext: inout ByteBuffer, wire: inout ByteBuffer) {
        if wire.isEmpty {
            swap(&plaintext, &wire)  // nothing waits in `wire`: the bytes change hands without a copy
        } else {
            wire.writeBytes(plaintext.readableView)
            plaintext.clear()
        }
    }

    public var heldBytes: Int { 0 }
    public var isEstablished: Bool { true }
}
