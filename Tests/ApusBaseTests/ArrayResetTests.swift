// removeAllKeepingCapacity: empties short and long arrays, keeps their storage, releases elements.

import XCTest
import ApusBase

final class ArrayResetTests: XCTestCase {
    func testEmptiesShortAndLongArraysAndKeepsTheirStorage() {
        for count in [0, 1, 3, 16, 17, 1000] {
            var array = Array(Int32(0)..<Int32(count))
            let capacity = array.capacity
            array.removeAllKeepingCapacity()
            XCTAssertTrue(array.isEmpty, "\(count) elements")
            XCTAssertEqual(array.capacity, capacity, "\(count) elements")
            array.append(7)
            XCTAssertEqual(array, [7])
        }
    }

    func testReleasesTheElementsItRemoves() {
        final class Token {}
        weak var watched: Token?
        var array: [Token] = []
        do {
            let token = Token()
            watched = token
            array = [token, Token()]
        }
        XCTAssertNotNil(watched)
        array.removeAllKeepingCapacity()
        XCTAssertNil(watched)
    }
}
