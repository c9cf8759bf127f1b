// Drives ShardCores the way the shard runtime does, without sockets or threads: bytes in through
// `receive`, the flush queue drained with `takeBytesToSend`/`didSend`, outbox records carried
// through real `Mailbox`es to `receiveShardMessage`. Subscribers acknowledge QoS 1 deliveries
// with PUBACK, as a client would. Everything the loop needs is allocated up front, so whatever
// the malloc counter sees in `publish()` is the broker's own.

import Broker
import Codec
import Shards

/// A client connection of the harness.
public struct HarnessClient: Sendable {
    public var shard: Int
    public var id: ConnectionID
}

/// One or more cores with connected clients, driven like the runtime drives them.
public final class PublishHarness {
    public let cores: [ShardCore]
    /// mailboxes[from][to] (nil on the diagonal).
    let mailboxes: [[Mailbox?]]
    // The harness stands in for the shard runtime; like a shard it is single-threaded, so its
    // fields skip the dynamic exclusivity checks that would otherwise dominate its own cost.
    @exclusivity(unchecked) public var now: UInt64 = 1_000_000_000
    @exclusivity(unchecked) public private(set) var publisher = HarnessClient(shard: 0, id: ConnectionID(slot: 0, generation: 0))
    @exclusivity(unchecked) public private(set) var subscribers: [HarnessClient] = []
    /// Per shard: subscriber slot → index in `subscribers`.
    @exclusivity(unchecked) private var subscriberSlots: [[Int32: Int]]
    /// The PUBLISH frame the publisher sends for every message.
    @exclusivity(unchecked) private var frame = UnsafeRawBufferPointer(start: nil, count: 0)
    @exclusivity(unchecked) private var flushScratch: [Int32] = []
    /// Each connection's send buffer, as the runtime's (index: slot × shards + shard).
    @exclusivity(unchecked) private var wires: [ByteBuffer] = []
    /// Packet ids the subscribers received at QoS 1 and acknowledge next: (subscriber, id).
    @exclusivity(unchecked) private var pendingAcks: [(Int, UInt16)] = []
    private let ackFrame = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 8)
    /// PUBLISH packets received by subscribers and PUBACKs by the publisher, for sanity checks.
    @exclusivity(unchecked) public private(set) var deliveries = 0
    @exclusivity(unchecked) public private(set) var publisherAcks = 0
    /// CONNACKs and SUBACKs seen during setup.
    private var connAcks = 0
    private var subAcks = 0

    public init(shards: Int, config: BrokerConfig = BrokerConfig()) {
        cores = (0..<shards).map { ShardCore(shardIndex: $0, shardCount: shards, config: config) }
        mailboxes = (0..<shards).map { from in
            (0..<shards).map { to in from == to ? nil : Mailbox(capacity: 4 << 20) }
        }
        subscriberSlots = Array(repeating: [:], count: shards)
        flushScratch.reserveCapacity(1024)
        pendingAcks.reserveCapacity(1024)
    }

    deinit {
        for i in wires.indices { wires[i].deallocate() }
        ackFrame.deallocate()
        if let base = frame.baseAddress { base.deallocate() }
    }

    /// Connects a publisher on `publisherShard` and one subscriber per entry of `subscriberShards`
    /// on `filter`, all speaking `version`; the publisher will send `topic` at `qos` with
    /// `properties` (v5) and `payloadSize` bytes. Then runs `warmup` messages so that buffers
    /// reach their steady-state size, checking that each made `deliveriesPerMessage` deliveries
    /// (default: one per subscriber; a shared group's members share them).
    public func setUp(publisherShard: Int, subscriberShards: [Int], version: ProtocolVersion, qos: QoS,
               filter: String = "bench/+/data", topic: String = "bench/0/data",
               properties: [UInt8] = [], payloadSize: Int = 64, warmup: Int = 5_000, deliveriesPerMessage: Int? = nil) {
        for (k, shard) in subscriberShards.enumerated() {
            let client = connect(shard: shard, clientID: "bench-sub-\(k)", version: version)
            subscriberSlots[shard][client.id.slot] = subscribers.count
            subscribers.append(client)
            let subscribe = Packet.subscribe(Subscribe(packetID: 1, subscriptions: [
                SubscriptionRequest(filter: filter, options: SubscriptionOptions(qos: qos)),
            ]))
            send(client, subscribe.encoded(version: version))
        }
        publisher = connect(shard: publisherShard, clientID: "bench-pub", version: version)
        precondition(connAcks == subscriberShards.count + 1 && subAcks == subscriberShards.count, "setup failed")

        var buffer = ByteBuffer()
        Array(topic.utf8).withUnsafeBytes { topicBytes in
            properties.withUnsafeBytes { propertyBytes in
                [UInt8](repeating: 0x61, count: payloadSize).withUnsafeBytes { payload in
                    PublishEncoder.encode(version: version, dup: false, qos: qos, retain: false, topic: topicBytes,
                                          packetID: qos == .atMostOnce ? 0 : 7, properties: propertyBytes,
                                          payload: payload, into: &buffer)
                }
            }
        }
        frame = UnsafeRawBufferPointer(buffer.readableView)  // the harness keeps the allocation

        for _ in 0..<warmup { publish() }
        precondition(deliveries == warmup * (deliveriesPerMessage ?? subscribers.count), "deliveries missing")
        precondition(qos == .atMostOnce || publisherAcks == warmup, "PUBACKs missing")
    }

    /// One message: the publisher's PUBLISH goes in, every delivery comes out (and is
    /// acknowledged at QoS 1), records cross shards through the mailboxes.
    public func publish() {
        now &+= 1_000
        cores[publisher.shard].receive(publisher.id, bytes: frame, now: now)
        settle()
    }

    // MARK: setup helpers

    private func connect(shard: Int, clientID: String, version: ProtocolVersion) -> HarnessClient {
        let client = HarnessClient(shard: shard, id: cores[shard].accept(now: now))
        send(client, Packet.connect(Connect(version: version, clientID: clientID)).encoded(version: version))
        return client
    }

    private func send(_ client: HarnessClient, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { cores[client.shard].receive(client.id, bytes: $0, now: now) }
        settle()
    }

    // MARK: the runtime's part

    /// Until nothing moves: drains every core's flush queue, carries outbox records through the
    /// mailboxes, and sends the subscribers' PUBACKs.
    private func settle() {
        var progressed = true
        while progressed {
            progressed = false
            for shard in cores.indices where flush(shard) { progressed = true }
            if carryRecords() { progressed = true }
            if !pendingAcks.isEmpty {
                for (subscriber, packetID) in pendingAcks { acknowledge(subscriber, packetID) }
                pendingAcks.removeAll(keepingCapacity: true)
                progressed = true
            }
        }
    }

    /// Takes every byte the core queued, as if the kernel sent it at once.
    private func flush(_ shard: Int) -> Bool {
        let core = cores[shard]
        core.swapFlushQueue(&flushScratch)
        let any = !flushScratch.isEmpty
        for slot in flushScratch {
            let id = core.connectionID(slot: slot)
            // As the runtime's plain transport: the queue is swapped with the slot's empty send
            // buffer, and the kernel takes it all.
            let w = Int(slot) * cores.count + shard
            while wires.count <= w { wires.append(ByteBuffer()) }
            core.takeOutbound(id, swappingWith: &wires[w])
            inspect(wires[w].readableView, shard: shard, slot: slot)
            wires[w].clear()
            core.setTransportBacklog(id, bytes: 0)
        }
        while !flushScratch.isEmpty { flushScratch.removeLast() }
        return any
    }

    /// Reads the packet types (and QoS 1/2 packet ids) of what a client is sent.
    private func inspect(_ bytes: UnsafeRawBufferPointer, shard: Int, slot: Int32) {
        var offset = 0
        while offset < bytes.count {
            let first = bytes[offset]
            var remaining = 0
            var shift = 0
            var index = offset + 1
            while true {
                let byte = bytes[index]
                remaining |= Int(byte & 0x7F) << shift
                index += 1
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            switch first >> 4 {
            case 2: connAcks += 1
            case 9: subAcks += 1
            case 4: publisherAcks += 1
            case 3:
                deliveries += 1
                if (first >> 1) & 3 != 0, let subscriber = subscriberSlots[shard][slot] {
                    let topicLength = Int(bytes[index]) << 8 | Int(bytes[index + 1])
                    let at = index + 2 + topicLength
                    pendingAcks.append((subscriber, UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1])))
                }
            default: break
            }
            offset = index + remaining
        }
    }

    private func acknowledge(_ subscriber: Int, _ packetID: UInt16) {
        ackFrame[0] = 0x40
        ackFrame[1] = 2
        ackFrame[2] = UInt8(packetID >> 8)
        ackFrame[3] = UInt8(packetID & 0xFF)
        let client = subscribers[subscriber]
        cores[client.shard].receive(client.id, bytes: UnsafeRawBufferPointer(ackFrame), now: now)
    }

    /// Moves outbox records into the mailboxes and delivers them, as `Shard.sendOutbox` and
    /// `Shard.drainMailboxes` do.
    private func carryRecords() -> Bool {
        var moved = false
        for from in cores.indices {
            for to in cores.indices where to != from {
                let box = mailboxes[from][to]!
                while !cores[from].shardOutbox[to].isEmpty {
                    let consumed = box.write(records: cores[from].shardOutbox[to].readableView)
                    precondition(consumed > 0, "mailbox full or record too large")
                    cores[from].shardOutbox[to].moveReaderIndex(forwardBy: consumed)
                }
                var any = false
                while let record = box.nextRecord() {
                    cores[to].receiveShardMessage(record)
                    any = true
                }
                if any {
                    box.release()
                    moved = true
                }
            }
        }
        return moved
    }
}
