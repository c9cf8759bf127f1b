// Listening sockets: TCP_NODELAY set on the listener reaches every accepted socket (the shards
// rely on it instead of a setsockopt per connection).

@preconcurrency import Glibc
import XCTest
@testable import Shards

final class ListenerTests: XCTestCase {
    /// Opens a listener, connects to it and returns the accepted socket's TCP_NODELAY.
    func acceptedNoDelay(listenerNoDelay: Bool) throws -> Bool {
        let (fds, port) = try Listener.open(host: "127.0.0.1", port: 0, count: 1, backlog: 8, noDelay: listenerNoDelay)
        defer { close(fds[0]) }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(client, 0)
        defer { close(client) }
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
        defer { close(accepted) }
        return Listener.noDelay(accepted)
    }

    func testAcceptedSocketsInheritNoDelay() throws {
        XCTAssertTrue(try acceptedNoDelay(listenerNoDelay: true))
        XCTAssertFalse(try acceptedNoDelay(listenerNoDelay: false))
    }
}
