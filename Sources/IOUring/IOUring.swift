// A small Swift layer over one liburing ring: setup with the best flags the kernel accepts,
// SQE preparation for the operations Apus uses, and completion harvesting in batches.
// Knows nothing of MQTT. Not Sendable: a ring lives on the thread that created it.

import ApusBase
import CLiburing
@preconcurrency import Glibc


/// An error from ring setup or a syscall, carrying the errno value.

/// One completion, copied out of the completion queue.
public struct Completion: Sendable {
    public var userData: UInt64
    /// The operation's result: a byte count, a file descriptor, or `-errno`.
    public var result: Int32
    public var flags: UInt32

    @inlinable public init(userData: UInt64, result: Int32, flags: UInt32) {
        self.userData = userData; self.result = result; self.flags = flags
    }
    /// The provided buffer the kernel picked for this completion, if any.
    @inlinable public var bufferID: UInt16? {
        flags & IORING_CQE_F_BUFFER != 0 ? UInt16(truncatingIfNeeded: flags >> IORING_CQE_BUFFER_SHIFT) : nil
    }
    /// True while a multishot operation stays armed after this completion.
    @inlinable public var hasMore: Bool { flags & IORING_CQE_F_MORE != 0 }
}

/// The setup flags a ring ended up with, for logs and docs.
public struct RingSetup: Sendable, CustomStringConvertible {
    public var flags: UInt32
    /// Whether completions (and the kernel's writes into receive buffers) happen only while the
    /// ring's thread is inside io_uring_enter (IORING_SETUP_DEFER_TASKRUN).
    public var defersTaskRun: Bool { flags & IORING_SETUP_DEFER_TASKRUN != 0 }
    public var description: String {
        var names: [String] = []
        if flags & IORING_SETUP_SINGLE_ISSUER != 0 { names.append("SINGLE_ISSUER") }
        if flags & IORING_SETUP_DEFER_TASKRUN != 0 { names.append("DEFER_TASKRUN") }
        if flags & IORING_SETUP_COOP_TASKRUN != 0 { names.append("COOP_TASKRUN") }
        if flags & IORING_SETUP_SUBMIT_ALL != 0 { names.append("SUBMIT_ALL") }
        if flags & IORING_SETUP_CQSIZE != 0 { names.append("CQSIZE") }
        return names.isEmpty ? "none" : names.joined(separator: "|")
    }
}

/// One io_uring instance.
public final class IOUring {
    @usableFromInline let ring: UnsafeMutablePointer<io_uring>
    /// The ring's file descriptor (target of MSG_RING from other rings).
    public let fd: Int32
    public let setup: RingSetup
    @usableFromInline var cqeScratch: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    @usableFromInline let cqeScratchCount: Int = 512

    /// Creates a ring with `entries` submission entries and a completion queue of `cqEntries`.
    /// Tries SINGLE_ISSUER|DEFER_TASKRUN first, then SINGLE_ISSUER|COOP_TASKRUN, then COOP_TASKRUN,
    /// then no flags; `skipping` leaves out that many of the first (to measure what they bring).
    /// Must be called on the thread that will use the ring (SINGLE_ISSUER).
    public init(entries: UInt32 = 1024, cqEntries: UInt32 = 8192, skipping: Int = 0) throws(SystemCallError) {
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        let candidates: [UInt32] = [
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
            IORING_SETUP_COOP_TASKRUN,
            0,
        ]
        var lastError: Int32 = 0
        var chosen: UInt32? = nil
        for flags in candidates.dropFirst(min(max(skipping, 0), candidates.count - 1)) {
            var params = io_uring_params()
            params.flags = flags | IORING_SETUP_CQSIZE
            params.cq_entries = cqEntries
            let rc = io_uring_queue_init_params(entries, ring, &params)
            if rc == 0 { chosen = params.flags; break }
            lastError = -rc
        }
        guard let flags = chosen else {
            ring.deallocate()
            throw SystemCallError("io_uring_queue_init_params", errno: lastError)
        }
        fd = ring.pointee.ring_fd
        setup = RingSetup(flags: flags)
        cqeScratch = .allocate(capacity: cqeScratchCount)
    }

    deinit {
        io_uring_queue_exit(ring)
        ring.deallocate()
        cqeScratch.deallocate()
    }

    /// The raw ring, for ProvidedBufferRing.
    public var rawRing: UnsafeMutablePointer<io_uring> { ring }

    /// A free submission entry; submits pending entries first when the queue is full.
    @inlinable public func sqe() -> UnsafeMutablePointer<io_uring_sqe> {
        if let s = io_uring_get_sqe(ring) { return s }
        _ = io_uring_submit(ring)
        return io_uring_get_sqe(ring)!
    }

    /// Multishot accept on a listening socket.
    @inlinable public func prepareMultishotAccept(fd listener: Int32, userData: UInt64) {
        let s = sqe()
        io_uring_prep_multishot_accept(s, listener, nil, nil, 0)
        io_uring_sqe_set_data64(s, userData)
    }

    /// Multishot recv choosing buffers from the provided buffer group `group`.
    @inlinable public func prepareMultishotRecv(fd socket: Int32, group: UInt16, userData: UInt64) {
        let s = sqe()
        io_uring_prep_recv_multishot(s, socket, nil, 0, 0)
        s.pointee.flags |= UInt8(1 << IOSQE_BUFFER_SELECT_BIT)
        s.pointee.buf_group = group
        io_uring_sqe_set_data64(s, userData)
    }

    /// Multishot recvmsg choosing buffers from the provided buffer group `group`; each buffer is laid
    /// out as `format` says (its msghdr must outlive the operation).
    @inlinable public func prepareMultishotRecvMessage(fd socket: Int32, format: ReceiveMessageFormat, group: UInt16, userData: UInt64) {
        let s = sqe()
        io_uring_prep_recvmsg_multishot(s, socket, format.header, 0)
        s.pointee.flags |= UInt8(1 << IOSQE_BUFFER_SELECT_BIT)
        s.pointee.buf_group = group
        io_uring_sqe_set_data64(s, userData)
    }

    /// A single recvmsg into what `message` describes (it, its iovecs and control area must stay
    /// valid until completion).
    @inlinable public func prepareRecvMessage(fd socket: Int32, message: UnsafeMutablePointer<msghdr>, userData: UInt64) {
        let s = sqe()
        io_uring_prep_recvmsg(s, socket, message, 0)
        io_uring_sqe_set_data64(s, userData)
    }

    /// A single recv of at most `count` bytes into `buffer` (the memory must stay valid until completion).
    @inlinable public func prepareRecv(fd socket: Int32, buffer: UnsafeMutableRawPointer, count: Int, userData: UInt64) {
        let s = sqe()
        io_uring_prep_recv(s, socket, buffer, count, 0)
        io_uring_sqe_set_data64(s, userData)
    }

    /// A connect of `socket` to `address` (the memory must stay valid until completion).
    @inlinable public func prepareConnect(fd socket: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, userData: UInt64) {
        let s = sqe()
        io_uring_prep_connect(s, socket, address, length)
        io_uring_sqe_set_data64(s, userData)
    }

    /// A send of `count` bytes at `bytes` (the memory must stay valid until completion).
    @inlinable public func prepareSend(fd socket: Int32, bytes: UnsafeRawPointer, count: Int, userData: UInt64) {
        let s = sqe()
        io_uring_prep_send(s, socket, bytes, count, Int32(MSG_NOSIGNAL))
        io_uring_sqe_set_data64(s, userData)
    }

    /// A sendmsg of what `message` describes (it and its iovecs must stay valid until completion).
    @inlinable public func prepareSendMessage(fd socket: Int32, message: UnsafePointer<msghdr>, userData: UInt64) {
        let s = sqe()
        io_uring_prep_sendmsg(s, socket, message, UInt32(MSG_NOSIGNAL))
        io_uring_sqe_set_data64(s, userData)
    }

    /// A write of `count` bytes at `bytes` to `fd` at `offset` (the memory must stay valid until
    /// completion).
    @inlinable public func prepareWrite(fd: Int32, bytes: UnsafeRawPointer, count: Int, offset: UInt64, userData: UInt64) {
        let s = sqe()
        io_uring_prep_write(s, fd, bytes, UInt32(count), offset)
        io_uring_sqe_set_data64(s, userData)
    }

    /// fdatasync (or fsync) of `fd`.
    @inlinable public func prepareSync(fd: Int32, dataOnly: Bool, userData: UInt64) {
        let s = sqe()
        io_uring_prep_fsync(s, fd, dataOnly ? UInt32(IORING_FSYNC_DATASYNC) : 0)
        io_uring_sqe_set_data64(s, userData)
    }

    /// Cancels every operation whose user data is `target`.
    @inlinable public func prepareCancel(userData target: UInt64, userData: UInt64) {
        let s = sqe()
        io_uring_prep_cancel64(s, target, 0)
        io_uring_sqe_set_data64(s, userData)
    }

    /// Cancels every operation on file descriptor `fd` (IORING_ASYNC_CANCEL_FD | ALL).
    @inlinable public func prepareCancel(fd: Int32, userData: UInt64) {
        let s = sqe()
        io_uring_prep_cancel64(s, 0, Int32(IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL))
        s.pointee.fd = fd
        io_uring_sqe_set_data64(s, userData)
    }

    /// Posts a completion with `result` and `userData` into the ring `targetFD` (IORING_OP_MSG_RING),
    /// waking its thread if it sleeps. The local completion carries `localUserData`; it is skipped
    /// (IOSQE_CQE_SKIP_SUCCESS) when the message was delivered.
    @inlinable public func prepareMessage(toRing targetFD: Int32, result: UInt32, userData: UInt64, localUserData: UInt64) {
        let s = sqe()
        io_uring_prep_msg_ring(s, targetFD, result, userData, 0)
        s.pointee.flags |= UInt8(1 << IOSQE_CQE_SKIP_SUCCESS_BIT)
        io_uring_sqe_set_data64(s, localUserData)
    }

    /// Submits pending entries without waiting. Returns the number submitted or -errno.
    @inlinable @discardableResult public func submit() -> Int32 { io_uring_submit(ring) }

    /// Submits and waits until at least one completion is ready or `timeoutNanoseconds` passed
    /// (nil: no timeout). Returns 0, or -ETIME / -EINTR.
    @inlinable @discardableResult
    public func submitAndWait(timeoutNanoseconds: Int64?) -> Int32 {
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        if let t = timeoutNanoseconds {
            var ts = __kernel_timespec(tv_sec: t / 1_000_000_000, tv_nsec: t % 1_000_000_000)
            return io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nil)
        }
        let rc = io_uring_submit_and_wait(ring, 1)
        return rc < 0 ? rc : 0
    }

    /// Submits and processes deferred task work without blocking, so ready completions appear.
    @inlinable @discardableResult public func submitAndGetEvents() -> Int32 { io_uring_submit_and_get_events(ring) }

    /// Copies up to `capacity` ready completions into `out` and marks them seen. Returns the count.
    @inlinable public func harvest(into out: UnsafeMutablePointer<Completion>, capacity: Int) -> Int {
        let want = Swift.min(capacity, cqeScratchCount)
        let n = Int(io_uring_peek_batch_cqe(ring, cqeScratch, UInt32(want)))
        for i in 0..<n {
            let c = cqeScratch[i]!.pointee
            out[i] = Completion(userData: c.user_data, result: c.res, flags: c.flags)
        }
        if n > 0 { io_uring_cq_advance(ring, UInt32(n)) }
        return n
    }

    /// Number of completions ready to harvest.
    @inlinable public var readyCompletions: Int { Int(io_uring_cq_ready(ring)) }
}
