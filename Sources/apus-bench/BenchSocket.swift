// Blocking socket helpers for the load generator's set-up phase (connect, CONNECT/CONNACK,
// SUBSCRIBE/SUBACK); the measured phase runs on io_uring.

import Codec
@preconcurrency import Glibc

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum BenchSocket {
    static func connect(host: String, port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw BenchError("connect \(host):\(port): errno \(errno)") }
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw BenchError("send: errno \(errno)") }
            offset += n
        }
    }

    /// Reads one whole packet (blocking).
    static func readPacket(_ fd: Int32, version: ProtocolVersion) throws -> Packet {
        var bytes: [UInt8] = []
        func readByte() throws -> UInt8 {
            var b: UInt8 = 0
            guard recv(fd, &b, 1, 0) == 1 else { throw BenchError("connection closed during set-up") }
            return b
        }
        bytes.append(try readByte())
        repeat { bytes.append(try readByte()) } while bytes.last! & 0x80 != 0 && bytes.count < 5
        var remaining = 0
        var shift = 0
        for b in bytes.dropFirst() { remaining |= Int(b & 0x7F) << shift; shift += 7 }
        var body = [UInt8](repeating: 0, count: remaining)
        var got = 0
        while got < remaining {
            let n = body.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, remaining - got, 0) }
            guard n > 0 else { throw BenchError("connection closed during set-up") }
            got += n
        }
        let frame = bytes + body
        return try frame.withUnsafeBytes { raw in try PacketDecoder.decode(frame: raw, version: version) }
    }

    /// Connects and completes CONNECT/CONNACK.
    static func mqttConnect(host: String, port: UInt16, clientID: String, version: ProtocolVersion, clean: Bool,
                            keepAlive: UInt16 = 300, properties: Properties = Properties()) throws -> Int32 {
        let fd = try connect(host: host, port: port)
        try send(fd, Packet.connect(Connect(version: version, cleanStart: clean, keepAlive: keepAlive, clientID: clientID,
                                            properties: properties)).encoded(version: version))
        guard case .connack(let ack) = try readPacket(fd, version: version), ack.reasonCode == .success else {
            close(fd)
            throw BenchError("CONNECT \(clientID) refused")
        }
        return fd
    }

    /// The DISCONNECT packet (normal disconnection; the same two bytes in every version).
    static let disconnectPacket: [UInt8] = [0xE0, 0x00]

    /// Sends DISCONNECT and closes the connection.
    static func disconnect(_ fd: Int32) {
        _ = disconnectPacket.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, 2, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// Raises the soft limit on open files to the hard limit (thousands of connections need
    /// thousands of descriptors); returns the limit now in force. Child processes inherit it.
    @discardableResult
    static func raiseOpenFileLimit() -> UInt64 {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(resource, &limit)
        }
        return UInt64(limit.rlim_cur)
    }

    static func subscribe(_ fd: Int32, filter: String, qos: QoS, version: ProtocolVersion) throws {
        try send(fd, Packet.subscribe(Subscribe(packetID: 1, subscriptions: [
            SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos))])).encoded(version: version))
        while true {
            let packet = try readPacket(fd, version: version)
            if case .suback(let ack) = packet {
                guard ack.reasonCodes.first.map({ !$0.isError }) ?? false else { throw BenchError("SUBSCRIBE \(filter) refused") }
                return
            }
        }
    }
}
