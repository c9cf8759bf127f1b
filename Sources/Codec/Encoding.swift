// Packet encoding into caller-provided `ByteBuffer`s. (Implementation: see the Codec issue notes.)

extension Packet {
    /// Appends the packet's wire form for `version` to `buffer`.
    /// For `.publish`, `properties.raw` is written verbatim as the v5 property block.
    public func encode(version: ProtocolVersion, into buffer: inout ByteBuffer) {
        fatalError("unimplemented")
    }

    /// The wire form as an array (tests and cold paths).
    public func encoded(version: ProtocolVersion) -> [UInt8] {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        encode(version: version, into: &buffer)
        return buffer.readableArray()
    }
}

extension Properties {
    /// The length of the encoded property block, without its variable-byte-integer length prefix.
    public func encodedLength() -> Int { fatalError("unimplemented") }

    /// Writes the property block with its length prefix.
    public func encode(into buffer: inout ByteBuffer) { fatalError("unimplemented") }
}

/// The hot-path PUBLISH encoder, used by the broker for every delivery without building a `Packet`.
public enum PublishEncoder {
    /// Appends a PUBLISH. `properties` is the v5 property block without its length prefix
    /// (ignored for 3.1/3.1.1). `packetID` is ignored for QoS 0.
    @inlinable
    public static func encode(
        version: ProtocolVersion, dup: Bool, qos: QoS, retain: Bool,
        topic: UnsafeRawBufferPointer, packetID: UInt16,
        properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
        into buffer: inout ByteBuffer
    ) {
        fatalError("unimplemented")
    }

    /// The encoded size of such a PUBLISH (for Maximum Packet Size checks).
    @inlinable
    public static func encodedLength(version: ProtocolVersion, qos: QoS, topicLength: Int, propertiesLength: Int, payloadLength: Int) -> Int {
        fatalError("unimplemented")
    }
}
