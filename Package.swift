// swift-tools-version: 6.1
// Apus: a sharded, thread-per-core MQTT broker on io_uring.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "apus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "apus", targets: ["apus"]),
        .executable(name: "apus-bench", targets: ["apus-bench"]),
        .library(name: "Codec", targets: ["Codec"]),
        .library(name: "Router", targets: ["Router"]),
        .library(name: "Broker", targets: ["Broker"]),
        .library(name: "Shards", targets: ["Shards"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // liburing 2.3 (Debian liburing-dev); its static inline helpers are called directly.
        .systemLibrary(
            name: "CLiburing",
            pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]
        ),
        // The few libc calls Swift's Glibc module hides (GNU extensions, variadics).
        .target(name: "CApusSys"),
        // Buffers and shared primitives every layer uses: ByteBuffer, FNV-1a, SystemCallError.
        .target(name: "ApusBase", swiftSettings: swiftSettings),
        .target(
            name: "IOUring",
            dependencies: ["ApusBase", "CLiburing", "CApusSys"],
            swiftSettings: swiftSettings
        ),
        // Sans-IO transport layers between a socket and its protocol (plain now; TLS, WebSocket).
        .target(name: "Transport", dependencies: ["ApusBase"], swiftSettings: swiftSettings),
        // OpenSSL 3 (Debian libssl-dev): its headers and a few C helpers (contexts from files,
        // memory BIOs, certificate identities).
        .target(name: "CApusTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        // The TLS transport layer: OpenSSL through memory BIOs, sans-IO.
        .target(name: "TLS", dependencies: ["ApusBase", "Transport", "CApusTLS"], swiftSettings: swiftSettings),
        .target(name: "Codec", dependencies: ["ApusBase"], swiftSettings: swiftSettings),
        .target(name: "Router", dependencies: ["ApusBase"], swiftSettings: swiftSettings),
        // The shard-to-shard contract: typed messages, their one codec, the serialised session.
        .target(name: "ShardContract", dependencies: ["Codec"], swiftSettings: swiftSettings),
        // The durable store's pure parts: record frames with CRC-32C, typed records, recovery.
        // The CRC-32C instruction (the store's checksums), behind a processor check.
        .target(name: "CCRC32C"),
        .target(name: "Store", dependencies: ["ApusBase", "CCRC32C"], swiftSettings: swiftSettings),
        // Pure-Swift hashes, HMAC, PBKDF2 and Base64 for password files and SCRAM authentication.
        .target(name: "ApusCrypto", swiftSettings: swiftSettings),
        .target(
            name: "Broker",
            dependencies: ["Codec", "Router", "ShardContract", "Store"],
            swiftSettings: swiftSettings
        ),
        // Password files (mosquitto_passwd format) and SCRAM enhanced-authentication methods.
        .target(
            name: "Auth",
            dependencies: ["ApusBase", "Broker", "ApusCrypto"],
            swiftSettings: swiftSettings
        ),
        // HTTP/1.1 request parsing and answers (the HTTP listener, the WebSocket upgrade).
        .target(name: "HTTP1", swiftSettings: swiftSettings),
        // The WebSocket transport layer (RFC 6455, server side): the upgrade and the frames, sans-IO.
        .target(name: "WebSocket", dependencies: ["ApusBase", "Transport", "HTTP1", "ApusCrypto"], swiftSettings: swiftSettings),
        // The HTTP listener's pure parts: JSON, the publish API's body, the routes.
        .target(
            name: "HTTPAPI",
            dependencies: ["Broker", "Codec", "ApusCrypto", "HTTP1"],
            swiftSettings: swiftSettings
        ),
        // The cluster's pure parts: the node gateway's routing (GatewayCore), the node protocol's
        // frames, etcd's JSON API and the HTTP/1.1 responses it comes in, a member's record.
        .target(
            name: "Cluster",
            dependencies: ["ApusBase", "Codec", "Router", "ShardContract", "HTTP1", "ApusCrypto"],
            swiftSettings: swiftSettings
        ),
        // Bridges to other brokers: mosquitto's `connection` block and the bridge's sans-IO
        // session (a client of the remote broker and of the core at once).
        .target(name: "Bridge", dependencies: ["ApusBase", "Codec", "Router", "Transport"], swiftSettings: swiftSettings),
        // What the broker reports: per-shard stats and their sums, $SYS topics, Prometheus text.
        .target(name: "Telemetry", dependencies: ["Broker"], swiftSettings: swiftSettings),
        .target(
            name: "Shards",
            dependencies: [
                "ApusBase", "Broker", "Codec", "Router", "IOUring", "CApusSys", "HTTPAPI", "Telemetry", "Transport", "TLS", "WebSocket", "ShardContract", "Store", "Cluster", "Bridge",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The configuration keys (one table) and their sources: file, APUS_<KEY>, flags.
        .target(
            name: "Configuration",
            dependencies: ["Shards", "Broker", "Codec", "Auth", "ApusCrypto", "HTTPAPI", "Transport", "Bridge"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "apus",
            dependencies: [
                "Configuration", "Shards", "Broker", "Auth", "ApusCrypto", "HTTPAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: [.linkedLibrary("jemalloc")]
        ),
        // The load generator: its own accounting (BenchKit) and the io_uring client engine.
        .target(name: "BenchKit", dependencies: ["Codec", "ApusBase"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "apus-bench",
            dependencies: [
                "BenchKit", "Codec", "IOUring", "CApusSys", "TLS", "WebSocket", "Transport", "ApusBase",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "BenchKitTests", dependencies: ["BenchKit", "Codec", "ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "ApusBaseTests", dependencies: ["ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "WebSocketTests", dependencies: ["WebSocket", "Transport", "HTTP1", "ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "TLSTests", dependencies: ["TLS", "Transport", "ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "ShardContractTests", dependencies: ["ShardContract", "Codec"], swiftSettings: swiftSettings),
        .testTarget(name: "StoreTests", dependencies: ["Store", "ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "CodecTests", dependencies: ["Codec"], swiftSettings: swiftSettings),
        .testTarget(name: "RouterTests", dependencies: ["Router"], swiftSettings: swiftSettings),
        .testTarget(name: "ApusCryptoTests", dependencies: ["ApusCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "BrokerTests", dependencies: ["Broker", "Codec", "ShardContract", "Store", "ApusBase"], swiftSettings: swiftSettings),
        .testTarget(name: "HTTPAPITests", dependencies: ["HTTPAPI", "Broker", "Codec", "ApusCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "AuthTests", dependencies: ["ApusBase", "Auth", "Broker", "ApusCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry", "Broker"], swiftSettings: swiftSettings),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration", "Shards", "Broker", "Transport"], swiftSettings: swiftSettings),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "ShardContract", "Codec", "Router", "ApusBase", "HTTP1"], swiftSettings: swiftSettings),
        .testTarget(name: "BridgeTests", dependencies: ["Bridge", "Codec", "ApusBase", "Transport"], swiftSettings: swiftSettings),
        .testTarget(name: "ShardsTests", dependencies: ["Shards", "IOUring", "ShardContract", "CApusSys"], swiftSettings: swiftSettings),
    ]
)
