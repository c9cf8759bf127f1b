// UTF-8 rules [MQTT-1.5.4], topic names, topic filters and `$share/` filters.

import XCTest
@testable import Codec

final class ValidationTests: XCTestCase {
    func valid(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { TopicValidation.isValidMQTTString($0) } }
    func name(_ s: String) -> Bool { Array(s.utf8).withUnsafeBytes { TopicValidation.isValidTopicName($0) } }

    func testUTF8() {
        XCTAssertTrue(valid(Array("plain ascii".utf8)))
        XCTAssertTrue(valid(Array("ü∑😀".utf8)))
        XCTAssertTrue(valid([0x01, 0x7F, 0xC2, 0x80]))  // control characters are accepted
        XCTAssertTrue(valid([0xEF, 0xBB, 0xBF]))  // U+FEFF
        XCTAssertFalse(valid([0x00]))
        XCTAssertFalse(valid([0xC0, 0xAF]))  // overlong
        XCTAssertFalse(valid([0xE0, 0x80, 0xAF]))  // overlong
        XCTAssertFalse(valid([0xED, 0xBF, 0xBF]))  // surrogate
        XCTAssertFalse(valid([0xF4, 0x90, 0x80, 0x80]))  // > U+10FFFF
        XCTAssertFalse(valid([0xF8, 0x88, 0x80, 0x80, 0x80]))
        XCTAssertFalse(valid([0x80]))  // lone continuation
        XCTAssertFalse(valid([0xE2, 0x82]))  // truncated
    }

    func testTopicNames() {
        XCTAssertTrue(name("a/b/c"))
        XCTAssertTrue(name("/"))
        XCTAssertTrue(name("$SYS/x"))
        XCTAssertFalse(name(""))
        XCTAssertFalse(name("a/+"))
        XCTAssertFalse(name("a/#"))
        XCTAssertFalse(name(String(repeating: "x", count: 65_536)))
    }

    func testTopicFilters() {
        for f in ["#", "+", "a/#", "a/+/c", "+/+", "/", "a//b", "$SYS/#", "sport/tennis/+"] {
            XCTAssertTrue(TopicValidation.isValidTopicFilter(f), f)
        }
        for f in ["", "a/#/c", "a#", "a/b#", "+a", "a/+b", "##"] {
            XCTAssertFalse(TopicValidation.isValidTopicFilter(f), f)
        }
    }

    func testSharedFilters() {
        XCTAssertEqual(SharedSubscriptionFilter("$share/g1/a/+/c"), SharedSubscriptionFilter(group: "g1", filter: "a/+/c"))
        XCTAssertEqual(SharedSubscriptionFilter("$share/g/#")?.filter, "#")
        XCTAssertNil(SharedSubscriptionFilter("$share//a"))
        XCTAssertNil(SharedSubscriptionFilter("$share/g"))
        XCTAssertNil(SharedSubscriptionFilter("$share/g/"))
        XCTAssertNil(SharedSubscriptionFilter("$share/g+/a"))
        XCTAssertNil(SharedSubscriptionFilter("$share/g#/a"))
        XCTAssertNil(SharedSubscriptionFilter("a/b"))
        XCTAssertTrue(TopicValidation.isValidTopicFilter("$share/g/a/b"))
        XCTAssertEqual(SharedSubscriptionFilter("$queue/jobs/+")?.group, "$queue")
        XCTAssertEqual(SharedSubscriptionFilter("$queue/jobs/+")?.filter, "jobs/+")
        XCTAssertNil(SharedSubscriptionFilter("$queue/"))
        XCTAssertFalse(TopicValidation.isValidTopicFilter("$queue/a/#/b"))
        XCTAssertFalse(TopicValidation.isValidTopicFilter("$share/g/a/#/b"))
    }
}

extension SharedSubscriptionFilter {
    init(group: String, filter: String) {
        self = SharedSubscriptionFilter("$share/\(group)/\(filter)")!
    }
}
