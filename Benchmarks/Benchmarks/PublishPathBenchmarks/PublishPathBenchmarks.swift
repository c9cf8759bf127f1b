// The in-process publish path: a connected publisher and subscriber(s) on ShardCores (session
// engine + router + encode into the connection's pooled outbound buffer), steady state.
// One scaled iteration = one published message, all its deliveries included (and at QoS 1 the
// publisher's PUBACK and every subscriber's PUBACK back), so mallocCountTotal reads as
// **mallocs per message**. The malloc gate (check-mallocs.py, malloc-limits.json) holds these
// at zero.

import Benchmark
import Broker
import Codec
import PublishHarness

/// A v5 PUBLISH property block as clients commonly send it: Message Expiry Interval 3600,
/// Content Type "application/json", User Property ("trace-id", "4bf92f3577b34da6").
let typicalProperties: [UInt8] = {
    var bytes: [UInt8] = [0x02, 0x00, 0x00, 0x0E, 0x10]
    bytes += [0x03, 0x00, 0x10] + Array("application/json".utf8)
    bytes += [0x26, 0x00, 0x08] + Array("trace-id".utf8) + [0x00, 0x10] + Array("4bf92f3577b34da6".utf8)
    return bytes
}()

struct PublishCase {
    var name: String
    var shards: Int
    var publisherShard: Int
    var subscriberShards: [Int]
    var version: ProtocolVersion
    var qos: QoS
    var properties: [UInt8]
    var filter = "bench/+/data"

    static var all: [PublishCase] {
        var cases: [PublishCase] = []
        for qos in [QoS.atMostOnce, .atLeastOnce] {
            for v5 in [false, true] {
                for crossShard in [false, true] {
                    cases.append(PublishCase(
                        name: "Publish QoS \(qos.rawValue) \(crossShard ? "cross-shard" : "same-shard") "
                            + (v5 ? "5.0 with properties" : "3.1.1"),
                        shards: crossShard ? 2 : 1, publisherShard: 0, subscriberShards: [crossShard ? 1 : 0],
                        version: v5 ? .v5 : .v3_1_1, qos: qos, properties: v5 ? typicalProperties : []))
                }
            }
            // Fan-out: one message, 16 subscribers split over both shards.
            cases.append(PublishCase(
                name: "Publish QoS \(qos.rawValue) fan-out 1 to 16 over 2 shards 3.1.1",
                shards: 2, publisherShard: 0, subscriberShards: (0..<16).map { $0 % 2 },
                version: .v3_1_1, qos: qos, properties: []))
            // A shared subscription with one member per shard: round robin alternates a local
            // delivery and a sharedPublish record to the other shard.
            cases.append(PublishCase(
                name: "Publish QoS \(qos.rawValue) shared subscription, 2 members over 2 shards 3.1.1",
                shards: 2, publisherShard: 0, subscriberShards: [0, 1],
                version: .v3_1_1, qos: qos, properties: [], filter: "$share/group/bench/+/data"))
        }
        return cases
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 2,
        scalingFactor: .kilo,
        maxDuration: .milliseconds(700),
        maxIterations: 1_000
    )

    for publishCase in PublishCase.all {
        let holder = HarnessHolder()
        Benchmark(
            publishCase.name,
            configuration: .init(
                setup: {
                    let harness = PublishHarness(shards: publishCase.shards)
                    harness.setUp(publisherShard: publishCase.publisherShard, subscriberShards: publishCase.subscriberShards,
                                  version: publishCase.version, qos: publishCase.qos, filter: publishCase.filter,
                                  properties: publishCase.properties,
                                  deliveriesPerMessage: publishCase.filter.hasPrefix("$share/") ? 1 : nil)
                    holder.harness = harness
                },
                teardown: { holder.harness = nil })
        ) { benchmark in
            let harness = holder.harness!
            for _ in benchmark.scaledIterations { harness.publish() }
            blackHole(harness.deliveries)
        }
    }

    let routes = HarnessHolder()
    Benchmark(
        "Route table routeAdd and routeRemove records (new filter)",
        configuration: .init(
            setup: {
                let harness = PublishHarness(shards: 2)
                harness.setUp(publisherShard: 0, subscriberShards: [1], version: .v3_1_1, qos: .atMostOnce, warmup: 10)
                routes.harness = harness
                routes.routeRecords = RouteRecords()
            },
            teardown: { routes.harness = nil })
    ) { benchmark in
        let core = routes.harness!.cores[0]
        let records = routes.routeRecords!
        var next = 0
        for _ in benchmark.scaledIterations {
            core.receiveShardMessage(records.add[next])
            core.receiveShardMessage(records.remove[next])
            next = (next + 1) & (records.add.count - 1)
        }
    }
}

/// Holds a benchmark's harness between its setup and its runs.
final class HarnessHolder {
    var harness: PublishHarness?
    var routeRecords: RouteRecords?
}

/// Mailbox records as shard 1 would send them, encoded by the contract's codec: routeAdd and
/// routeRemove for 1024 filters that no shard subscribes to otherwise (no replay time).
final class RouteRecords {
    var add: [UnsafeRawBufferPointer] = []
    var remove: [UnsafeRawBufferPointer] = []

    init() {
        for k in 0..<1024 {
            let filter = Array("tenant/\(k % 100)/device/\(k)/telemetry".utf8)
            filter.withUnsafeBytes { f in
                add.append(RouteRecords.record(.routeAdd(filter: f, time: .max)))
                remove.append(RouteRecords.record(.routeRemove(filter: f, time: .max)))
            }
        }
    }

    /// The record of `message` from shard 1, in memory of its own (kept for the whole run).
    static func record(_ message: ShardMessage) -> UnsafeRawBufferPointer {
        var buffer = ByteBuffer()
        defer { buffer.deallocate() }
        ShardRecordCodec.encode(message, origin: ShardAddress(shard: 1), into: &buffer)
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.readableBytes, alignment: 8)
        p.copyMemory(from: buffer.readableView)
        return UnsafeRawBufferPointer(p)
    }
}
