// The last messages a shard routed from its own clients, kept for a short while so that a route
// that arrives just after them can still get them (a SUBSCRIBE read on another shard before these
// PUBLISHes were read here, whose routeAdd was still on its way).
//
// Two shards read two sockets at the same time: a PUBLISH read on shard 0 a few microseconds
// after a SUBSCRIBE was read on shard 1 is routed by shard 0 before shard 1's routeAdd arrives.
// Every routeAdd carries the time its SUBSCRIBE arrived; the shard that receives it replays the
// messages it routed since then that the new filter matches and that did not go to that shard, to
// the subscribers of exactly that filter there (`replayPublish`). Fixed memory, no allocation per
// message: a ring of fixed-size slots; a message larger than a slot is not kept (it is not
// replayed), and a slot older than the ring's turn-over is gone.

import Codec
import Router

struct RecentPublishes {
    /// Slack below a route's time. The time is when the SUBSCRIBE arrived (the runtime's
    /// `inputArrivedAfter`: the kernel's receive time, else the earliest it can have arrived), and
    /// a message is kept with the time its shard harvested it, after it arrived; so a PUBLISH that
    /// arrived after the SUBSCRIBE is kept with a later time on any shard. The slack covers the
    /// realtime → monotonic conversion and, without a kernel time, a sleeping shard's wake-up
    /// (about 5 µs). It stays
    /// below a PUBACK round trip (about 23 µs here), so a client that published, saw its PUBACK
    /// and then subscribed does not get that message. The price: while a shard is busy, a message
    /// read elsewhere during the same loop turn as a SUBSCRIBE — concurrent with it — may reach
    /// the new subscriber; none read after it is missed while the ring holds it.
    static let concurrencyNanoseconds: UInt64 = 20_000
    static let slotSize = 512
    static let slotCount = 1024
    /// u64 time, u64 forwarded shards, u64 origin connection, u16 topic, u16 properties,
    /// u16 payload, u8 qos, u8 retain.
    static let header = 32
    static var maximumBytes: Int { slotSize - header }

    private var memory: UnsafeMutableRawPointer?
    private var next = 0
    private var used = 0

    init() {
        memory = UnsafeMutableRawPointer.allocate(byteCount: Self.slotSize * Self.slotCount, alignment: 8)
    }

    mutating func deallocate() {
        memory?.deallocate()
        memory = nil
    }

    var isEnabled: Bool { memory != nil }

    /// Keeps a message routed at `time`, forwarded to the shards in `forwarded`.
    @inline(__always)
    mutating func record(time: UInt64, forwarded: ShardSet, origin: ConnectionID, qos: QoS, retain: Bool,
                         topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        // Retained messages are not kept: a new subscriber gets them from the retained store (a
        // replayed live copy would be a second one).
        guard let memory, !retain, topic.count + properties.count + payload.count <= Self.maximumBytes else { return }
        let p = memory + next * Self.slotSize
        p.storeBytes(of: time, as: UInt64.self)
        p.storeBytes(of: forwarded.rawValue, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: origin.packed, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: UInt16(topic.count), toByteOffset: 24, as: UInt16.self)
        p.storeBytes(of: UInt16(properties.count), toByteOffset: 26, as: UInt16.self)
        p.storeBytes(of: UInt16(payload.count), toByteOffset: 28, as: UInt16.self)
        p.storeBytes(of: qos.rawValue, toByteOffset: 30, as: UInt8.self)
        p.storeBytes(of: retain ? 1 : 0, toByteOffset: 31, as: UInt8.self)
        var offset = Self.header
        if topic.count > 0 { (p + offset).copyMemory(from: topic.baseAddress!, byteCount: topic.count); offset += topic.count }
        if properties.count > 0 { (p + offset).copyMemory(from: properties.baseAddress!, byteCount: properties.count); offset += properties.count }
        if payload.count > 0 { (p + offset).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        next = (next + 1) % Self.slotCount
        used = min(used + 1, Self.slotCount)
    }

    /// Calls `body` for every kept message routed at or after `since` that `filter` matches and
    /// that was not forwarded to `shard`, oldest first (the order they were routed in).
    func forEach(since: UInt64, notForwardedTo shard: Int, matching filter: UnsafeRawBufferPointer,
                 _ body: (_ origin: ConnectionID, _ qos: QoS, _ retain: Bool, _ topic: UnsafeRawBufferPointer,
                          _ properties: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) -> Void) {
        guard let memory, used > 0 else { return }
        // Walk back to the oldest slot not older than `since`, then forward.
        var count = 0
        while count < used {
            let i = (next - 1 - count + Self.slotCount) % Self.slotCount
            if (memory + i * Self.slotSize).load(as: UInt64.self) < since { break }
            count += 1
        }
        for k in stride(from: count - 1, through: 0, by: -1) {
            let p = UnsafeRawPointer(memory + ((next - 1 - k + Self.slotCount) % Self.slotCount) * Self.slotSize)
            if ShardSet(rawValue: p.load(fromByteOffset: 8, as: UInt64.self)).contains(shard) { continue }
            let topicLength = Int(p.load(fromByteOffset: 24, as: UInt16.self))
            let topic = UnsafeRawBufferPointer(start: p + Self.header, count: topicLength)
            guard TopicMatch.matches(filter: filter, topic: topic) else { continue }
            let propertiesLength = Int(p.load(fromByteOffset: 26, as: UInt16.self))
            let payloadLength = Int(p.load(fromByteOffset: 28, as: UInt16.self))
            body(ConnectionID(packed: p.load(fromByteOffset: 16, as: UInt64.self)),
                 QoS(rawValue: p.load(fromByteOffset: 30, as: UInt8.self)) ?? .atMostOnce,
                 p.load(fromByteOffset: 31, as: UInt8.self) != 0, topic,
                 UnsafeRawBufferPointer(start: p + Self.header + topicLength, count: propertiesLength),
                 UnsafeRawBufferPointer(start: p + Self.header + topicLength + propertiesLength, count: payloadLength))
        }
    }
}
