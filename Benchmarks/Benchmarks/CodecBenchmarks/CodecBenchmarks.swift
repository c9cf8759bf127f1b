// Decode and encode of each MQTT packet type through the Codec: `StreamDecoder` (what a
// connection runs) and `PublishEncoder` / `Packet.encode` into a reused `ByteBuffer`.
// One scaled iteration = one packet; the malloc counts are per packet (buffers are set up before
// `startMeasurement`, so only the codec's own allocations count).

import Benchmark
import Codec

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 2,
        scalingFactor: .kilo,
        maxDuration: .milliseconds(500),
        maxIterations: 1_000
    )

    // MARK: decode

    for sample in CodecSamples.decodeCases {
        Benchmark("Decode \(sample.name)") { benchmark in
            var decoder = StreamDecoder(version: sample.version)
            defer { decoder.deallocate() }
            let frame = sample.frame
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                decoder.feed(frame)
                blackHole(try decoder.next())
            }
        }
    }

    // The frame arrives in two reads (cut inside the payload): the tail is kept in the
    // decoder's storage, as for a PUBLISH that straddles two receive buffers.
    Benchmark("Decode PUBLISH QoS 0 3.1.1 split in two reads") { benchmark in
        var decoder = StreamDecoder(version: .v3_1_1)
        defer { decoder.deallocate() }
        let frame = CodecSamples.publishFrame(qos: .atMostOnce, version: .v3_1_1)
        let cut = frame.count / 2
        let first = UnsafeRawBufferPointer(rebasing: frame[0..<cut])
        let second = UnsafeRawBufferPointer(rebasing: frame[cut...])
        decoder.feed(first)  // the decoder's storage is allocated once, outside the measurement
        _ = try decoder.next()
        decoder.feed(second)
        _ = try decoder.next()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            decoder.feed(first)
            blackHole(try decoder.next())
            decoder.feed(second)
            blackHole(try decoder.next())
        }
    }

    // MARK: encode

    for qos in [QoS.atMostOnce, .atLeastOnce] {
        for version in [ProtocolVersion.v3_1_1, .v5] {
            let withProperties = version == .v5
            let name = "Encode PUBLISH QoS \(qos.rawValue) \(version == .v5 ? "5.0 with properties" : "3.1.1")"
            Benchmark(name) { benchmark in
                var buffer = ByteBuffer(capacity: 4096)
                defer { buffer.deallocate() }
                let properties = withProperties ? CodecSamples.publishProperties : CodecSamples.empty
                benchmark.startMeasurement()
                for i in benchmark.scaledIterations {
                    buffer.clear()
                    PublishEncoder.encode(version: version, dup: false, qos: qos, retain: false, topic: CodecSamples.topic,
                                          packetID: UInt16(truncatingIfNeeded: i) | 1, properties: properties,
                                          payload: CodecSamples.payload, into: &buffer)
                }
                blackHole(buffer.readableBytes)
            }
        }
    }

    for sample in CodecSamples.encodeCases {
        Benchmark("Encode \(sample.name)") { benchmark in
            var buffer = ByteBuffer(capacity: 4096)
            defer { buffer.deallocate() }
            let packet = sample.packet
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                buffer.clear()
                packet.encode(version: sample.version, into: &buffer)
            }
            blackHole(buffer.readableBytes)
        }
    }
}
