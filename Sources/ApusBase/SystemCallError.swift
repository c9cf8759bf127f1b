// The one error type for a failed system call, for every layer that makes them (the io_uring
// wrapper, sockets, threads), as swift-nio has one IOError: the call (with what it was called on)
// and errno.

@preconcurrency import Glibc

/// A system call failed: which one (and on what), and its errno.
public struct SystemCallError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The call and its subject, e.g. "bind 127.0.0.1:1883" or "io_uring_queue_init_params".
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
}
