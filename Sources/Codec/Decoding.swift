// Packet framing and decoding. (Implementation: see the Codec issue notes.)

/// Stateless packet framing and decoding.
public enum PacketDecoder {
    /// Reads the fixed header at the start of `bytes`. Returns the total frame length
    /// (fixed header + remaining length) or nil when the header itself is incomplete.
    /// Throws `.malformedVariableByteInteger` (remaining length over 4 bytes),
    /// `.reservedPacketType`, or `.packetTooLarge` when the frame would exceed `maxPacketSize`
    /// (checked as soon as the remaining length is known, before the body arrives).
    public static func frameLength(_ bytes: UnsafeRawBufferPointer, maxPacketSize: Int) throws(DecodeError) -> Int? {
        fatalError("unimplemented")
    }

    /// Decodes exactly one complete frame (as delimited by `frameLength`).
    /// `version` selects the 3.1.1 or 5.0 layout for every packet but CONNECT, which carries its own.
    /// A `.publish` result points into `frame`.
    public static func decode(frame: UnsafeRawBufferPointer, version: ProtocolVersion) throws(DecodeError) -> Packet {
        fatalError("unimplemented")
    }
}

/// A streaming decoder for one connection: accepts input split at any byte.
///
/// Usage: `feed(chunk)`, then call `next()` until it returns nil. Packets point either into the
/// chunk or into the decoder's own storage and stay valid until the following `next()` call.
/// When `next()` returns nil, the incomplete tail of the chunk has been copied into the decoder's
/// storage and the caller may reuse the chunk. Call `deallocate()` when the connection ends.
public struct StreamDecoder: @unchecked Sendable {
    /// The layout for packets after CONNECT; the session sets it once CONNECT is accepted.
    public var version: ProtocolVersion
    /// Frames larger than this are rejected with `.packetTooLarge`.
    public var maxPacketSize: Int

    public init(version: ProtocolVersion = .v3_1_1, maxPacketSize: Int = 268_435_460) {
        fatalError("unimplemented")
    }

    /// Hands the decoder the next chunk of input. The previous chunk must have been drained
    /// (`next()` returned nil).
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) {
        fatalError("unimplemented")
    }

    /// The next complete packet, or nil when more input is needed.
    public mutating func next() throws(DecodeError) -> Packet? {
        fatalError("unimplemented")
    }

    /// Bytes buffered for an incomplete packet.
    public var bufferedBytes: Int { fatalError("unimplemented") }

    /// Frees the decoder's storage.
    public mutating func deallocate() {
        fatalError("unimplemented")
    }
}
