// SubscriptionTrie: matching a topic against 10K, 100K and 1M filters (exact, and a wildcard
// mix), and route-table updates (a new filter inserted and removed; an existing filter's
// remote-shard set changed, which is what a routeAdd/routeRemove record does).
// One scaled iteration = one match, or one update.

import Benchmark
import Router

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 2,
        scalingFactor: .kilo,
        maxDuration: .milliseconds(500),
        maxIterations: 1_000
    )

    for size in [10_000, 100_000, 1_000_000] {
        for shape in [FilterShape.exact, .wildcard] {
            let fixture = TrieFixture()
            Benchmark(
                "Trie match \(shape) \(size / 1000)K filters",
                configuration: .init(setup: { fixture.build(size: size, shape: shape) }, teardown: { fixture.reset() })
            ) { benchmark in
                var visitor = CountingVisitor()
                let topics = fixture.topics
                var next = 0
                for _ in benchmark.scaledIterations {
                    fixture.trie.match(topic: topics[next], visitor: &visitor)
                    next = (next + 1) & (topics.count - 1)
                }
                precondition(visitor.matches == benchmark.scaledIterations.count, "every topic matches one filter")
                blackHole(visitor.sum)
            }
        }
    }

    let routeTable = TrieFixture()
    Benchmark(
        "Route table insert and remove a filter (100K filters)",
        configuration: .init(setup: { routeTable.build(size: 100_000, shape: .exact) }, teardown: { routeTable.reset() })
    ) { benchmark in
        let filters = routeTable.newFilters
        var next = 0
        for _ in benchmark.scaledIterations {
            routeTable.trie.update(filter: filters[next]) { $0 = Route(id: 1, remote: 2) }
            routeTable.trie.update(filter: filters[next]) { $0 = nil }
            next = (next + 1) & (filters.count - 1)
        }
        blackHole(routeTable.trie.count)
    }

    let existing = TrieFixture()
    Benchmark(
        "Route table update an existing filter (100K filters)",
        configuration: .init(setup: { existing.build(size: 100_000, shape: .exact) }, teardown: { existing.reset() })
    ) { benchmark in
        let filters = existing.existingFilters
        var next = 0
        for _ in benchmark.scaledIterations {
            existing.trie.update(filter: filters[next]) { $0?.remote ^= 2 }
            next = (next + 1) & (filters.count - 1)
        }
        blackHole(existing.trie.count)
    }
}
