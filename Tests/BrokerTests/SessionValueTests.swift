// The Session value on its own (Session.swift): the only place a session changes, tested without a
// core. The core's use of it is covered by SessionTests, InflightTests and WillDelayTests.

import Codec
import XCTest
@testable import Broker

final class SessionValueTests: XCTestCase {
    func message(_ payload: String, qos: QoS = .atLeastOnce) -> StoredMessage {
        let topic: [UInt8] = Array("a/b".utf8), body = Array(payload.utf8)
        return topic.withUnsafeBytes { t in
            body.withUnsafeBytes { p in
                StoredMessage(topic: t, properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: p, qos: qos, retain: false)
            }
        }
    }

    /// Sends `message` as the core does: a packet id, then the message in flight under it.
    func send(_ message: StoredMessage, _ state: InflightState, in s: inout Session) -> UInt16 {
        let id = s.allocatePacketID()
        s.addInflight(message, packetID: id, state: state)
        return id
    }

    func payload(_ m: StoredMessage?) -> String? {
        m.map { String(decoding: $0.bytes[($0.topicLength + $0.propertiesLength)...], as: UTF8.self) }
    }

    func testSubscribeReplacesAndUnsubscribeRemovesTheIdentifierToo() {
        var s = Session()
        XCTAssertFalse(s.subscribe("a/#", options: SubscriptionOptions(qos: .atMostOnce), identifier: 7))
        XCTAssertEqual(s.subscriptionIdentifiers["a/#"], 7)
        XCTAssertTrue(s.subscribe("a/#", options: SubscriptionOptions(qos: .atLeastOnce), identifier: 0))
        XCTAssertEqual(s.subscriptions["a/#"]?.qos, .atLeastOnce)
        XCTAssertNil(s.subscriptionIdentifiers["a/#"], "a re-subscription without an identifier drops the old one")
        XCTAssertTrue(s.unsubscribe("a/#"))
        XCTAssertFalse(s.unsubscribe("a/#"))
        XCTAssertTrue(s.subscriptions.isEmpty)
    }

    func testPacketIDsSkipTheOnesInFlightAndWrapPast65535() {
        var s = Session()
        XCTAssertEqual(send(message("1"), .awaitingPubAck, in: &s), 1)
        XCTAssertEqual(send(message("2"), .awaitingPubAck, in: &s), 2)
        // Finish 2, keep 1 in flight; go round the whole id space: 1 is skipped, 2 is reused.
        XCTAssertEqual(payload(s.removeInflight(2, state: .awaitingPubAck)?.message), "2")
        var last: UInt16 = 0
        for _ in 0..<65_533 {
            last = send(message("x"), .awaitingPubAck, in: &s)
            _ = s.removeInflight(at: s.inflight.count - 1)
        }
        XCTAssertEqual(last, 65_535)
        XCTAssertEqual(send(message("y"), .awaitingPubAck, in: &s), 2, "1 is still in flight")
    }

    func testQoS2FlowKeepsTheIdButNotTheMessageAfterPubRec() throws {
        var s = Session()
        let id = send(message("q2", qos: .exactlyOnce), .awaitingPubRec, in: &s)
        XCTAssertNil(s.removeInflight(id, state: .awaitingPubAck))
        let i = try XCTUnwrap(s.qos2InflightIndex(id))
        XCTAssertEqual(payload(s.awaitPubComp(at: i)), "q2")
        XCTAssertEqual(s.inflight[i].state, .awaitingPubComp)
        XCTAssertNil(s.inflight[i].message)
        XCTAssertNil(s.removeInflight(id, state: .awaitingPubAck), "PUBACK does not end a QoS 2 delivery")
        XCTAssertNotNil(s.removeInflight(id, state: .awaitingPubComp))
        XCTAssertTrue(s.inflight.isEmpty)
    }

    func testInboundQoS2IdsAreHeldUntilReleased() {
        var s = Session()
        s.awaitRelease(9)
        XCTAssertTrue(s.awaitingRelease.contains(9))
        XCTAssertTrue(s.release(9))
        XCTAssertFalse(s.release(9))
    }

    func testQueueIsFIFO() {
        var s = Session()
        s.enqueue(message("a")); s.enqueue(message("b"))
        XCTAssertEqual(payload(s.dequeue()), "a")
        XCTAssertEqual(payload(s.dequeue()), "b")
        XCTAssertNil(s.dequeue())
    }

    func testAWillIsTakenOnceAndADelayedWillIsApartFromIt() throws {
        var s = Session()
        s.setWill(Will(topic: "w", payload: [1]))
        XCTAssertEqual(s.will?.topic, "w")
        XCTAssertNil(s.delayedWill)
        let will = try XCTUnwrap(s.takeWill())
        XCTAssertNil(s.takeWill())
        s.delayWill(will, until: 42)
        XCTAssertNil(s.will, "a delayed will is not the connection's will")
        XCTAssertEqual(s.delayedWill?.dueAt, 42)
        XCTAssertNil(s.takeWill())
        XCTAssertEqual(s.takeDelayedWill()?.topic, "w")
        XCTAssertNil(s.delayedWill)
    }

    func testSnapshotRestoresMessagesIdsAndPacketCounter() {
        var s = Session()
        s.subscribe("t/+", options: SubscriptionOptions(qos: .exactlyOnce), identifier: 3)
        _ = send(message("in flight"), .awaitingPubAck, in: &s)
        s.enqueue(message("queued"))
        s.awaitRelease(5)
        let snapshot = s.snapshot(now: 0)
        XCTAssertEqual(snapshot.subscriptions, [SessionSnapshot.Subscription(filter: "t/+", options: SubscriptionOptions(qos: .exactlyOnce), identifier: 3)])

        var restored = Session()
        restored.restoreMessages(from: snapshot, now: 0)
        XCTAssertEqual(restored.inflight.map(\.packetID), [1])
        XCTAssertEqual(payload(restored.inflight[0].message), "in flight")
        XCTAssertEqual(restored.queue.count, 1)
        XCTAssertEqual(restored.awaitingRelease, [5])
        XCTAssertEqual(send(message("next"), .awaitingPubAck, in: &restored), 2, "the packet id counter moved too")
        XCTAssertTrue(restored.subscriptions.isEmpty, "the caller adds subscriptions (they enter the trie)")
    }
}
