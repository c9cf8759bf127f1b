// Reading Mosquitto's persistence file without sockets: a file the real Mosquitto 2.0.11 wrote
// (persistence true; a retained message on r/a, a 3.1.1 session s1 subscribed to q/# at QoS 1 with
// "queued1" on q/1 queued, a v5 session s5 (expiry 3600) on v/+ at QoS 2 with "queued2" on v/2),
// every truncation of it refused with an error, never a crash, and the import's topic matching.

import ApusBase
import XCTest
@testable import Store

final class MosquittoDBTests: XCTestCase {
    static let written = Array(Data(base64Encoded: "ALUAbW9zcXVpdHRvIGRiAAAAAAAAAAYAAAABAAAAEDcAAAAAAAAAAQgAAAAAAAAAAAACAAAAUzcAAAAAAAAAAAAAAAAAAAAAAAAHAAEAKQAAAANJ0wIAYXV0by1DRkE3MjNBMS0wM0I2LTMyODItNkE4RC1EMTIzRTdFQzEzNzB2LzJxdWV1ZWQyAAAAAgAAAFM2AAAAAAAAAAAAAAAAAAAAAAAABwABACkAAAADSdMBAGF1dG8tQjc4QzkwNUUtRTQ3Qi04REIxLUFCM0EtRDA1QUM2MTM4QzE0cS8xcXVldWVkMQAAAAIAAABWNQAAAAAAAAAAAAAAAAAAAAAAAAoAAQApAAAAA0nTAQFhdXRvLTU1NTg1MUI3LUE2MTUtQ0MzMi04RkJELTE2NERCRjkzRDM0MHIvYXJldGFpbmVkLWEAAAAGAAAAGgAAAAAAAAAA/////wABAAJJ0wAAAAAAAHMxAAAAAwAAABI2AAAAAAAAAAABAAIBCwABczEAAAAGAAAAGhq+EWsAAAAAAAAOEAABAAJJ0wAAAAAAAHM1AAAAAwAAABI3AAAAAAAAAAABAAICCwABczUAAAAFAAAAEQAAAAAAAgADAQAAAHMxcS8jAAAABQAAABEAAAAAAAIAAwIAAABzNXYvKwAAAAQAAAAINQAAAAAAAAA=")!)

    func read(_ bytes: [UInt8], now: UInt64 = 1_700_000_000_000_000_000) throws -> MosquittoImport {
        try bytes.withUnsafeBytes { try MosquittoDB.read($0, now: now) }
    }

    func testAFileMosquittoWroteIsRead() throws {
        let data = try read(Self.written)
        XCTAssertEqual(data.version, 6)
        XCTAssertEqual(data.retained.map { String(decoding: $0.topic, as: UTF8.self) }, ["r/a"])
        XCTAssertEqual(data.retained[0].payload, Array("retained-a".utf8))
        XCTAssertEqual(data.retained[0].qos, 1)
        let sessions = Dictionary(uniqueKeysWithValues: data.sessions.map { (String(decoding: $0.clientID, as: UTF8.self), $0) })
        XCTAssertEqual(Set(sessions.keys), ["s1", "s5"])
        let s1 = try XCTUnwrap(sessions["s1"]), s5 = try XCTUnwrap(sessions["s5"])
        XCTAssertEqual(s1.expiry, .max, "3.1.1 clean session 0: never expires")
        XCTAssertEqual(s1.version, 4)
        XCTAssertEqual(s1.subscriptions, [StoredSubscription(filter: Array("q/#".utf8), options: 1, identifier: 0)])
        XCTAssertEqual(s1.messages.map { String(decoding: $0.payload, as: UTF8.self) }, ["queued1"])
        XCTAssertEqual(s1.messages[0].state, .queued)
        XCTAssertEqual(s1.messages[0].qos, 1)
        XCTAssertEqual(s5.expiry, 3600)
        XCTAssertEqual(s5.version, 5)
        XCTAssertEqual(s5.subscriptions.map(\.options), [2])
        XCTAssertEqual(s5.messages.map { String(decoding: $0.topic, as: UTF8.self) }, ["v/2"])
        XCTAssertEqual(s5.messages[0].qos, 2)
        XCTAssertEqual(data.skipped, 0)
        // The digest is the same for a second read and does not depend on the order of sessions.
        let again = try read(Self.written)
        XCTAssertEqual(StoreDigest.of(retained: data.retained, sessions: data.sessions),
                       StoreDigest.of(retained: again.retained, sessions: again.sessions.reversed()))
        XCTAssertNotEqual(StoreDigest.of(retained: data.retained, sessions: data.sessions),
                          StoreDigest.of(retained: data.retained, sessions: Array(data.sessions.dropLast())))
    }

    func testEveryTruncationIsAnErrorNotACrash() {
        var refused = 0
        for n in 0..<Self.written.count {
            do { _ = try read(Array(Self.written[0..<n])) } catch { refused += 1 }
        }
        // A cut between two chunks is a shorter, valid file; a cut inside a chunk or the header is an error.
        XCTAssertGreaterThan(refused, Self.written.count - 12)
        var notMosquitto = Self.written
        notMosquitto[3] = 0x4E
        XCTAssertThrowsError(try read(notMosquitto))
        var version = Self.written
        version[22] = 9
        XCTAssertThrowsError(try read(version))
    }

    func testExpiredMessagesAreSkipped() throws {
        // The retained message's expiry time (unix s, little-endian) set in the past.
        var bytes = Self.written
        let data = try read(bytes)
        XCTAssertEqual(data.retained.count, 1)
        // Find the base message chunk of r/a: its store id is the retain chunk's.
        let retainChunk = try XCTUnwrap((0..<bytes.count - 8).last { bytes[$0..<$0 + 8] == [0, 0, 0, 4, 0, 0, 0, 8] })
        let storeID = Array(bytes[retainChunk + 8..<retainChunk + 16])
        let message = try XCTUnwrap((0..<bytes.count - 16).first { bytes[$0..<$0 + 4] == [0, 0, 0, 2] && Array(bytes[$0 + 8..<$0 + 16]) == storeID })
        bytes.replaceSubrange(message + 16..<message + 24, with: [1, 0, 0, 0, 0, 0, 0, 0])  // expired in 1970
        let expired = try read(bytes)
        XCTAssertEqual(expired.retained.count, 0)
        XCTAssertEqual(expired.skipped, 1)
        // Times no clock reaches (a hostile file; the fuzz target found the overflow) saturate.
        bytes.replaceSubrange(message + 16..<message + 24, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        XCTAssertEqual(try read(bytes).retained.count, 1)
    }

    func testTopicMatching() {
        func m(_ f: String, _ t: String) -> Bool { TopicFilter.matches(Array(f.utf8), topic: Array(t.utf8)) }
        XCTAssertTrue(m("a/#", "a"))
        XCTAssertTrue(m("a/#", "a/b/c"))
        XCTAssertTrue(m("a/+/c", "a/b/c"))
        XCTAssertFalse(m("a/+", "a/b/c"))
        XCTAssertTrue(m("+/+", "/x"))
        XCTAssertFalse(m("#", "$SYS/x"))
        XCTAssertTrue(m("$share/g/a/#", "a/b"))
        XCTAssertFalse(m("a/b", "a/b/c"))
    }
}
