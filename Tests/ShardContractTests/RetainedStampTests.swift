// RetainedStamp: the order replicas use to keep the latest retained message.

import XCTest
import ShardContract

final class RetainedStampTests: XCTestCase {
    func testTimeFirstThenNodeThenShard() {
        let a = RetainedStamp(time: 10, origin: ShardAddress(node: 9, shard: 7))
        let b = RetainedStamp(time: 11, origin: ShardAddress(node: 0, shard: 0))
        XCTAssertLessThan(a, b, "a later time wins whatever the origin")
        let c = RetainedStamp(time: 11, origin: ShardAddress(node: 1, shard: 0))
        XCTAssertLessThan(b, c, "same time: the node breaks the tie")
        let d = RetainedStamp(time: 11, origin: ShardAddress(node: 1, shard: 2))
        XCTAssertLessThan(c, d, "same time and node: the shard breaks the tie")
        XCTAssertFalse(d < d)
        XCTAssertEqual([d, a, c, b].sorted(), [a, b, c, d])
    }
}
