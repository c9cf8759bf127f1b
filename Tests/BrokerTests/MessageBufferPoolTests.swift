// The pool of QoS 1/2 message buffers: capacity is reused, a shared array is never overwritten,
// memory kept is bounded, and a QoS 1 flow through a core returns each buffer for the next message.

import Codec
import XCTest
@testable import Broker

final class MessageBufferPoolTests: XCTestCase {
    func stored(_ payload: [UInt8], reusing buffer: [UInt8] = []) -> StoredMessage {
        Array("t/1".utf8).withUnsafeBytes { topic in
            payload.withUnsafeBytes { body in
                StoredMessage(topic: topic, properties: UnsafeRawBufferPointer(start: nil, count: 0), payload: body,
                              qos: .atLeastOnce, retain: false, reusing: buffer)
            }
        }
    }

    func testRecycledCapacityIsReused() {
        var pool = MessageBufferPool()
        XCTAssertEqual(pool.take().capacity, 0)
        let message = stored([UInt8](repeating: 1, count: 100))
        let capacity = message.bytes.capacity
        pool.recycle(message)
        XCTAssertEqual(pool.count, 1)
        let buffer = pool.take()
        XCTAssertGreaterThanOrEqual(buffer.capacity, capacity)
        let next = stored([2, 3], reusing: buffer)
        XCTAssertEqual(next.bytes, Array("t/1".utf8) + [2, 3])
        XCTAssertEqual(pool.count, 0)
    }

    func testSharedBytesAreCopiedNotOverwritten() {
        var pool = MessageBufferPool()
        let original = stored([7, 7, 7])
        let copy = original  // e.g. a session snapshot still holding the message
        pool.recycle(original)
        let next = stored([9], reusing: pool.take())
        XCTAssertEqual(copy.bytes, Array("t/1".utf8) + [7, 7, 7])
        XCTAssertEqual(next.bytes, Array("t/1".utf8) + [9])
    }

    /// The pool keeps a message's array, not the large payload it shared with other sessions.
    func testRecyclingLetsASharedPayloadGo() {
        var pool = MessageBufferPool()
        var shared: SharedBytes? = [UInt8](repeating: 5, count: 100_000).withUnsafeBytes { SharedBytes(copying: $0) }
        weak var watch = shared
        let message = Array("t/1".utf8).withUnsafeBytes { topic in
            StoredMessage(topic: topic, properties: UnsafeRawBufferPointer(start: nil, count: 0), sharedPayload: shared!, offset: 0,
                          qos: .atLeastOnce, retain: false)
        }
        shared = nil
        XCTAssertEqual(message.payloadCount, 100_000)
        XCTAssertNotNil(watch)
        pool.recycle(consume message)
        XCTAssertEqual(pool.count, 1)
        XCTAssertNil(watch)
    }

    func testKeptMemoryIsBounded() {
        var pool = MessageBufferPool()
        pool.recycle(stored([UInt8](repeating: 0, count: MessageBufferPool.maxBufferCapacity + 1)))
        XCTAssertEqual(pool.count, 0, "arrays above maxBufferCapacity are freed")
        for _ in 0..<200 { pool.recycle(stored([UInt8](repeating: 0, count: 60_000))) }
        XCTAssertGreaterThan(pool.count, 0)
        XCTAssertLessThanOrEqual(pool.count * 60_000, MessageBufferPool.maxPooledBytes)
    }

    func testAcknowledgedDeliveriesReturnTheirBuffers() throws {
        let h = CoreHarness(shards: 1)
        let sub = h.connect(shard: 0)
        h.send(sub, .connect(Connect(clientID: "sub")))
        h.send(sub, .subscribe(Subscribe(packetID: 1, subscriptions: [
            SubscriptionRequest(filter: "t/#", options: SubscriptionOptions(qos: .atLeastOnce)),
        ])))
        _ = h.output(sub)
        let pub = h.connect(shard: 0)
        h.send(pub, .connect(Connect(clientID: "pub")))
        _ = h.output(pub)
        for i in 1...3 {
            sendPublish(h, pub, topic: "t/1", payload: [UInt8(i)], qos: .atLeastOnce, packetID: UInt16(i))
            let delivered = try h.received(sub)
            guard case .publish(_, let payload, _, _, _, let id)? = delivered.first else { return XCTFail("no delivery") }
            XCTAssertEqual(payload, [UInt8(i)])
            XCTAssertEqual(h.cores[0].messageBuffers.count, 0, "the in-flight message holds the buffer")
            h.send(sub, .puback(PublishAck(packetID: id)))
            XCTAssertEqual(h.cores[0].messageBuffers.count, 1, "PUBACK returns it; the next delivery takes it")
        }
    }
}
