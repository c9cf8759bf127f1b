// A lock-free single-producer/single-consumer byte ring: the mailbox from one shard to another.
// Records (a little-endian u32 total length first, 8-byte aligned) are written whole and
// contiguous; a zero length marks the unused tail of a lap. A record larger than a quarter of the
// ring travels on the heap: the ring carries a 16-byte stub (its length field with the top bit
// set, then the pointer), and the consumer sees the record itself. Head and tail live on
// separate cache lines, and each side caches the other's index, so steady-state traffic touches
// shared lines once per batch.

import ApusBase
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
    /// Out-of-line records returned since the last `release`, freed by it.
    @exclusivity(unchecked) @usableFromInline var heapRecords: [UnsafeMutableRawPointer] = []

    /// The top bit of a stub's length field: the record is on the heap.
    @usableFromInline static let outOfLineFlag: UInt32 = 0x8000_0000
    @usableFromInline static let stubLength = 16

    /// A mailbox of `capacity` bytes (a power of two, at least 4 KiB).
    public init(capacity: Int) {
        precondition(capacity >= 4096 && capacity & (capacity - 1) == 0)
        self.capacity = capacity
        self.mask = capacity - 1
        self.storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit {
        // Records still in the ring that travel on the heap are freed with it.
        while nextRecord() != nil {}
        release()
        storage.deallocate()
    }

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
            let length = Int(UInt32(littleEndian: source.loadUnaligned(fromByteOffset: consumed, as: UInt32.self)))
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

    /// Producer: sends one record larger than `maximumRecordLength` through the heap (a copy, and
    /// a stub in the ring). False when the ring has no room for the stub now (try again later).
    public func writeOutOfLine(record: UnsafeRawBufferPointer) -> Bool {
        let heap = UnsafeMutableRawPointer.allocate(byteCount: record.count, alignment: 8)
        heap.copyMemory(from: record.baseAddress!, byteCount: record.count)
        var stub = ((UInt32(Mailbox.stubLength) | Mailbox.outOfLineFlag).littleEndian, UInt32(0), UInt64(UInt(bitPattern: heap)))
        let written = withUnsafeBytes(of: &stub) { stubBytes in
            // The stub's length field (with the flag) is read by `write` as its length: write it by hand.
            writeStub(stubBytes)
        }
        if !written { heap.deallocate() }
        return written
    }

    private func writeStub(_ stub: UnsafeRawBufferPointer) -> Bool {
        let need = Mailbox.stubLength
        var tailPosition = producerTail
        let offset = tailPosition & mask
        let untilEnd = capacity - offset
        let padding = untilEnd < need ? untilEnd : 0
        if tailPosition + padding + need - cachedHead > capacity {
            cachedHead = head.load(ordering: .acquiring)
            if tailPosition + padding + need - cachedHead > capacity { return false }
        }
        if padding > 0 {
            (storage + offset).storeBytes(of: UInt32(0), as: UInt32.self)
            tailPosition += padding
        }
        (storage + (tailPosition & mask)).copyMemory(from: stub.baseAddress!, byteCount: need)
        tailPosition += need
        producerTail = tailPosition
        tail.store(tailPosition, ordering: .sequentiallyConsistent)
        return true
    }

    /// Consumer: true when records are waiting (sequentially consistent, for the sleep protocol).
    @inlinable public var hasRecords: Bool {
        tail.load(ordering: .sequentiallyConsistent) != consumerHead
    }

    /// Consumer: the next record (valid until `release`), or nil when the ring is empty. Call
    /// `release` after processing.
    @inlinable
    public func nextRecord() -> UnsafeRawBufferPointer? {
        while true {
            if consumerHead == cachedTail {
                cachedTail = tail.load(ordering: .acquiring)
                if consumerHead == cachedTail { return nil }
            }
            let offset = consumerHead & mask
            let field = UInt32(littleEndian: (storage + offset).load(as: UInt32.self))
            if field == 0 {
                consumerHead += capacity - offset  // skip the padding at the end of the lap
                continue
            }
            if field & Mailbox.outOfLineFlag != 0 {
                consumerHead += Mailbox.stubLength
                return outOfLineRecord(at: storage + offset)
            }
            let length = Int(field)
            consumerHead += Mailbox.aligned(length)
            return UnsafeRawBufferPointer(start: storage + offset, count: length)
        }
    }

    @usableFromInline func outOfLineRecord(at stub: UnsafeMutableRawPointer) -> UnsafeRawBufferPointer {
        let heap = UnsafeMutableRawPointer(bitPattern: UInt(UInt64(littleEndian: stub.load(fromByteOffset: 8, as: UInt64.self))))!
        heapRecords.append(heap)
        return UnsafeRawBufferPointer(start: heap, count: Int(UInt32(littleEndian: heap.load(as: UInt32.self))))
    }

    /// Consumer: gives the space of every record returned so far back to the producer (and frees
    /// the out-of-line ones).
    @inlinable public func release() {
        head.store(consumerHead, ordering: .releasing)
        if !heapRecords.isEmpty { releaseHeapRecords() }
    }

    @usableFromInline func releaseHeapRecords() {
        for record in heapRecords { record.deallocate() }
        heapRecords.removeAll(keepingCapacity: true)
    }
}

/// 64 bytes of padding that keep the atomics of a Mailbox on separate cache lines.
@usableFromInline struct CacheLinePad {
    @usableFromInline var a: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    @usableFromInline init() {}
}

extension Mailbox {
    /// Producer: moves the whole records at the front of `outbox` into the ring (a record too
    /// large for it goes out of line); what does not fit stays for the next turn. Returns whether
    /// anything was written (the consumer may need waking).
    func send(from outbox: inout ByteBuffer) -> Bool {
        var wrote = false
        while !outbox.isEmpty {
            let view = outbox.readableView
            let consumed = write(records: view)
            if consumed > 0 {
                wrote = true
                outbox.moveReaderIndex(forwardBy: consumed)
                continue
            }
            // Either the ring is full, or the next record is too large for it.
            let length = Int(UInt32(littleEndian: view.baseAddress!.loadUnaligned(as: UInt32.self)))
            guard length > maximumRecordLength, writeOutOfLine(record: UnsafeRawBufferPointer(rebasing: view[0..<length])) else { break }
            wrote = true
            outbox.moveReaderIndex(forwardBy: length)
        }
        return wrote
    }
}
