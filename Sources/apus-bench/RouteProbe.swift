// Subscribers on one broker address and publishers on another (a cluster's nodes, `--sub-host` /
// `--sub-port`): before anything is measured, wait until the subscribers' routes have reached the
// publishers' node. A probe client subscribes to a probe topic on the subscribers' address after
// every subscriber's SUBACK, and another publishes to it on the publishers' address until the
// first probe arrives. A node sends its routes to a peer on one ordered link, and a SUBACK waits
// until the node's gateway has taken the route, so the probe's route arriving means every
// subscriber's route has arrived before it.

import Codec
import Foundation
@preconcurrency import Glibc

enum RouteProbe {
    /// Returns the milliseconds it took; throws when the route has not crossed in `timeout` seconds.
    static func waitForRoutes(config: EngineConfig, timeout: Double = 30) throws -> Double {
        let started = Date.monotonicSeconds()
        let topic = "\(config.topicPrefix)/route-probe"
        let id = "\(config.session.clientIDPrefix)-probe"
        let subscriber = try BenchLink.mqttConnect(host: config.subscriberHost, port: config.subscriberPort, tls: config.tls,
                                                   webSocketPath: config.webSocketPath, clientID: id + "-sub", version: config.version,
                                                   clean: true)
        defer { subscriber.disconnect() }
        try subscriber.subscribe(filter: topic, qos: .atMostOnce, version: config.version)
        let publisher = try BenchLink.mqttConnect(host: config.host, port: config.port, tls: config.tls,
                                                  webSocketPath: config.webSocketPath, clientID: id + "-pub", version: config.version,
                                                  clean: true)
        defer { publisher.disconnect() }
        // A QoS 0 PUBLISH of "probe" (v5: an empty property block).
        var body = [UInt8(topic.utf8.count >> 8), UInt8(topic.utf8.count & 0xFF)] + Array(topic.utf8)
        if config.version == .v5 { body.append(0) }
        body += Array("probe".utf8)
        var probe: [UInt8] = [0x30]
        var remaining = body.count
        repeat {
            var byte = UInt8(remaining & 0x7F)
            remaining >>= 7
            if remaining > 0 { byte |= 0x80 }
            probe.append(byte)
        } while remaining > 0
        probe += body
        while Date.monotonicSeconds() - started < timeout {
            try publisher.send(probe)
            var p = pollfd(fd: subscriber.fd, events: Int16(POLLIN), revents: 0)
            if subscriber.plaintext.isEmpty && poll(&p, 1, 20) <= 0 { continue }
            if case .publish = try subscriber.readPacket(version: config.version) {
                return (Date.monotonicSeconds() - started) * 1000
            }
        }
        throw BenchError("the subscribers' routes did not reach \(config.host):\(config.port) within \(Int(timeout)) s")
    }
}

extension Date {
    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
