// The session records of the store without sockets: a session written whole and then changed
// record by record replays to the same session; records that lie about their lengths are refused;
// the copies of a session that moved between shards merge to the later one.

import ApusBase
import XCTest
@testable import Store

final class SessionRecordTests: XCTestCase {
    func message(_ id: UInt64, _ text: String, packetID: UInt16 = 0, state: StoredMessageState = .queued) -> StoredSessionMessage {
        StoredSessionMessage(id: id, packetID: packetID, state: state, qos: 1, retain: false, expiresAt: 0,
                             topic: Array("t/\(id)".utf8), properties: [0x26, 0, 1, 0x6B, 0, 1, 0x76], payload: Array(text.utf8))
    }

    func replay(_ buffer: ByteBuffer) -> (SessionImage, Int) {
        var image = SessionImage()
        var refused = 0
        _ = LogRecord.scan(buffer.readableView) { if !image.apply($0) { refused += 1 } }
        return (image, refused)
    }

    func testASessionAndItsChangesReplayInOrder() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        var seq: UInt64 = 0
        func next() -> UInt64 { seq += 1; return seq }
        let will = StoredWill(qos: 1, retain: true, delay: 30, topic: Array("w".utf8), properties: [3, 0x18, 0, 0], payload: Array("bye".utf8))
        let session = SessionRecord(key: 7, stamp: 1_000, offlineSince: 0, expiry: 3600, nextPacketID: 5, version: 5,
                                    clientID: Array("client".utf8),
                                    subscriptions: [StoredSubscription(filter: Array("a/#".utf8), options: 0x21, identifier: 9)],
                                    will: will, awaitingRelease: [3],
                                    messages: [message(1, "in flight", packetID: 4, state: .awaitingPubAck), message(2, "queued")])
        session.appendImage(sequence: next(), salt: 0, into: &buffer)
        // Message 2 is sent, 1 acknowledged; 3 arrives and queues; a QoS 2 id comes, 3's id goes.
        SessionLog.appendState(key: 7, id: 2, packetID: 5, state: .awaitingPubAck, sequence: next(), salt: 0, into: &buffer)
        SessionLog.appendDone(key: 7, id: 1, sequence: next(), salt: 0, into: &buffer)
        let third = message(3, "third")
        let bytes = third.topic + third.properties + third.payload
        bytes.withUnsafeBytes {
            SessionLog.appendMessage(key: 7, id: 3, packetID: 0, state: .queued, qos: 1, retain: false, expiresAt: 0,
                                     topicLength: third.topic.count, propertiesLength: third.properties.count, bytes: $0,
                                     sequence: next(), salt: 0, into: &buffer)
        }
        SessionLog.appendQoS2(key: 7, packetID: 8, received: true, sequence: next(), salt: 0, into: &buffer)
        SessionLog.appendQoS2(key: 7, packetID: 3, received: false, sequence: next(), salt: 0, into: &buffer)
        // Offline now, one subscription more; another session begins and ends.
        var state = session
        state.offlineSince = 2_000
        state.subscriptions.append(StoredSubscription(filter: Array("b".utf8), options: 2, identifier: 0))
        state.stamp = 99  // a state record does not change the stamp
        state.appendState(sequence: next(), salt: 0, into: &buffer)
        SessionRecord(key: 8, stamp: 5, expiry: 10, clientID: Array("other".utf8)).appendImage(sequence: next(), salt: 0, into: &buffer)
        SessionLog.appendEnd(key: 8, sequence: next(), salt: 0, into: &buffer)
        // Message 2 got PUBREC: its bytes are not needed any more.
        SessionLog.appendState(key: 7, id: 2, packetID: 5, state: .awaitingPubComp, sequence: next(), salt: 0, into: &buffer)

        let (image, refused) = replay(buffer)
        XCTAssertEqual(refused, 0)
        XCTAssertEqual(image.count, 1)
        let got = image.records[0]
        XCTAssertEqual(got.key, 7)
        XCTAssertEqual(got.stamp, 1_000)
        XCTAssertEqual(got.offlineSince, 2_000)
        XCTAssertEqual(got.expiry, 3600)
        XCTAssertEqual(got.version, 5)
        XCTAssertEqual(got.clientID, Array("client".utf8))
        XCTAssertEqual(got.will, will)
        XCTAssertEqual(got.subscriptions.map { String(decoding: $0.filter, as: UTF8.self) }, ["a/#", "b"])
        XCTAssertEqual(got.subscriptions[0].identifier, 9)
        XCTAssertEqual(got.awaitingRelease, [8])
        XCTAssertEqual(got.messages.map(\.id), [2, 3])
        XCTAssertEqual(got.messages[0].state, .awaitingPubComp)
        XCTAssertEqual(got.messages[0].packetID, 5)
        XCTAssertEqual(got.messages[0].payload, [])
        XCTAssertEqual(got.messages[1], third)
    }

    func testAnImageRoundTrips() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        let session = SessionRecord(key: 1, stamp: 2, offlineSince: 3, expiry: .max, nextPacketID: 65535, version: 4,
                                    clientID: Array("ü".utf8), subscriptions: [], will: nil, awaitingRelease: [1, 2],
                                    messages: [message(1, "x", packetID: 9, state: .awaitingPubRec)])
        session.appendImage(sequence: 1, salt: 77, into: &buffer)
        var decoded: SessionRecord? = nil
        if let record = LogRecord.record(in: buffer.readableView, at: 0, salt: 77) { decoded = SessionRecord(record) }
        XCTAssertEqual(decoded, session)
    }

    func testRecordsThatLieAboutTheirLengthsAreRefused() {
        var good = ByteBuffer()
        defer { good.deallocate() }
        SessionRecord(key: 1, stamp: 2, expiry: 3, clientID: Array("c".utf8),
                      subscriptions: [StoredSubscription(filter: Array("f".utf8), options: 1, identifier: 0)],
                      messages: [message(1, "m")]).appendImage(sequence: 1, salt: 0, into: &good)
        var body: [UInt8] = []
        _ = LogRecord.scan(good.readableView) { body = Array($0.body) }
        // Every truncation, and a subscription count that claims more than is there, are refused
        // (the CRC is right: the body itself lies).
        var lies: [[UInt8]] = (0..<body.count).map { Array(body[0..<$0]) }
        var count = body
        count[37] = 0xFF  // the subscription count's third byte (it starts after 8+8+8+4+2+1+1+2+1 bytes)
        lies.append(count)
        for lie in lies {
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            lie.withUnsafeBytes { b in
                LogRecord.append(type: StoreRecordType.sessionImage.rawValue, sequence: 1, bodySize: b.count, into: &buffer) { p in
                    if let base = b.baseAddress { p.copyMemory(from: base, byteCount: b.count) }
                }
            }
            let (image, refused) = replay(buffer)
            XCTAssertEqual(refused, 1, "a body of \(lie.count) bytes")
            XCTAssertEqual(image.count, 0)
        }
    }

    func testMessagesOfUnknownSessionsAreIgnored() {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        SessionLog.appendDone(key: 5, id: 1, sequence: 1, salt: 0, into: &buffer)
        SessionLog.appendQoS2(key: 5, packetID: 1, received: true, sequence: 2, salt: 0, into: &buffer)
        let (image, refused) = replay(buffer)
        XCTAssertEqual(refused, 0)
        XCTAssertEqual(image.count, 0)
    }

    func testTheLaterCopyOfAMovedSessionWins() {
        func image(_ records: [SessionRecord]) -> SessionImage {
            var buffer = ByteBuffer()
            defer { buffer.deallocate() }
            for (i, r) in records.enumerated() { r.appendImage(sequence: UInt64(i + 1), salt: 0, into: &buffer) }
            return replay(buffer).0
        }
        let old = SessionRecord(key: 1, stamp: 100, expiry: 60, clientID: Array("c".utf8), messages: [message(1, "old")])
        let new = SessionRecord(key: 4, stamp: 200, expiry: 60, clientID: Array("c".utf8), messages: [message(1, "old"), message(2, "new")])
        let other = SessionRecord(key: 2, stamp: 150, expiry: 60, clientID: Array("d".utf8))
        for order in [[image([old, other]), image([new])], [image([new]), image([old, other])]] {
            let merged = SessionImage.merge(order)
            XCTAssertEqual(merged.map { String(decoding: $0.clientID, as: UTF8.self) }, ["d", "c"])
            XCTAssertEqual(merged[1].stamp, 200)
            XCTAssertEqual(merged[1].messages.count, 2)
        }
    }
}
