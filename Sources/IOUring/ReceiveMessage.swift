// Multishot recvmsg (IORING_OP_RECVMSG with IORING_RECV_MULTISHOT) into provided buffers: each
// completion's buffer starts with a struct io_uring_recvmsg_out, then the name and control areas
// the msghdr reserves (always their full size), then the payload. Apus reserves no name and one
// control message, the kernel's receive time (SO_TIMESTAMPNS): when the last segment of what this
// read returns reached the socket, on CLOCK_REALTIME.

import CLiburing
@preconcurrency import Glibc

/// The msghdr a multishot recvmsg is armed with (the kernel reads its name and control lengths at
/// each arming) and the layout of the buffers its completions fill.
public final class ReceiveMessageFormat {
    public let header: UnsafeMutablePointer<msghdr>
    /// Bytes before the payload in each buffer.
    public let payloadOffset: Int
    /// The control area's size: one cmsghdr and a timespec, aligned (CMSG_SPACE).
    public static let timestampControlBytes = align(MemoryLayout<cmsghdr>.size) + align(MemoryLayout<timespec>.size)
    @usableFromInline static let outHeaderBytes = MemoryLayout<io_uring_recvmsg_out>.size
    /// SOL_SOCKET / SCM_TIMESTAMPNS, as this libc defines them.
    public static let timestampType = apus_so_timestampns()

    @inline(__always) static func align(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }

    public init() {
        header = .allocate(capacity: 1)
        header.initialize(to: msghdr())
        header.pointee.msg_controllen = Self.timestampControlBytes
        payloadOffset = Self.outHeaderBytes + Self.timestampControlBytes
    }

    deinit { header.deallocate() }

    /// What a completion of `length` bytes (its result) left in `buffer`: the payload (empty at
    /// the end of the stream) and the kernel's receive time in nanoseconds since the epoch (0 when
    /// the socket does not timestamp, SO_TIMESTAMPNS unset).
    @inlinable public func parse(_ buffer: UnsafeRawPointer, length: Int) -> (payload: UnsafeRawBufferPointer, realtime: UInt64) {
        guard length >= payloadOffset else { return (UnsafeRawBufferPointer(start: buffer, count: 0), 0) }
        let controlLength = Int(buffer.load(fromByteOffset: 4, as: UInt32.self))
        let payloadLength = min(Int(buffer.load(fromByteOffset: 8, as: UInt32.self)), length - payloadOffset)
        let realtime = Self.timestamp(control: buffer + Self.outHeaderBytes, length: controlLength)
        return (UnsafeRawBufferPointer(start: buffer + payloadOffset, count: payloadLength), realtime)
    }

    /// The SCM_TIMESTAMPNS time in a control area of `length` bytes, in nanoseconds since the
    /// epoch, or 0 when it holds none.
    @inlinable public static func timestamp(control: UnsafeRawPointer, length: Int) -> UInt64 {
        let cmsgBytes = MemoryLayout<cmsghdr>.size
        guard length >= cmsgBytes + MemoryLayout<timespec>.size else { return 0 }
        let level = control.load(fromByteOffset: MemoryLayout<Int>.size, as: Int32.self)
        let type = control.load(fromByteOffset: MemoryLayout<Int>.size + 4, as: Int32.self)
        guard level == SOL_SOCKET && type == timestampType else { return 0 }
        let seconds = control.loadUnaligned(fromByteOffset: cmsgBytes, as: Int.self)
        let nanoseconds = control.loadUnaligned(fromByteOffset: cmsgBytes + MemoryLayout<Int>.size, as: Int.self)
        return UInt64(truncatingIfNeeded: seconds) &* 1_000_000_000 &+ UInt64(truncatingIfNeeded: nanoseconds)
    }
}

/// A single recvmsg's memory for one socket: a buffer of `capacity` bytes and a control area for
/// the kernel's receive time (SO_TIMESTAMPNS), which must stay put until the recvmsg completes.
public final class SingleReceive {
    public let capacity: Int
    public let bytes: UnsafeMutableRawPointer
    public let header: UnsafeMutablePointer<msghdr>
    let vector: UnsafeMutablePointer<iovec>
    let control: UnsafeMutableRawPointer

    public init(capacity: Int) {
        self.capacity = capacity
        bytes = .allocate(byteCount: capacity, alignment: 16)
        header = .allocate(capacity: 1)
        header.initialize(to: msghdr())
        vector = .allocate(capacity: 1)
        vector.initialize(to: iovec(iov_base: bytes, iov_len: capacity))
        control = .allocate(byteCount: ReceiveMessageFormat.timestampControlBytes, alignment: 16)
    }

    deinit {
        bytes.deallocate()
        header.deallocate()
        vector.deallocate()
        control.deallocate()
    }

    /// The msghdr for the next recvmsg (its control area cleared, so a reply without a time reads 0).
    public func prepare() -> UnsafeMutablePointer<msghdr> {
        control.initializeMemory(as: UInt8.self, repeating: 0, count: ReceiveMessageFormat.timestampControlBytes)
        header.pointee = msghdr()
        header.pointee.msg_iov = vector
        header.pointee.msg_iovlen = 1
        header.pointee.msg_control = control
        header.pointee.msg_controllen = ReceiveMessageFormat.timestampControlBytes
        return header
    }

    /// The kernel's receive time of what the last recvmsg brought (0: none).
    public var realtime: UInt64 {
        ReceiveMessageFormat.timestamp(control: control, length: ReceiveMessageFormat.timestampControlBytes)
    }
}
