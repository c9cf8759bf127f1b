// The trie's open-addressed children index against a Dictionary, through growth and
// backward-shift deletions, with keys that crowd few home slots.

import XCTest
@testable import Router

final class ChildTableTests: XCTestCase {
    func testRandomizedAgainstDictionary() {
        var table = ChildTable()
        var reference: [UInt64: Int32] = [:]  // key: parent << 32 | hash
        var random = SystemRandomNumberGenerator()
        for step in 0..<50_000 {
            // Few parents and hashes: long probe runs, many wrap-arounds and shifts.
            let parent = Int32.random(in: 0..<40, using: &random)
            let hash = UInt64.random(in: 0..<40, using: &random) &* 0x1000_0000_0000_0001
            let key = UInt64(parent) << 32 | (hash & 0xFFFF_FFFF)
            if Bool.random(using: &random) || reference.count < 10 {
                table.set(parent: parent, hash: hash, node: Int32(step))
                reference[key] = Int32(step)
            } else {
                table.remove(parent: parent, hash: hash)
                reference[key] = nil
            }
            XCTAssertEqual(table.find(parent: parent, hash: hash), reference[key])
            XCTAssertEqual(table.count, reference.count)
            if step % 5_000 == 0 {
                for p in Int32(0)..<40 {
                    for h in UInt64(0)..<40 {
                        let hh = h &* 0x1000_0000_0000_0001
                        XCTAssertEqual(table.find(parent: p, hash: hh), reference[UInt64(p) << 32 | (hh & 0xFFFF_FFFF)])
                    }
                }
            }
        }
    }
}
