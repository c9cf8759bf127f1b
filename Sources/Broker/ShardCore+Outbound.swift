// Gathered output: a large payload the core holds once (SharedBytes) is spliced into a
// connection's outbound bytes instead of copied there; the runtime sends the bytes and the
// payloads with one sendmsg, from where they are. Only for connections whose runtime said it sends
// that way (plain TCP); TLS, WebSocket and bridges take flat bytes.

import Codec

/// A payload to send from where it is held, at offset `at` of the outbound bytes it was spliced
/// into (counted from their first readable byte). Holding it keeps the bytes alive.
public struct OutboundSplice {
    public var at: Int
    public var bytes: SharedBytes
    public var start: UnsafeRawPointer
    public var count: Int

    public init(at: Int, bytes: SharedBytes, start: UnsafeRawPointer, count: Int) {
        self.at = at; self.bytes = bytes; self.start = start; self.count = count
    }
}

extension ShardCore {
    /// Payloads at least this large are spliced into gathered output (below, one copy costs less
    /// than an iovec, the reference counting and a sendmsg).
    static let spliceMinimum = 16 << 10

    /// The runtime sends `id`'s output gathered (`takeOutbound(_:swappingWith:splices:)`).
    public func enableGatheredOutput(_ id: ConnectionID) {
        guard isCurrent(id) else { return }
        connections[Int(id.slot)].flow |= FlowFlag.gatheredOutput
    }

    /// Hands over the queued bytes (swapped with the empty `buffer`, as `takeOutbound`) and the
    /// payloads spliced into them, appended to `splices`.
    public func takeOutbound(_ id: ConnectionID, swappingWith buffer: inout ByteBuffer, splices: inout [OutboundSplice]) {
        assert(buffer.isEmpty, "the transport's buffer still holds bytes")
        if !outboundSplices.isEmpty, let taken = outboundSplices.removeValue(forKey: id.slot) {
            splices.append(contentsOf: taken)
        }
        swap(&connections[Int(id.slot)].outbound, &buffer)
    }

    /// Splices `bytes` from `offset` to their end into slot `s`'s outbound bytes at `at`; they
    /// count as waiting for the client until the runtime says what it still holds.
    @inline(__always)
    func spliceOutbound(slot s: Int, at: Int, bytes: SharedBytes, offset: Int) {
        let count = bytes.count - offset
        outboundSplices[Int32(s), default: []].append(OutboundSplice(at: at, bytes: bytes, start: bytes.start + offset, count: count))
        connections[s].transportBacklog = connections[s].transportBacklog &+ Int32(clamping: count)
        markFlush(s)
    }

    /// Bytes of the payloads spliced into slot `slot`'s queue that the runtime has not taken.
    @inline(__always)
    func untakenSpliceBytes(_ slot: Int32) -> Int {
        guard !outboundSplices.isEmpty, let list = outboundSplices[slot] else { return 0 }
        var total = 0
        for splice in list { total += splice.count }
        return total
    }
}
