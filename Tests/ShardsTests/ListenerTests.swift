// Listening sockets: TCP_NODELAY set on the listener reaches every accepted socket (the shards
// rely on it instead of a setsockopt per connection).

@preconcurrency import Glibc
import XCTest
@testable import Shards

final class ListenerTests: XCTestCase {
    /// Opens a listener, connects to it and returns the accepted socket's TCP_NODELAY.
    func acceptedNoDelay(listenerNoDelay: Bool) throws -> Bool {
        let (client, accepted) = try loopbackPair(noDelay: listenerNoDelay)
        defer { close(client); close(accepted) }
        return Listener.noDelay(accepted)
    }

    func testAcceptedSocketsInheritNoDelay() throws {
        XCTAssertTrue(try acceptedNoDelay(listenerNoDelay: true))
        XCTAssertFalse(try acceptedNoDelay(listenerNoDelay: false))
    }
}
