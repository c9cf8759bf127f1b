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

    /// The word-at-a-time topic check agrees with its definition (valid MQTT string, 1...65535
    /// bytes, no `+`/`#`) on random strings around the 8-byte boundaries.
    func testTopicNameFastPathAgreesWithDefinition() {
        func reference(_ bytes: [UInt8]) -> Bool {
            !bytes.isEmpty && !bytes.contains(UInt8(ascii: "+")) && !bytes.contains(UInt8(ascii: "#")) && valid(bytes)
        }
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = Array("ab/$ ".utf8) + [0x00, 0x2B, 0x23, 0x7F, 0x01, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x80, 0xFF]
        for _ in 0..<20_000 {
            let length = Int.random(in: 1...40, using: &rng)
            var bytes = (0..<length).map { _ in Bool.random(using: &rng) ? UInt8(ascii: "x") : alphabet.randomElement(using: &rng)! }
            if Int.random(in: 0..<3, using: &rng) == 0 { bytes = Array(repeating: UInt8(ascii: "t"), count: length) }
            if Int.random(in: 0..<4, using: &rng) == 0 { bytes[Int.random(in: 0..<length, using: &rng)] = alphabet.randomElement(using: &rng)! }
            let fast = bytes.withUnsafeBytes { TopicValidation.isValidTopicName($0) }
            XCTAssertEqual(fast, reference(bytes), "\(bytes)")
        }
        for (topic, expected) in [("abcdefgh+", false), ("abcdefg#", false), ("abcdefghijklmnop", true),
                                  ("12345678/é/12345678", true), ("sensors/kitchen/temperature", true)] {
            XCTAssertEqual(name(topic), expected, topic)
        }
        XCTAssertFalse([UInt8](Array("abcdefgh".utf8) + [0]).withUnsafeBytes { TopicValidation.isValidTopicName($0) })
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
