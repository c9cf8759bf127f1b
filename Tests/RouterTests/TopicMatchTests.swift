// TopicMatch against the specification's examples (section 4.7) and against the trie.

import XCTest
@testable import Router

final class TopicMatchTests: XCTestCase {
    func testSpecificationExamples() {
        let yes: [(String, String)] = [
            ("sport/tennis/player1/#", "sport/tennis/player1"), ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
            ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"), ("sport/#", "sport"), ("#", "a/b"),
            ("sport/tennis/+", "sport/tennis/player1"), ("+/+", "/finance"), ("/+", "/finance"), ("+", "sport"),
            ("sport/+/player1", "sport/tennis/player1"), ("a/+/c", "a//c"), ("+/#", "a"), ("a/b", "a/b"), ("$SYS/#", "$SYS/x"),
            ("$SYS/+", "$SYS/x"), ("+", ""), ("/", "/"), ("a//b", "a//b"),
        ]
        let no: [(String, String)] = [
            ("sport/tennis/+", "sport/tennis/player1/ranking"), ("sport/+", "sport"), ("+", "/finance"), ("#", "$SYS/x"),
            ("+/monitor/Clients", "$SYS/monitor/Clients"), ("a/b", "a/bc"), ("a/bc", "a/b"), ("a/b", "a"), ("a", "a/b"),
            ("a/+", "a/b/c"), ("a/+/c", "a/b"), ("a//b", "a/b"), ("/", "a"),
        ]
        for (f, t) in yes { XCTAssertTrue(TopicMatch.matches(filter: f, topic: t), "\(f) should match \(t)") }
        for (f, t) in no { XCTAssertFalse(TopicMatch.matches(filter: f, topic: t), "\(f) should not match \(t)") }
    }

    func testAgreesWithTheTrie() {
        let filters = ["#", "+", "+/+", "a/#", "a/+", "a/+/c", "a/b/c", "+/b/#", "/+", "a//#", "$x/#", "+/+/+/+"]
        let topics = ["a", "a/b", "a/b/c", "a/b/c/d", "/", "/a", "a//c", "x/b/y", "$x/y", "", "a/", "b/b"]
        var trie = SubscriptionTrie<Int>()
        for (i, f) in filters.enumerated() { trie.update(filter: f) { $0 = i } }
        for t in topics {
            let byTrie = Set(trie.matches(topic: t))
            let byMatch = Set(filters.indices.filter { TopicMatch.matches(filter: filters[$0], topic: t) })
            XCTAssertEqual(byTrie, byMatch, "topic '\(t)'")
        }
    }
}
