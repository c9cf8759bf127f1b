// ShardSet: insert, remove, union, iteration order.

import XCTest
import Router

final class ShardSetTests: XCTestCase {
    func testInsertRemoveIterate() {
        var s = ShardSet.empty
        XCTAssertTrue(s.isEmpty)
        s.insert(3); s.insert(0); s.insert(63)
        XCTAssertEqual(Array(s), [0, 3, 63])
        XCTAssertTrue(s.contains(63))
        XCTAssertFalse(s.contains(1))
        s.remove(3)
        XCTAssertEqual(Array(s), [0, 63])
        var t = ShardSet()
        t.insert(5)
        s.formUnion(t)
        XCTAssertEqual(Array(s), [0, 5, 63])
        XCTAssertEqual(s.count, 3)
    }
}
