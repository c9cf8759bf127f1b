// A lock-free single-producer/single-consumer byte ring: the mailbox from one shard to another.
// Records (u32 length first, 8-byte aligned) are written whole and contiguous; a zero length
// marks the unused tail of a lap. Head and tail live on separate cache lines, and each side
// caches the other's index, so steady-state traffic touches shared lines once per batch.

import Synchronization

/// A single-producer/single-consumer ring of variable-length records.
public final class Mailbox: @unchecked Sendable {
    // Invariants: only the producer thread calls `write`, only the consumer thread calls
    // `readable`/`consume`; `tail` is stored by the producer, `head` by the consumer.
    public let capacity: Int
    @usableFromInline let mask: Int
    @usableFromInline let storage: UnsafeMutableRawPointer

    @usableFromInline let tail = Atomic<Int>(0)
    @usableFromInline let pad0 = CacheLinePad()
    @usableFromInline let head = Atomic<Int>(0)
    @usableFromInline let pad1 = CacheLinePad()
    // Producer-private. Each side's fields are touched by one thread only, so the dynamic
    // exclusivity checks (a thread-local access set per read and write, per record) buy nothing.
    @exclusivity(unchecked) @usableFromInline var producerTail = 0
    @exclusivity(unchecked) @usableFromInline var cachedHead = 0
    @usableFromInline let pad2 = CacheLinePad()
    // Consumer-private.
    @exclusivity(unchecked) @usableFromInline var consumerHead = 0
    @exclusivity(unchecked) @usableFromInline var cachedTail = 0

    /// A mailbox of `capacity` bytes (a power of two, at least 4 KiB).
    public init(capacity: Int) {
        precondition(capacity >= 4096 && capacity & (capacity - 1) == 0)
        self.capacity = capacity
        self.mask = capacity - 1
        self.storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// The largest record `write` accepts; larger ones must travel out of line.
    public var maximumRecordLength: Int { capacity / 4 }

    @inlinable static func aligned(_ n: Int) -> Int { (n + 7) & ~7 }

    /// Producer: appends as many whole records from `records` (a sequence of u32-length-prefixed
    /// records, unaligned) as fit, publishes them, and returns the number of bytes of `records`
    /// consumed. Stops before a record longer than `maximumRecordLength`.
    @inlinable
    public func write(records: UnsafeRawBufferPointer) -> Int {
        guard let source = records.baseAddress else { return 0 }
        var consumed = 0
        var tailPosition = producerTail
        while consumed + 4 <= records.count {
            let length = Int(source.loadUnaligned(fromByteOffset: consumed, as: UInt32.self))
            precondition(length >= 8 && consumed + length <= records.count, "corrupt mailbox record")
            if length > maximumRecordLength { break }  // the caller sends it out of line
            let need = Mailbox.aligned(length)
            let offset = tailPosition & mask
            let untilEnd = capacity - offset
            let padding = untilEnd < need ? untilEnd : 0
            if tailPosition + padding + need - cachedHead > capacity {
                cachedHead = head.load(ordering: .acquiring)
                if tailPosition + padding + need - cachedHead > capacity { break }
            }
            if padding > 0 {
                (storage + offset).storeBytes(of: UInt32(0), as: UInt32.self)
                tailPosition += padding
            }
            (storage + (tailPosition & mask)).copyMemory(from: source + consumed, byteCount: length)
            tailPosition += need
            consumed += length
        }
        if tailPosition != producerTail {
            producerTail = tailPosition
            tail.store(tailPosition, ordering: .sequentiallyConsistent)
        }
        return consumed
    }

    /// Consumer: true when records are waiting (sequentially consistent, for the sleep protocol).
    @inlinable public var hasRecords: Bool {
        tail.load(ordering: .sequentiallyConsistent) != consumerHead
    }

    /// Consumer: the next record, or nil when the ring is empty. Call `release` after processing.
    @inlinable
    public func nextRecord() -> UnsafeRawPointer? {
        while true {
            if consumerHead == cachedTail {
                cachedTail = tail.load(ordering: .acquiring)
                if consumerHead == cachedTail { return nil }
            }
            let offset = consumerHead & mask
            let length = Int((storage + offset).load(as: UInt32.self))
            if length == 0 {
                consumerHead += capacity - offset  // skip the padding at the end of the lap
                continue
            }
            let record = UnsafeRawPointer(storage + offset)
            consumerHead += Mailbox.aligned(length)
            return record
        }
    }

    /// Consumer: gives the space of every record returned so far back to the producer.
    @inlinable public func release() {
        head.store(consumerHead, ordering: .releasing)
    }
}

/// 64 bytes of padding that keep the atomics of a Mailbox on separate cache lines.
@usableFromInline struct CacheLinePad {
    @usableFromInline var a: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    @usableFromInline init() {}
}
