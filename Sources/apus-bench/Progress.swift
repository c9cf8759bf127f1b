// The live progress line: each engine publishes its running counters (relaxed atomics, a few
// stores per loop turn), and a reporter thread prints their sum on stderr once a second.

import BenchKit
import Foundation
import Synchronization
@preconcurrency import Glibc

/// One engine's running counters, written by the engine thread, read by the reporter.
final class ProgressCounters: Sendable {
    /// Messages received (deliveries), or CONNACKs received in the connection scenarios.
    let received = Atomic<UInt64>(0)
    /// Messages sent so far.
    let sent = Atomic<UInt64>(0)
    /// Gaps in the received sequence numbers so far (StreamTracker.gaps), or failed connects.
    let lost = Atomic<UInt64>(0)
    /// Connection scenarios: connections open now.
    let open = Atomic<UInt64>(0)
}

/// Prints one line a second on stderr until stopped.
final class ProgressReporter: @unchecked Sendable {
    enum Kind { case messages, connections }

    private let counters: [ProgressCounters]
    private let kind: Kind
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Seconds of warm-up, shown as such on the line.
    private let warmup: Double

    init(counters: [ProgressCounters], kind: Kind, warmup: Double = 0) {
        self.counters = counters
        self.kind = kind
        self.warmup = warmup
    }

    func start() {
        let thread = Thread { [self] in
            self.loop()
            self.finished.signal()
        }
        thread.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        finished.wait()
    }

    private func sum(_ read: (ProgressCounters) -> UInt64) -> UInt64 { counters.reduce(0) { $0 + read($1) } }

    private func loop() {
        let start = Date()
        var nextTick = 1.0
        var lastReceived: UInt64 = 0
        while !stopped.load(ordering: .relaxed) {
            usleep(50_000)
            let elapsed = Date().timeIntervalSince(start)
            guard elapsed >= nextTick else { continue }
            nextTick += 1
            let received = sum { $0.received.load(ordering: .relaxed) }
            let sent = sum { $0.sent.load(ordering: .relaxed) }
            let lost = sum { $0.lost.load(ordering: .relaxed) }
            let open = sum { $0.open.load(ordering: .relaxed) }
            let rate = received - min(received, lastReceived)
            lastReceived = received
            let at = String(format: "[%4.0f s]", elapsed.rounded())
            let line: String
            switch kind {
            case .messages:
                line = "\(at) \(grouped(rate)) msg/s, received \(grouped(received)), sent \(grouped(sent)), "
                    + "lost so far \(grouped(lost))" + (elapsed < warmup ? " (warm-up)" : "")
            case .connections:
                line = "\(at) \(grouped(rate)) conn/s, CONNACKs \(grouped(received)), open \(grouped(open)), "
                    + "failed \(grouped(lost))"
            }
            FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
        }
    }

    private func grouped(_ v: UInt64) -> String { ReportComparison.grouped(Double(v)) }
}
