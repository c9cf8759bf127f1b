// Gathered output of a plain TCP connection: the core's outbound bytes (`wire`) with large payloads
// spliced in (ShardCore+Outbound.swift), sent by sendmsg with the payloads' own memory as iovecs.
// The wire's bytes do not move until all is sent; holding the splices keeps the payloads alive
// while a send may read them.

import Broker
@preconcurrency import Glibc

final class OutboundGather {
    /// At most this many iovecs per sendmsg (what one send of a busy loop turn needs; the rest
    /// goes with the next).
    static let maxSegments = 64

    private(set) var splices: [OutboundSplice] = []
    /// Bytes of the wire in this gather, and how much of the whole (wire and splices) was sent.
    private var wireBytes = 0
    private var sent = 0
    private var total = 0
    private let header: UnsafeMutablePointer<msghdr>
    private let vectors: UnsafeMutablePointer<iovec>

    init() {
        header = .allocate(capacity: 1)
        header.initialize(to: msghdr())
        vectors = .allocate(capacity: OutboundGather.maxSegments)
    }

    deinit {
        header.deallocate()
        vectors.deallocate()
    }

    /// Whether a gather is under way (splices taken, not all sent).
    var isActive: Bool { total > 0 }

    /// Bytes not sent yet.
    var remaining: Int { total - sent }

    /// Starts sending `wireBytes` of the wire with the splices (taken from `splices`, which is left
    /// empty). The wire must hold exactly the bytes the splices' offsets count from.
    func begin(splices taken: inout [OutboundSplice], wireBytes: Int) {
        precondition(!isActive, "a gather is already under way")
        swap(&splices, &taken)
        taken.removeAll(keepingCapacity: true)
        self.wireBytes = wireBytes
        sent = 0
        total = wireBytes
        for splice in splices { total += splice.count }
    }

    /// The msghdr of the next send, from the first unsent byte: the wire's parts and the
    /// payloads in order (up to `maxSegments` iovecs).
    func prepare(wire: UnsafeRawBufferPointer) -> UnsafePointer<msghdr> {
        precondition(wire.count == wireBytes)
        var count = 0
        var position = 0  // in the whole stream
        var wireOffset = 0
        func add(_ start: UnsafeRawPointer, _ length: Int) {
            // The part of [position, position + length) not sent yet.
            let end = position + length
            if end > sent && count < OutboundGather.maxSegments {
                let skip = max(0, sent - position)
                vectors[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: start + skip), iov_len: length - skip)
                count += 1
            }
            position = end
        }
        for splice in splices {
            if splice.at > wireOffset { add(wire.baseAddress! + wireOffset, splice.at - wireOffset) }
            wireOffset = splice.at
            add(splice.start, splice.count)
            if count == OutboundGather.maxSegments { break }
        }
        if wireOffset < wireBytes && count < OutboundGather.maxSegments { add(wire.baseAddress! + wireOffset, wireBytes - wireOffset) }
        header.pointee = msghdr()
        header.pointee.msg_iov = vectors
        header.pointee.msg_iovlen = count
        return UnsafePointer(header)
    }

    /// `count` more bytes went out; true when all did (the gather ends and lets the payloads go).
    func advance(by count: Int) -> Bool {
        sent += count
        precondition(sent <= total)
        guard sent == total else { return false }
        splices.removeAll(keepingCapacity: true)
        sent = 0
        total = 0
        wireBytes = 0
        return true
    }
}
