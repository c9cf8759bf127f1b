// A TCP connection through a real listener on 127.0.0.1: what the listener options reach.

@preconcurrency import Glibc
import XCTest
@testable import Shards

/// Opens a listener (with the given options), connects to it and accepts: (client, accepted).
/// The listener is closed again; the caller closes both sockets.
func loopbackPair(noDelay: Bool = false, timestamps: Bool = false) throws -> (client: Int32, accepted: Int32) {
    let (fds, port) = try Listener.open(host: "127.0.0.1", port: 0, count: 1, backlog: 8, noDelay: noDelay, receiveTimestamps: timestamps)
    defer { close(fds[0]) }
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    XCTAssertGreaterThanOrEqual(client, 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    XCTAssertEqual(rc, 0)
    let accepted = accept(fds[0], nil, nil)
    XCTAssertGreaterThanOrEqual(accepted, 0)
    return (client, accepted)
}
