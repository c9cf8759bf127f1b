// TCP listening sockets: one per shard on the same address with SO_REUSEPORT, so the kernel
// spreads incoming connections over the shards without an acceptor thread.

import ApusBase
import IOUring
@preconcurrency import Glibc

enum Listener {
    /// Opens `count` listening sockets bound to `host:port` with SO_REUSEPORT. Port 0 picks a free
    /// port (the first socket's) for all. Returns the descriptors and the bound port. With
    /// `noDelay`, TCP_NODELAY is set on the listening sockets: Linux copies it to every accepted
    /// socket, which saves a setsockopt per connection. With `receiveTimestamps`, SO_TIMESTAMPNS
    /// (copied to accepted sockets the same way): every recvmsg carries the kernel's receive time.
    static func open(host: String, port: UInt16, count: Int, backlog: Int32 = 4096,
                     noDelay: Bool = false, receiveTimestamps: Bool = false) throws -> (fds: [Int32], port: UInt16) {
        var fds: [Int32] = []
        var boundPort = port
        // SO_REUSEPORT would let another process of the same user (a second broker started by
        // mistake) bind the same address and take half of the connections: its clients and ours
        // would then silently miss each other's messages. A socket without SO_REUSEPORT binds
        // only where nobody is bound, so it proves the address free before the shards' sockets
        // take it (as Mosquitto's "Address already in use").
        if port != 0 { try checkFree(host: host, port: port) }
        do {
            for _ in 0..<count {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                guard fd >= 0 else { throw SystemCallError("socket", errno: errno) }
                fds.append(fd)
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
                if noDelay { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
                if receiveTimestamps {
                    guard setsockopt(fd, SOL_SOCKET, ReceiveMessageFormat.timestampType, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                        throw SystemCallError("setsockopt SO_TIMESTAMPNS", errno: errno)
                    }
                }
                guard try bind(fd, host: host, port: boundPort) == 0 else { throw SystemCallError("bind \(host):\(boundPort)", errno: errno) }
                guard listen(fd, backlog) == 0 else { throw SystemCallError("listen", errno: errno) }
                if boundPort == 0 {
                    var actual = sockaddr_in()
                    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                    _ = withUnsafeMutablePointer(to: &actual) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
                    }
                    boundPort = UInt16(bigEndian: actual.sin_port)
                }
            }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        return (fds, boundPort)
    }

    /// Throws EADDRINUSE when something is bound to `host:port`.
    static func checkFree(host: String, port: UInt16) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket", errno: errno) }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))  // TIME_WAIT is no owner
        guard try bind(fd, host: host, port: port) == 0 else {
            throw SystemCallError("bind \(host):\(port) (in use by another process?)", errno: errno)
        }
    }

    /// bind(2) of `fd` to the IPv4 `host:port`; its return value (errno is set on -1).
    private static func bind(_ fd: Int32, host: String, port: UInt16) throws -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw SystemCallError("invalid IPv4 address \(host)", errno: EINVAL)
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Whether TCP_NODELAY is set on `fd`.
    static func noDelay(_ fd: Int32) -> Bool {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length) == 0 && value != 0
    }

    /// Whether SO_TIMESTAMPNS is set on `fd`.
    static func receiveTimestamps(_ fd: Int32) -> Bool {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, ReceiveMessageFormat.timestampType, &value, &length) == 0 && value != 0
    }

    /// `address:port` of the peer of a connected IPv4 socket.
    static func peerAddress(_ fd: Int32) -> String {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard rc == 0 else { return "unknown" }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count)) != nil else { return "unknown" }
        return "\(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)):\(UInt16(bigEndian: address.sin_port))"
    }
}
