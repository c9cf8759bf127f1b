// The load generator's message payload: sequence number, send time, and whether the message
// belongs to the measured interval, padded to the requested size.

/// Layout: u64 sequence, u64 send time (ns, monotonic), u8 measured flag, padding.
public enum BenchPayload {
    public static let headerSize = 17

    /// Writes the header into `buffer` (which has at least `headerSize` bytes).
    @inlinable
    public static func write(sequence: UInt64, sentAt: UInt64, measured: Bool, into buffer: UnsafeMutableRawPointer) {
        buffer.storeBytes(of: sequence.littleEndian, as: UInt64.self)
        buffer.storeBytes(of: sentAt.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: measured ? 1 : 0, toByteOffset: 16, as: UInt8.self)
    }

    /// Reads the header; nil when the payload is too short to be ours.
    @inlinable
    public static func read(_ payload: UnsafeRawBufferPointer) -> (sequence: UInt64, sentAt: UInt64, measured: Bool)? {
        guard payload.count >= headerSize, let base = payload.baseAddress else { return nil }
        return (UInt64(littleEndian: base.loadUnaligned(as: UInt64.self)),
                UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                base.load(fromByteOffset: 16, as: UInt8.self) == 1)
    }
}
