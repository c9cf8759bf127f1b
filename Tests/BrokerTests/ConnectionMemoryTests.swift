// What an idle connection costs the broker (docs/benchmarks.md, "Idle connections"): the slot's
// size, and one copy of the client id however many shards know it.

import Codec
import XCTest
@testable import Broker

final class ConnectionMemoryTests: XCTestCase {
    func testSlotStaysSmall() {
        // 312 bytes on 64-bit Linux; a field added in the wrong place (padding) or inline where a
        // reference would do shows up here before it shows up as RSS per idle connection.
        XCTAssertLessThanOrEqual(MemoryLayout<ClientConnection>.stride, 312)
        XCTAssertLessThanOrEqual(MemoryLayout<StreamDecoder>.size, 62)
    }

    /// The address of a native string's UTF-8 storage.
    func storage(_ s: String) -> UnsafeRawPointer? {
        var copy = s
        return copy.withUTF8 { UnsafeRawPointer($0.baseAddress) }
    }

    func testClientIDStorageIsSharedOnItsHomeShardAndCopiedAcrossShards() throws {
        let h = CoreHarness(shards: 2)
        // Ids long enough to live in heap storage (15 bytes or fewer are stored inline). On the
        // id's home shard the registry entry shares the slot's string; a claim that crosses a
        // mailbox carries the id's bytes (records hold no pointers, so they could leave the
        // process), and the home registry keeps its own copy, equal in value.
        var checked = (same: 0, cross: 0)
        for i in 0..<16 {
            let id = "a-client-id-long-enough-\(i)"
            let home = h.cores[0].homeShard(of: id)
            let shard = i % 2
            let c = h.connect(shard: shard)
            h.send(c, .connect(Connect(clientID: id)))
            XCTAssertEqual(h.output(c), [0x20, 0x02, 0x00, 0x00])
            let slotID = h.cores[c.shard].connections[Int(c.id.slot)].clientID
            let key = try XCTUnwrap(h.cores[home].registry.keys.first { $0 == id })
            XCTAssertEqual(key, slotID)
            if home == shard {
                XCTAssertEqual(storage(key), storage(slotID), "registry key and slot share one string")
                checked.same += 1
            } else {
                XCTAssertNotEqual(storage(key), storage(slotID), "the claim carried bytes, not a reference")
                checked.cross += 1
            }
        }
        XCTAssertGreaterThan(checked.same, 0)
        XCTAssertGreaterThan(checked.cross, 0)
    }
}
