// The SPSC mailbox between two threads, as shards use it: a producer thread writes 64-byte
// records (one per write, or 64 per write as an outbox batch), the benchmark thread drains them
// with nextRecord/release. One scaled iteration = one record crossing threads.

import Benchmark
import Foundation
import Shards
import Synchronization

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 2,
        scalingFactor: .mega,
        maxDuration: .seconds(1),
        maxIterations: 100
    )

    for batch in [1, 64] {
        let pair = MailboxPair(batch: batch)
        Benchmark(
            batch == 1 ? "Mailbox 64-byte records across threads, one per write"
                : "Mailbox 64-byte records across threads, \(batch) per write",
            configuration: .init(setup: { pair.start() }, teardown: { pair.stop() })
        ) { benchmark in
            blackHole(pair.consume(benchmark.scaledIterations.count))
        }
    }
}

/// A mailbox with a producer thread that writes as many records as the consumer asked for.
final class MailboxPair: @unchecked Sendable {
    // Invariants: `producerLoop` runs on the producer thread only, `consume` on one other thread;
    // they share only the mailbox and the two atomics.
    static let recordLength = 64
    let mailbox = Mailbox(capacity: 4 << 20)  // the runtime's default size
    let requested = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    let batch: Int
    /// `batch` prebuilt records: u32 length, u32 sequence, filler.
    let records: UnsafeMutableRawBufferPointer

    init(batch: Int) {
        self.batch = batch
        records = .allocate(byteCount: batch * MailboxPair.recordLength, alignment: 8)
        records.initializeMemory(as: UInt8.self, repeating: 0x5A)
        for i in 0..<batch {
            records.storeBytes(of: UInt32(MailboxPair.recordLength), toByteOffset: i * MailboxPair.recordLength, as: UInt32.self)
            records.storeBytes(of: UInt32(i), toByteOffset: i * MailboxPair.recordLength + 4, as: UInt32.self)
        }
    }

    func start() {
        let thread = Thread { self.producerLoop() }
        thread.start()
    }

    func stop() { stopping.store(true, ordering: .releasing) }

    func producerLoop() {
        var produced = 0
        while !stopping.load(ordering: .relaxed) {
            let target = requested.load(ordering: .acquiring)
            if produced == target {
                sched_yield()
                continue
            }
            let n = min(batch, target - produced)
            let view = UnsafeRawBufferPointer(rebasing: records[0..<(n * MailboxPair.recordLength)])
            var offset = 0
            while offset < view.count {
                let written = mailbox.write(records: UnsafeRawBufferPointer(rebasing: view[offset...]))
                offset += written
                if written == 0 { sched_yield() }  // full: the consumer is behind
            }
            produced += n
        }
    }

    /// Asks the producer for `count` records and drains them; returns a checksum.
    func consume(_ count: Int) -> UInt64 {
        requested.add(count, ordering: .releasing)
        var received = 0
        var sum: UInt64 = 0
        while received < count {
            var any = false
            while let record = mailbox.nextRecord() {
                sum &+= UInt64(record.load(fromByteOffset: 4, as: UInt32.self))
                received += 1
                any = true
            }
            if any { mailbox.release() } else { sched_yield() }
        }
        return sum
    }
}
