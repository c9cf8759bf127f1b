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
        if untakenSplices > 0, let taken = outboundSplices.removeValue(forKey: id.slot) {
            untakenSplices -= taken.count
            splices.append(contentsOf: taken)
        }
        swap(&connections[Int(id.slot)].outbound, &buffer)
    }

    /// Whether a QoS 0 payload is worth splicing: it is held already (the frame it came in, or
    /// another shard's shared bytes), or large, or goes to several subscribers here (one shared
    /// copy for all). A copy made for one subscriber would only replace the copy into its queue
    /// with an allocation and a copy (measured: 16 KiB pairs lost a fifth against Mosquitto).
    @inline(__always)
    func splicesWithoutCopy(_ payload: UnsafeRawBufferPointer) -> Bool {
        payload.count > StreamDecoder.retainedStorageLimit || (routing > 0 && routeLocalCount > 1)
            || currentFrame?.contains(payload) == true || (routePayloadSource == payload.baseAddress && routePayloadSource != nil)
    }

    /// A QoS 0 delivery of a large payload to a gathered connection: its PUBLISH's first bytes
    /// queued, the payload (held once for all its subscribers) spliced after them.
    @inline(never)
    func deliverSpliced(slot s: Int, retain: Bool, topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer,
                        payload: UnsafeRawBufferPointer) {
        let version = connections[s].version
        if connections[s].outboundAliases.maximum > 0, let (alias, known) = connections[s].outboundAliases.alias(for: topic) {
            PublishEncoder.encode(version: version, dup: false, qos: .atMostOnce, retain: retain,
                                  topic: known ? UnsafeRawBufferPointer(start: nil, count: 0) : topic, packetID: 0,
                                  properties: properties, payload: payload, topicAlias: alias, payloadFollows: true,
                                  into: &connections[s].outbound)
        } else {
            PublishEncoder.encode(version: version, dup: false, qos: .atMostOnce, retain: retain, topic: topic, packetID: 0,
                                  properties: properties, payload: payload, payloadFollows: true, into: &connections[s].outbound)
        }
        let (shared, offset) = sharedPayload(for: payload)
        spliceOutbound(slot: s, at: connections[s].outbound.readableBytes, bytes: shared, offset: offset)
    }

    /// Splices `bytes` from `offset` to their end into slot `s`'s outbound bytes at `at`; they
    /// count as waiting for the client until the runtime says what it still holds.
    @inline(__always)
    func spliceOutbound(slot s: Int, at: Int, bytes: SharedBytes, offset: Int) {
        let count = bytes.count - offset
        outboundSplices[Int32(s), default: []].append(OutboundSplice(at: at, bytes: bytes, start: bytes.start + offset, count: count))
        untakenSplices += 1
        connections[s].transportBacklog = connections[s].transportBacklog &+ Int32(clamping: count)
        markFlush(s)
    }

    /// Forgets the splices of slot `slot` (its socket is gone).
    @inline(__always)
    func dropSplices(_ slot: Int32) {
        guard untakenSplices > 0, let list = outboundSplices.removeValue(forKey: slot) else { return }
        untakenSplices -= list.count
    }

    /// Bytes of the payloads spliced into slot `slot`'s queue that the runtime has not taken.
    @inline(__always)
    func untakenSpliceBytes(_ slot: Int32) -> Int {
        guard untakenSplices > 0, let list = outboundSplices[slot] else { return 0 }
        var total = 0
        for splice in list { total += splice.count }
        return total
    }
}
