// Packet framing and the streaming decoder that accepts input split at any byte.

/// Stateless packet framing and decoding.
public enum PacketDecoder {
    /// Reads the fixed header at the start of `bytes`. Returns the total frame length
    /// (fixed header + remaining length) or nil when the header itself is incomplete.
    /// Throws `.malformedVariableByteInteger` (remaining length over 4 bytes),
    /// `.reservedPacketType`, or `.packetTooLarge` when the frame would exceed `maxPacketSize`
    /// (checked as soon as the remaining length is known, before the body arrives).
    @inlinable
    public static func frameLength(_ bytes: UnsafeRawBufferPointer, maxPacketSize: Int) throws(DecodeError) -> Int? {
        guard bytes.count >= 1 else { return nil }
        if bytes[0] >> 4 == 0 { throw .reservedPacketType }
        var remaining = 0
        var shift = 0
        var index = 1
        while true {
            if index > 4 { throw .malformedVariableByteInteger }
            guard index < bytes.count else { return nil }
            let byte = bytes[index]
            remaining |= Int(byte & 0x7F) << shift
            index += 1
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        let total = index + remaining
        if total > maxPacketSize { throw .packetTooLarge }
        return total
    }

    /// Checks the packet type and fixed-header flags of a first byte (what `decode` checks once
    /// the whole frame is there): reserved type 0, PUBLISH QoS 3, other types' reserved flags.
    @inlinable
    public static func checkFirstByte(_ first: UInt8) throws(DecodeError) {
        guard let type = PacketType(rawValue: first >> 4) else { throw .reservedPacketType }
        let flags = first & 0x0F
        if type == .publish {
            if flags & 0b0110 == 0b0110 { throw .invalidQoS }
            return
        }
        let expectedFlags: UInt8 = (type == .pubrel || type == .subscribe || type == .unsubscribe) ? 0b0010 : 0
        guard flags == expectedFlags else { throw .invalidFixedHeaderFlags }
    }

    /// Decodes exactly one complete frame (as delimited by `frameLength`).
    /// `version` selects the 3.1.1 or 5.0 layout for every packet but CONNECT, which carries its own.
    /// A `.publish` result points into `frame`.
    @inlinable
    public static func decode(frame: UnsafeRawBufferPointer, version: ProtocolVersion) throws(DecodeError) -> Packet {
        var reader = ByteReader(frame)
        let first = try reader.readByte()
        let remaining = try reader.readVariableByteInteger()
        // v5: "the encoded value MUST use the minimum number of bytes" [MQTT-1.5.5-1]: a last
        // length byte of 0 after the first is a longer encoding than needed.
        if version == .v5 && reader.offset > 2 && frame[reader.offset - 1] == 0 { throw .malformedVariableByteInteger }
        guard remaining == reader.remaining else { throw remaining > reader.remaining ? .truncated : .trailingBytes }
        guard let type = PacketType(rawValue: first >> 4) else { throw .reservedPacketType }
        let flags = first & 0x0F
        if type == .publish {
            return .publish(try decodePublish(flags: flags, reader: &reader, version: version))
        }
        let expectedFlags: UInt8 = (type == .pubrel || type == .subscribe || type == .unsubscribe) ? 0b0010 : 0
        guard flags == expectedFlags else { throw .invalidFixedHeaderFlags }
        return try decodeOther(type, reader: &reader, version: version)
    }
}

/// A streaming decoder for one connection: accepts input split at any byte.
///
/// Usage: `feed(chunk)`, then call `next()` until it returns nil. Packets point either into the
/// chunk or into the decoder's own storage and stay valid until the following `next()` call.
/// When `next()` returns nil, the incomplete tail of the chunk has been copied into the decoder's
/// storage and the caller may reuse the chunk. Call `deallocate()` when the connection ends.
public struct StreamDecoder: @unchecked Sendable {
    // Field order keeps the decoder at 62 bytes (a connection slot holds one; the small fields
    // last leave the tail free for the slot's own small fields).
    @usableFromInline var storage = ByteBuffer()
    @usableFromInline var chunk = UnsafeRawBufferPointer(start: nil, count: 0)
    @usableFromInline var chunkOffset = 0
    @usableFromInline var _maxPacketSize: UInt32
    /// The layout for packets after CONNECT; the session sets it once CONNECT is accepted.
    public var version: ProtocolVersion
    /// What storage holds besides a partial frame: 1 the frame `next()` returned last, 2 lent
    /// (the rest of a large frame is being received straight into it, `lendRoom`).
    @usableFromInline var storageState: UInt8 = 0
    @inlinable var storageHoldsReturnedFrame: Bool {
        get { storageState == 1 }
        set { storageState = newValue ? 1 : 0 }
    }
    @inlinable var storageLent: Bool {
        get { storageState == 2 }
        set { storageState = newValue ? 2 : 0 }
    }

    /// Frames larger than this are rejected with `.packetTooLarge` (at most 268,435,460, the
    /// largest frame MQTT can describe).
    @inlinable public var maxPacketSize: Int {
        get { Int(_maxPacketSize) }
        set { _maxPacketSize = UInt32(clamping: Swift.min(newValue, 268_435_460)) }
    }

    public init(version: ProtocolVersion = .v3_1_1, maxPacketSize: Int = 268_435_460) {
        self.version = version
        self._maxPacketSize = UInt32(clamping: Swift.min(maxPacketSize, 268_435_460))
    }

    /// Hands the decoder the next chunk of input. The previous chunk must have been drained
    /// (`next()` returned nil).
    @inlinable public mutating func feed(_ chunk: UnsafeRawBufferPointer) {
        self.chunk = chunk
        chunkOffset = 0
    }

    /// The next complete packet, or nil when more input is needed.
    @inlinable public mutating func next() throws(DecodeError) -> Packet? {
        if _slowPath(storageLent) { return nil }  // the rest of the frame is still being received into it
        if storageHoldsReturnedFrame {
            // A large packet's storage goes back rather than staying with the connection: what a
            // connection holds between packets stays small, whatever it sent once.
            if storage.capacity > StreamDecoder.retainedStorageLimit { storage.deallocate() } else { storage.clear() }
            storageHoldsReturnedFrame = false
        }
        if !storage.isEmpty { return try completeStoredFrame() }
        let available = chunk.count - chunkOffset
        guard available > 0 else { return nil }
        let rest = UnsafeRawBufferPointer(rebasing: chunk[chunkOffset...])
        if let total = try PacketDecoder.frameLength(rest, maxPacketSize: maxPacketSize), total <= available {
            chunkOffset += total
            return try PacketDecoder.decode(frame: UnsafeRawBufferPointer(rebasing: rest[0..<total]), version: version)
        }
        // A packet that waits for more input: its type and flags are checked now, so a bad one is
        // refused at once instead of after a body that may never come [MQTT-2.2.2-2].
        try PacketDecoder.checkFirstByte(rest[0])
        if let total = try PacketDecoder.frameLength(rest, maxPacketSize: maxPacketSize), total > 4096, rest.count >= total / 8 {
            storage.reserveCapacity(total)  // as completeStoredFrame does once an eighth is here
        }
        storage.writeBytes(rest)
        chunkOffset = chunk.count
        return nil
    }

    /// Completes the partial frame in storage from the chunk, copying only what that frame needs.
    @usableFromInline mutating func completeStoredFrame() throws(DecodeError) -> Packet? {
        while true {
            if let total = try PacketDecoder.frameLength(storage.readableView, maxPacketSize: maxPacketSize) {
                let need = total - storage.readableBytes
                let take = Swift.min(need, chunk.count - chunkOffset)
                // A large frame would otherwise double its storage several times on the way (each
                // time copying what came so far, about one more copy of the whole packet). Once an
                // eighth of it is here, the storage takes its full size at once: a client must send
                // bytes to make the broker reserve at most eight times as much (and partial
                // packets' memory is capped per shard, partial_packet_memory_limit).
                if storage.capacity < total && (storage.readableBytes + take) >= total / 8 && total > 4096 {
                    storage.reserveCapacity(total)
                }
                if take > 0 {
                    storage.writeBytes(UnsafeRawBufferPointer(rebasing: chunk[chunkOffset..<(chunkOffset + take)]))
                    chunkOffset += take
                }
                guard storage.readableBytes == total else { return nil }
                storageHoldsReturnedFrame = true
                return try PacketDecoder.decode(frame: storage.readableView, version: version)
            }
            // The fixed header itself is incomplete: move one byte at a time (at most 4 more).
            guard chunkOffset < chunk.count else { return nil }
            storage.writeByte(chunk[chunkOffset])
            chunkOffset += 1
        }
    }

    /// Takes the part of the current chunk that `next()` has not decoded yet and forgets it, so
    /// that the caller can hold it (the broker holds input that follows CONNECT until the session
    /// is ready). Any partial frame already in storage stays there.
    public mutating func detachRemainder() -> UnsafeRawBufferPointer {
        let rest = UnsafeRawBufferPointer(rebasing: chunk[chunkOffset...])
        chunkOffset = chunk.count
        return rest
    }

    /// Whether the packet `next()` just returned came through storage larger than
    /// `retainedStorageLimit` (which `takeReturnedFrame()` hands over).
    @inlinable public var holdsLargeReturnedFrame: Bool {
        storageHoldsReturnedFrame && storage.capacity > StreamDecoder.retainedStorageLimit
    }

    /// The storage of the large packet `next()` just returned, handed over as shared bytes (its
    /// packet's pointers stay valid as long as they live), or nil when that packet did not come
    /// through storage larger than `retainedStorageLimit` (storage that size is freed at the next
    /// `next()` anyway: the caller keeps it instead of copying the payload out).
    public mutating func takeReturnedFrame() -> SharedBytes? {
        guard holdsLargeReturnedFrame else { return nil }
        let frame = SharedBytes(adopting: storage)
        storage = ByteBuffer()
        storageHoldsReturnedFrame = false
        return frame
    }

    /// Bytes buffered for an incomplete packet.
    public var bufferedBytes: Int { storageHoldsReturnedFrame ? 0 : storage.readableBytes }

    /// Bytes the decoder has allocated (what its connection costs in memory for partial packets).
    public var storageCapacity: Int { storage.capacity }

    /// Storage larger than this is freed once its packet was returned, not kept for the next one.
    public static let retainedStorageLimit = 64 << 10

    /// The first byte of the next packet when `next()` would start a new one (nothing is buffered
    /// and the current chunk has bytes left), nil otherwise. Lets the session refuse a packet by
    /// its type before its body arrives (the first packet must be CONNECT [MQTT-3.1.0-1]).
    @inlinable public var nextPacketFirstByte: UInt8? {
        if !storageHoldsReturnedFrame && !storage.isEmpty { return nil }
        guard chunkOffset < chunk.count else { return nil }
        return chunk[chunkOffset]
    }

    /// Room for the rest of the large frame being received, when storage already holds the
    /// frame's full size and at least `minimum` bytes of it are missing: the caller receives
    /// straight into it (no copy through a receive buffer), then gives it back with
    /// `returnRoom(written:)`. Until then the storage is lent: `next()` must not be called, and
    /// `deallocate()` forgets it rather than free it (the borrower frees it; `lentAllocation`
    /// says where it starts).
    public mutating func lendRoom(minimum: Int) -> UnsafeMutableRawBufferPointer? {
        let need = roomToLend(minimum: minimum)
        guard need > 0 else { return nil }
        storageLent = true
        return UnsafeMutableRawBufferPointer(start: storage.base! + storage.writerIndex, count: need)
    }

    /// How many bytes `lendRoom(minimum:)` would lend now (0: none).
    public func roomToLend(minimum: Int) -> Int {
        let need = partialFrameNeed
        guard need >= Swift.max(minimum, 1), storage.capacity - storage.writerIndex >= need else { return 0 }
        return need
    }

    /// The bytes still missing of the partial frame in storage (0: none, or its length is not
    /// known yet), once the current chunk is consumed.
    public var partialFrameNeed: Int {
        guard !storageLent, !storageHoldsReturnedFrame, !storage.isEmpty, chunkOffset == chunk.count,
              let total = try? PacketDecoder.frameLength(storage.readableView, maxPacketSize: maxPacketSize) else { return 0 }
        return total - storage.readableBytes
    }

    /// Whether storage is lent (see `lendRoom`).
    public var isStorageLent: Bool { storageLent }

    /// The allocation lent storage lives in (what the borrower frees when the decoder forgot it).
    public var lentAllocation: UnsafeMutableRawPointer? { storageLent ? storage.base : nil }

    /// The lent room comes back with `written` bytes received into it (at most the room's size).
    public mutating func returnRoom(written: Int) {
        precondition(storageLent && written >= 0 && written <= storage.capacity - storage.writerIndex)
        storageLent = false
        storage.commitWritten(written)
        chunk = UnsafeRawBufferPointer(start: nil, count: 0)
        chunkOffset = 0
    }

    /// Frees the decoder's storage (forgets it while it is lent: its borrower frees it).
    public mutating func deallocate() {
        if storageLent {
            storage = ByteBuffer()
            storageLent = false
        }
        storage.deallocate()
        storageHoldsReturnedFrame = false
        chunk = UnsafeRawBufferPointer(start: nil, count: 0)
        chunkOffset = 0
    }
}
