// A provided buffer ring (IORING_REGISTER_PBUF_RING): a group of equal-size receive buffers the
// kernel picks from for multishot recv. liburing 2.3 has no io_uring_setup_buf_ring, so the ring
// memory is mmap'd here and registered with io_uring_register_buf_ring.

import ApusBase
import CLiburing
@preconcurrency import Glibc


/// A group of up to `count` receive buffers of `bufferSize` bytes registered with one ring.
///
/// Only `provided` of them are in the ring at first: the kernel takes buffers from the ring's head
/// and returns go to its tail, so every buffer in the ring gets touched in turn even under light
/// load. Starting small keeps the resident memory of a quiet broker (or one holding thousands of
/// idle connections) low; `grow()` adds buffers when the kernel runs out (ENOBUFS).
public final class ProvidedBufferRing {
    public let group: UInt16
    public let count: UInt16
    /// Buffers handed to the kernel so far (ids `0..<provided`).
    public private(set) var provided: UInt16
    public let bufferSize: Int
    @usableFromInline let ringMemory: UnsafeMutablePointer<io_uring_buf_ring>
    @usableFromInline let ringBytes: Int
    @usableFromInline let buffers: UnsafeMutableRawPointer
    @usableFromInline let mask: Int32
    @usableFromInline var pendingReturns: Int32 = 0
    unowned let owner: IOUring

    /// Registers a ring for `count` (a power of two ≤ 32768) buffers of `bufferSize` bytes as group
    /// `group`, and provides the first `initial` of them (all by default).
    public init(ring: IOUring, group: UInt16, count: UInt16, bufferSize: Int, initial: UInt16? = nil) throws(SystemCallError) {
        precondition(count > 0 && count & (count - 1) == 0, "buffer count must be a power of two")
        self.group = group
        self.count = count
        self.provided = min(initial ?? count, count)
        self.bufferSize = bufferSize
        self.owner = ring
        ringBytes = Int(count) * MemoryLayout<io_uring_buf>.stride
        guard let mem = mmap(nil, ringBytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0),
              mem != MAP_FAILED else {
            throw SystemCallError("mmap buffer ring", errno: Glibc.errno)
        }
        ringMemory = mem.bindMemory(to: io_uring_buf_ring.self, capacity: 1)
        // Mapped, not allocated: pages are only resident once the kernel writes into them, and
        // `releasePages` can give them back.
        guard let region = mmap(nil, Int(count) * bufferSize, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0),
              region != MAP_FAILED else {
            munmap(mem, ringBytes)
            throw SystemCallError("mmap receive buffers", errno: Glibc.errno)
        }
        buffers = region
        mask = io_uring_buf_ring_mask(UInt32(count))
        io_uring_buf_ring_init(ringMemory)
        var reg = io_uring_buf_reg()
        reg.ring_addr = UInt64(UInt(bitPattern: mem))
        reg.ring_entries = UInt32(count)
        reg.bgid = group
        let rc = io_uring_register_buf_ring(ring.rawRing, &reg, 0)
        if rc < 0 {
            munmap(mem, ringBytes)
            munmap(buffers, Int(count) * bufferSize)
            throw SystemCallError("io_uring_register_buf_ring", errno: -rc)
        }
        for id in 0..<provided {
            io_uring_buf_ring_add(ringMemory, buffers + Int(id) * bufferSize, UInt32(bufferSize), id, mask, Int32(id))
        }
        io_uring_buf_ring_advance(ringMemory, Int32(provided))
    }

    /// Gives the buffers' pages back to the system (MADV_DONTNEED); the next write into a buffer
    /// faults in a zeroed page. Call it between completion batches, when no buffer is being read:
    /// a quiet shard then holds no receive memory, however many buffers a burst made it provide.
    public func releasePages() {
        _ = madvise(buffers, Int(provided) * bufferSize, MADV_DONTNEED)
    }

    /// Provides as many buffers again as are provided now (up to `count`), after the kernel ran out.
    /// Returns false when all are provided already. Publishes pending returns first.
    @discardableResult
    public func grow() -> Bool {
        publishReturns()
        guard provided < count else { return false }
        let added = min(provided, count - provided)
        for i in 0..<added {
            let id = provided + i
            io_uring_buf_ring_add(ringMemory, buffers + Int(id) * bufferSize, UInt32(bufferSize), id, mask, Int32(i))
        }
        io_uring_buf_ring_advance(ringMemory, Int32(added))
        provided += added
        return true
    }

    /// Unregisters the group; call before the ring is torn down.
    public func unregister() {
        _ = io_uring_unregister_buf_ring(owner.rawRing, Int32(group))
    }

    deinit {
        munmap(UnsafeMutableRawPointer(ringMemory), ringBytes)
        munmap(buffers, Int(count) * bufferSize)
    }

    /// The bytes of buffer `id` as filled by a completion of `length` bytes.
    @inlinable public func bytes(id: UInt16, length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: buffers + Int(id) * bufferSize, count: length)
    }

    /// The start of buffer `id`.
    @inlinable public func start(id: UInt16) -> UnsafeRawPointer {
        UnsafeRawPointer(buffers + Int(id) * bufferSize)
    }

    /// Gives buffer `id` back to the kernel. Returns are published in batches by `publishReturns`.
    @inlinable public func recycle(id: UInt16) {
        io_uring_buf_ring_add(ringMemory, buffers + Int(id) * bufferSize, UInt32(bufferSize), id, mask, pendingReturns)
        pendingReturns += 1
    }

    /// Makes recycled buffers visible to the kernel.
    @inlinable public func publishReturns() {
        if pendingReturns > 0 {
            io_uring_buf_ring_advance(ringMemory, pendingReturns)
            pendingReturns = 0
        }
    }
}
