// A bounds-checked cursor over packet bytes, with the MQTT data types of section 1.5.

/// Reads MQTT data types from a byte view; every read checks bounds and throws `.truncated`.
@usableFromInline
struct ByteReader {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var offset: Int

    @inlinable init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) { self.bytes = bytes; self.offset = offset }

    @inlinable var remaining: Int { bytes.count - offset }
    @inlinable var isAtEnd: Bool { offset >= bytes.count }

    @inlinable mutating func readByte() throws(DecodeError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    @inlinable mutating func readUInt16() throws(DecodeError) -> UInt16 {
        guard offset + 2 <= bytes.count else { throw .truncated }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    @inlinable mutating func readUInt32() throws(DecodeError) -> UInt32 {
        guard offset + 4 <= bytes.count else { throw .truncated }
        defer { offset += 4 }
        return UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    /// A variable byte integer: at most 4 bytes [MQTT-1.5.5].
    @inlinable mutating func readVariableByteInteger() throws(DecodeError) -> Int {
        var value = 0
        var shift = 0
        for _ in 0..<4 {
            let byte = try readByte()
            value |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        throw .malformedVariableByteInteger
    }

    /// A variable byte integer in its shortest encoding, as MQTT 5.0 requires of every one
    /// [MQTT-1.5.5-1] (properties exist only in 5.0): a last byte of 0 after the first is longer
    /// than needed.
    @inlinable mutating func readMinimalVariableByteInteger() throws(DecodeError) -> Int {
        let start = offset
        let value = try readVariableByteInteger()
        if offset - start > 1 && bytes[offset - 1] == 0 { throw .malformedVariableByteInteger }
        return value
    }

    @inlinable mutating func readBytes(_ count: Int) throws(DecodeError) -> UnsafeRawBufferPointer {
        guard count >= 0, offset + count <= bytes.count else { throw .truncated }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    /// Two-byte length then the bytes (binary data).
    @inlinable mutating func readBinaryView() throws(DecodeError) -> UnsafeRawBufferPointer {
        let length = Int(try readUInt16())
        return try readBytes(length)
    }

    /// A UTF-8 string as a validated view.
    @inlinable mutating func readStringView() throws(DecodeError) -> UnsafeRawBufferPointer {
        let view = try readBinaryView()
        guard TopicValidation.isValidMQTTString(view) else { throw .invalidUTF8 }
        return view
    }

    mutating func readString() throws(DecodeError) -> String {
        String(decoding: try readStringView(), as: UTF8.self)
    }

    mutating func readBinary() throws(DecodeError) -> [UInt8] {
        Array(try readBinaryView())
    }
}
