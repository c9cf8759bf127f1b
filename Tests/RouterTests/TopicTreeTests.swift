// The retained-message lookup tree: filter matching, `$` topics, removal and pruning.

import XCTest
@testable import Router

final class TopicTreeTests: XCTestCase {
    func tree(_ topics: [String]) -> TopicTree<String> {
        var t = TopicTree<String>()
        for topic in topics { t.set(topic, forTopic: topic) }
        return t
    }

    func found<V>(_ t: TopicTree<V>, _ filter: String) -> Set<String> {
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

extension TopicTreeTests {
    func testCollidingLevelsStayApart() {
        // Every level hashes alike: the collision chains keep them apart, and pruning unlinks
        // the right node of a chain.
        var t = TopicTree<String>(hashMask: 0)
        let topics = ["a", "b", "a/b", "a/c", "b/c", "c/a/b", "$SYS/x"]
        for topic in topics { t.set(topic, forTopic: topic) }
        for topic in topics { XCTAssertEqual(t.value(forTopic: topic), topic) }
        XCTAssertEqual(found(t, "+/c"), ["a/c", "b/c"])
        XCTAssertEqual(found(t, "#"), ["a", "b", "a/b", "a/c", "b/c", "c/a/b"])
        t.set(nil, forTopic: "a/b")
        t.set(nil, forTopic: "a")
        XCTAssertNil(t.value(forTopic: "a/b"))
        XCTAssertEqual(t.value(forTopic: "a/c"), "a/c")
        XCTAssertEqual(found(t, "a/#"), ["a/c"])
        for topic in topics { t.set(nil, forTopic: topic) }
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.liveNodes, 1)
        XCTAssertEqual(found(t, "#"), [])
    }

    func testNodesAreReusedAndTreeMatchesAModel() {
        // Random sets and removals against a dictionary: the same values, the same filter
        // answers, and no node left behind once everything is gone.
        var t = TopicTree<Int>()
        var model: [String: Int] = [:]
        var rng = SystemRandomNumberGenerator()
        let levels = ["a", "b", "", "$x", "long-level-name"]
        for step in 0..<4000 {
            let depth = Int.random(in: 1...4, using: &rng)
            let topic = (0..<depth).map { _ in levels.randomElement(using: &rng)! }.joined(separator: "/")
            if Bool.random(using: &rng) {
                t.set(step, forTopic: topic); model[topic] = step
            } else {
                t.set(nil, forTopic: topic); model[topic] = nil
            }
        }
        XCTAssertEqual(t.count, model.count)
        for (topic, value) in model { XCTAssertEqual(t.value(forTopic: topic), value) }
        XCTAssertEqual(found(t, "#"), Set(model.keys.filter { !$0.hasPrefix("$") }))
        XCTAssertEqual(found(t, "a/+"), Set(model.keys.filter { $0.hasPrefix("a/") && $0.split(separator: "/", omittingEmptySubsequences: false).count == 2 }))
        XCTAssertEqual(Set(t.values(matching: "a/#")), Set(model.filter { $0.key == "a" || $0.key.hasPrefix("a/") }.values))
        for topic in model.keys { t.set(nil, forTopic: topic) }
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.liveNodes, 1)
    }
}

extension TopicTreeTests {
    func testRemovedLevelsBytesAreCompactedAway() {
        // A long stream of new and removed topics: the level bytes stay bounded by the live ones,
        // and what is left is found as before.
        var t = TopicTree<Int>()
        for round in 0..<20 {
            for i in 0..<500 { t.set(i, forTopic: "sensors/room-\(round)-\(i)/temperature-celsius") }
            for i in 0..<500 where i % 10 != 0 || round < 19 { t.set(nil, forTopic: "sensors/room-\(round)-\(i)/temperature-celsius") }
        }
        XCTAssertEqual(t.count, 50)
        XCTAssertLessThan(t.levelBytes.count, 50 * 60 + 8192)
        XCTAssertEqual(t.value(forTopic: "sensors/room-19-120/temperature-celsius"), 120)
        XCTAssertNil(t.value(forTopic: "sensors/room-18-120/temperature-celsius"))
        XCTAssertEqual(t.values(matching: "sensors/+/temperature-celsius").count, 50)
        XCTAssertEqual(found(t, "sensors/room-19-490/#"), ["sensors/room-19-490/temperature-celsius"])
    }
}
