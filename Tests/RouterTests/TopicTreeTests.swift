// The retained-message lookup tree: filter matching, `$` topics, removal and pruning.

import XCTest
import Router

final class TopicTreeTests: XCTestCase {
    func tree(_ topics: [String]) -> TopicTree<String> {
        var t = TopicTree<String>()
        for topic in topics { t.set(topic, forTopic: topic) }
        return t
    }

    func found(_ t: TopicTree<String>, _ filter: String) -> Set<String> {
        Set(t.matches(filter: filter).map(\.topic))
    }

    func testFilterMatching() {
        let t = tree(["sport", "sport/tennis", "sport/tennis/player1", "sport/golf", "/finance", "a//b", "$SYS/uptime"])
        XCTAssertEqual(found(t, "sport/#"), ["sport", "sport/tennis", "sport/tennis/player1", "sport/golf"])
        XCTAssertEqual(found(t, "sport/+"), ["sport/tennis", "sport/golf"])
        XCTAssertEqual(found(t, "+/+"), ["sport/tennis", "sport/golf", "/finance"])
        XCTAssertEqual(found(t, "#"), ["sport", "sport/tennis", "sport/tennis/player1", "sport/golf", "/finance", "a//b"])
        XCTAssertEqual(found(t, "+"), ["sport"])
        XCTAssertEqual(found(t, "a/+/b"), ["a//b"])
        XCTAssertEqual(found(t, "$SYS/#"), ["$SYS/uptime"])
        XCTAssertEqual(found(t, "sport/tennis/player1"), ["sport/tennis/player1"])
        XCTAssertEqual(found(t, "nothing/here"), [])
    }

    func testReplaceRemovePrune() {
        var t = tree(["a/b/c", "a/b"])
        t.set("new", forTopic: "a/b/c")
        XCTAssertEqual(t.value(forTopic: "a/b/c"), "new")
        XCTAssertEqual(t.count, 2)
        t.set(nil, forTopic: "a/b/c")
        XCTAssertNil(t.value(forTopic: "a/b/c"))
        XCTAssertEqual(t.count, 1)
        t.set(nil, forTopic: "a/b")
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(found(t, "#"), [])
        t.set(nil, forTopic: "never/there")
        XCTAssertEqual(t.count, 0)
    }
}
