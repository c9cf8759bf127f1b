// Test harness: drives ShardCores with bytes (no sockets, no threads), carrying mailbox records
// between them the way the runtime does.

import Codec
import XCTest
@testable import Broker

/// A set of cores wired together in memory.
final class CoreHarness {
    var cores: [ShardCore]
    var now: UInt64 = 1_000_000_000

    init(shards: Int, config: BrokerConfig = BrokerConfig()) {
        // Seeded: a test that draws randomness (random shared groups) runs the same every time.
        cores = (0..<shards).map { ShardCore(shardIndex: $0, shardCount: shards, config: config, random: SplitMix64(seed: UInt64($0))) }
    }

    /// A client connection on a given shard.
    struct Client {
        var shard: Int
        var id: ConnectionID
    }

    func connect(shard: Int) -> Client {
        Client(shard: shard, id: cores[shard].accept(now: now))
    }

    /// Sends packet bytes from the client; with `pump`, mailbox records then flow until quiet.
    func send(_ client: Client, _ bytes: [UInt8], pump shouldPump: Bool = true) {
        bytes.withUnsafeBytes { cores[client.shard].receive(client.id, bytes: $0, now: now) }
        if shouldPump { pump() }
    }

    func send(_ client: Client, _ packet: Packet, version: ProtocolVersion = .v3_1_1) {
        send(client, packet.encoded(version: version))
    }

    /// Everything the broker queued for the client since the last call (and marks it sent).
    func output(_ client: Client) -> [UInt8] {
        // As the runtime's plain transport: the queue is swapped out, and the kernel takes it all.
        var wire = ByteBuffer()
        defer { wire.deallocate() }
        cores[client.shard].takeOutbound(client.id, swappingWith: &wire)
        cores[client.shard].setTransportBacklog(client.id, bytes: 0)
        return wire.readableArray()
    }

    /// The v5 DISCONNECT the broker queued for the client: its reason code and Reason String.
    func disconnect(_ client: Client) -> (code: ReasonCode, reason: String?)? {
        let bytes = output(client)
        guard let packet = try? bytes.withUnsafeBytes({ try PacketDecoder.decode(frame: $0, version: .v5) }),
              case .disconnect(let d) = packet else { return nil }
        return (d.reasonCode, d.properties.reasonString)
    }

    /// Decoded packets the broker queued for the client.
    func received(_ client: Client, version: ProtocolVersion = .v3_1_1) throws -> [OwnedPacket] {
        let bytes = output(client)
        var decoder = StreamDecoder(version: version)
        defer { decoder.deallocate() }
        var packets: [OwnedPacket] = []
        try bytes.withUnsafeBytes { raw in
            decoder.feed(raw)
            while let packet = try decoder.next() { packets.append(OwnedPacket(packet)) }
        }
        return packets
    }

    /// Moves mailbox records between cores until none are left (what the runtime does).
    func pump() {
        var moved = true
        while moved {
            moved = false
            for from in cores.indices {
                for to in cores.indices where to != from {
                    while !cores[from].shardOutbox[to].isEmpty {
                        let view = cores[from].shardOutbox[to].readableView
                        let length = ShardCore.shardMessageLength(view.baseAddress!)
                        // Copy out like the mailbox does, so the record outlives the outbox buffer.
                        let copy = Array(UnsafeRawBufferPointer(rebasing: view[0..<length]))
                        cores[from].shardOutbox[to].moveReaderIndex(forwardBy: length)
                        copy.withUnsafeBytes { cores[to].receiveShardMessage($0) }
                        moved = true
                    }
                }
            }
        }
    }

    func isClosing(_ client: Client) -> Bool {
        cores[client.shard].phase(of: client.id) == .closing
    }
}

/// A decoded packet with PUBLISH's views copied out, for assertions.
enum OwnedPacket: Equatable {
    case publish(topic: String, payload: [UInt8], qos: QoS, retain: Bool, dup: Bool, packetID: UInt16)
    case other(String, [UInt8])

    init(_ packet: Packet) {
        if case .publish(let p) = packet {
            self = .publish(topic: String(decoding: p.topic, as: UTF8.self), payload: Array(p.payload),
                            qos: p.qos, retain: p.retain, dup: p.dup, packetID: p.packetID)
        } else {
            self = .other("\(packet.type)", packet.encoded(version: .v5))
        }
    }

    var publishTopic: String? { if case .publish(let t, _, _, _, _, _) = self { return t } else { return nil } }
}
