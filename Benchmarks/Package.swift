// swift-tools-version: 6.1
// Apus micro-benchmarks (ordo-one/benchmark). A package of its own, depending on `../`, so that
// `swift build` and `swift test` of the broker never compile benchmark dependencies.
// Run: `make bench-micro` (malloc gate), or `swift package benchmark` here.
import PackageDescription

let package = Package(
    name: "ApusBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "apus", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Decode and encode of each packet type (Codec).
        .executableTarget(
            name: "CodecBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Codec", package: "apus"),
            ],
            path: "Benchmarks/CodecBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // SubscriptionTrie match at 10K/100K/1M filters and route-table updates (Router).
        .executableTarget(
            name: "RouterBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Router", package: "apus"),
            ],
            path: "Benchmarks/RouterBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The SPSC mailbox between two threads (Shards).
        .executableTarget(
            name: "MailboxBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Shards", package: "apus"),
            ],
            path: "Benchmarks/MailboxBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The in-process publish path through ShardCore: mallocs per message (Broker).
        .executableTarget(
            name: "PublishPathBenchmarks",
            dependencies: [
                "PublishHarness",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Broker", package: "apus"),
                .product(name: "Codec", package: "apus"),
            ],
            path: "Benchmarks/PublishPathBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // ShardCores driven like the shard runtime drives them, without sockets or threads.
        .target(
            name: "PublishHarness",
            dependencies: [
                .product(name: "Broker", package: "apus"),
                .product(name: "Codec", package: "apus"),
                .product(name: "Shards", package: "apus"),
            ],
            path: "Harness/PublishHarness"
        ),
        // The publish path for a fixed number of messages, for callgrind (count-instructions.sh).
        .executableTarget(
            name: "PublishPathCount",
            dependencies: [
                "PublishHarness",
                .product(name: "Broker", package: "apus"),
                .product(name: "Codec", package: "apus"),
            ],
            path: "Tools/PublishPathCount"
        ),
    ]
)
