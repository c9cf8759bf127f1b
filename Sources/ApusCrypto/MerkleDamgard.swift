// The buffering and padding shared by SHA-256 and SHA-512: input is cut into blocks for a
// compression function, and the last block carries a 0x80 marker and the message bit length.

/// A compression function and its chaining state (the SHA-2 `H` words).
protocol BlockCompression: Sendable {
    /// Bytes per block: 64 for SHA-256, 128 for SHA-512.
    static var blockByteCount: Int { get }
    /// Bytes of big-endian bit length at the end of the last block: 8 for SHA-256, 16 for SHA-512.
    static var lengthByteCount: Int { get }
    static var digestByteCount: Int { get }

    /// The initial hash value.
    init()

    /// Absorbs `blocks`, whose count is a multiple of `blockByteCount`.
    mutating func compress(_ blocks: UnsafeRawBufferPointer)

    /// Writes the chaining state, big-endian, into the first `digestByteCount` bytes of `digest`.
    func writeDigest(to digest: UnsafeMutableRawBufferPointer)
}

/// Room for one partial block of up to 128 bytes, kept inline so hashers never allocate.
typealias PendingBlock = (
    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
)

/// The Merkle–Damgård construction over one compression function.
struct MerkleDamgard<Compression: BlockCompression>: Sendable {
    private var compression = Compression()
    private var pending: PendingBlock = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var pendingCount = 0
    private var totalByteCount: UInt64 = 0

    init() {}

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        let blockSize = Compression.blockByteCount
        totalByteCount &+= UInt64(bytes.count)
        var offset = 0

        if pendingCount > 0 {
            let start = pendingCount
            let take = min(blockSize - start, bytes.count)
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.advanced(by: start).copyMemory(from: base, byteCount: take) }
            pendingCount += take
            offset = take
            guard pendingCount == blockSize else { return }
            compressPending()
            pendingCount = 0
        }

        // Whole blocks go straight from the caller's memory to the compression function.
        let whole = (bytes.count - offset) / blockSize * blockSize
        if whole > 0 {
            compression.compress(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + whole]))
            offset += whole
        }

        let rest = bytes.count - offset
        if rest > 0 {
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: base + offset, byteCount: rest) }
            pendingCount = rest
        }
    }

    mutating func finalize(into digest: UnsafeMutableRawBufferPointer) {
        precondition(digest.count >= Compression.digestByteCount, "digest buffer too small")
        let blockSize = Compression.blockByteCount
        let lengthOffset = blockSize - Compression.lengthByteCount
        let used = pendingCount
        let bitLengthHigh = totalByteCount >> 61
        let bitLengthLow = totalByteCount << 3

        var block = pending
        withUnsafeMutableBytes(of: &block) { raw in
            let buffer = UnsafeMutableRawBufferPointer(rebasing: raw[0..<blockSize])
            buffer[used] = 0x80
            var end = used + 1
            if end > lengthOffset {
                // No room for the length: pad this block out and put the length in one more.
                buffer[end...].initializeMemory(as: UInt8.self, repeating: 0)
                compression.compress(UnsafeRawBufferPointer(buffer))
                end = 0
            }
            buffer[end..<blockSize - 8].initializeMemory(as: UInt8.self, repeating: 0)
            if Compression.lengthByteCount == 16 {
                buffer.storeBytes(of: bitLengthHigh.bigEndian, toByteOffset: blockSize - 16, as: UInt64.self)
            }
            buffer.storeBytes(of: bitLengthLow.bigEndian, toByteOffset: blockSize - 8, as: UInt64.self)
            compression.compress(UnsafeRawBufferPointer(buffer))
        }
        compression.writeDigest(to: digest)
        self = MerkleDamgard()
    }

    private mutating func compressPending() {
        var block = pending
        let blockSize = Compression.blockByteCount
        withUnsafeBytes(of: &block) { compression.compress(UnsafeRawBufferPointer(rebasing: $0[0..<blockSize])) }
    }
}
