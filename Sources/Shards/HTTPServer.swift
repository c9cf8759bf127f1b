// The HTTP listener (`http_listener`), served by shard 0 on its own io_uring ring, HTTP/1.1 with
// keep-alive (a connection idle for 120 s is closed). Its connections are entries of the shard's one
// connection table (`Shard.sockets`, protocol `.http`), accepted, read, written and closed by the
// same code as MQTT clients'; the routes and answers are HTTPAPI's (APIRoutes.swift); this file
// feeds them the request bytes and implements their `BrokerEndpoint` over the shard.
// It is off the data path: a scrape or an API call costs shard 0 a few microseconds between two
// batches of MQTT completions, and the publish API routes like a client's PUBLISH would.

import Broker
import CApusSys
import Codec
import HTTPAPI
import IOUring
import Telemetry
@preconcurrency import Glibc

/// What an HTTP connection holds besides its socket (which is an entry of the shard's one
/// connection table, `Shard.sockets`, like any MQTT client's): the request received so far and
/// when it must be complete.
struct HTTPExchange {
    var request: [UInt8] = []
    var deadline: UInt64
}

extension Shard {
    static let httpMaxConnections = 64
    static let httpTimeoutNanoseconds: UInt64 = 10_000_000_000
    /// A kept-alive connection may wait this long for its next request (longer than Prometheus's
    /// default 15 s scrape interval, so a scraper keeps its connection).
    static let httpIdleNanoseconds: UInt64 = 120_000_000_000
    /// `SocketState.listener` of an HTTP connection (the MQTT listeners are numbered from 0).
    static let httpListenerIndex = UInt16.max

    func armHTTPAccept() {
        guard let fd = httpListener else { return }
        ring.prepareMultishotAccept(fd: fd, userData: UserData.make(.accept, ConnectionID(slot: Int32(Shard.httpListenerIndex), generation: 0)))
    }

    /// True while fewer HTTP connections are open than the cap (the next is closed at accept).
    var acceptsHTTP: Bool { httpExchanges.count < Shard.httpMaxConnections }

    /// A connection arrived on the HTTP listener and took a slot of the connection table (it is
    /// read as every connection is): its request must be complete in time.
    func beginHTTPExchange(slot: Int, now: UInt64) {
        httpExchanges[Int32(slot)] = HTTPExchange(deadline: now + Shard.httpTimeoutNanoseconds)
    }

    /// Request bytes: parsed once complete and answered. HTTP/1.1 connections stay open for the
    /// next request (keep-alive: Prometheus scrapes on one connection) unless the client says
    /// `Connection: close`; a closing one ends as an MQTT connection the core ended does: FIN
    /// after the last byte, then a linger that reads and discards. Answers go through
    /// `transportOut`, so one written while the previous is still being sent waits for it.
    func httpReceived(slot: Int, bytes: UnsafeRawBufferPointer, now: UInt64) {
        let key = Int32(slot)
        guard var exchange = httpExchanges.removeValue(forKey: key) else { return }
        exchange.request.append(contentsOf: bytes)
        while true {
            var response: HTTPResponse
            var keep = false
            let (result, consumed) = HTTPRequestParser.parse(exchange.request, maxHeaderBytes: HTTPRequestParser.maxHeaderBytes)
            switch result {
            case .incomplete:
                httpExchanges[key] = exchange
                return
            case .invalid(let status, let reason):
                response = APIRoutes.invalid(status: status, reason: reason)
            case .complete(let request):
                response = answer(request, now: now)
                keep = request.wantsKeepAlive && !group.stopping.load(ordering: .relaxed)
            }
            response.keepAlive = keep
            // The slot stays counted until it closes; a kept connection gets a new idle deadline.
            let rest = keep ? Array(exchange.request[consumed...]) : []
            exchange = HTTPExchange(request: rest, deadline: now + (rest.isEmpty ? Shard.httpIdleNanoseconds : Shard.httpTimeoutNanoseconds))
            httpExchanges[key] = exchange
            if let wait = core.takeAPIStoreWait(), !core.isDurable(wait) {
                // A published message is answered once it is stored, as a PUBACK would be; the
                // connection reads nothing more until then.
                httpExchanges[key] = HTTPExchange(deadline: exchange.deadline)
                httpStoreWaits.append((slot, sockets[slot].generation, response.bytes, wait, keep))
                return
            }
            sockets[slot].transportOut.writeBytes(response.bytes)
            guard keep else {
                beginClose(slot: slot, now: now)
                return
            }
            startSend(slot: slot)
            if exchange.request.isEmpty { return }
            httpExchanges.removeValue(forKey: key)  // a pipelined request follows: the loop answers it
        }
    }

    /// At the end of a loop turn: the HTTP answers whose messages are stored now go out.
    func releaseHTTPStoreWaits(now: UInt64) {
        guard !httpStoreWaits.isEmpty else { return }
        var kept: [(slot: Int, generation: UInt32, bytes: [UInt8], wait: StoreWait, keepAlive: Bool)] = []
        for w in httpStoreWaits {
            guard sockets[w.slot].generation == w.generation, sockets[w.slot].fd >= 0, !sockets[w.slot].closing else { continue }
            if core.isDurable(w.wait) {
                sockets[w.slot].transportOut.writeBytes(w.bytes)
                if w.keepAlive { startSend(slot: w.slot) } else { beginClose(slot: w.slot, now: now) }
            } else {
                kept.append(w)
            }
        }
        httpStoreWaits = kept
    }

    /// Cuts off connections whose request is not complete in time (slow clients); a kept-alive
    /// connection idle that long is closed normally.
    func checkHTTPDeadlines(now: UInt64) {
        guard !httpExchanges.isEmpty else { return }
        for (slot, exchange) in httpExchanges where now >= exchange.deadline && !sockets[Int(slot)].closing {
            if exchange.request.isEmpty && !sockets[Int(slot)].sendInFlight { beginClose(slot: Int(slot), now: now) } else { abortSocket(slot: Int(slot)) }
        }
    }

    /// The answer to a request: the routes (HTTPAPI's APIRoutes) over this shard's endpoint.
    func answer(_ request: HTTPRequest, now: UInt64) -> HTTPResponse {
        var endpoint = ShardEndpoint(shard: self, now: now)
        return APIRoutes.answer(request, endpoint: &endpoint)
    }
}

/// The broker as the HTTP routes see it: shard 0's core, the stats board and the shard loops.
struct ShardEndpoint: BrokerEndpoint {
    unowned let shard: Shard
    let now: UInt64

    var credentials: HTTPCredentials? { shard.group.config.httpCredentials }

    mutating func metricsText() -> String {
        shard.reportStats(now: now)  // this shard's own slot is fresh; the others are at most a second old
        let text = PrometheusMetrics.render(shard.group.stats.snapshot(), uptimeSeconds: (now - shard.group.stats.startedAt) / 1_000_000_000,
                                            version: shard.group.config.version)
        let bridges = BridgeFigures.prometheusText(shard.group.bridgeBoard.withLock { $0 }.sorted { $0.key < $1.key }.map(\.value))
            + WebhookSender.prometheusText(shard.group.webhookSenders)
        guard shard.group.config.cluster != nil else { return text + bridges }
        return text + bridges + shard.group.clusterBoard.read().prometheusText()
    }

    func nodes() -> [NodeSummary] {
        let version = shard.group.config.version
        guard shard.group.config.cluster != nil else {
            let connections = shard.group.stats.snapshot().reduce(0) { $0 + $1.gauges.connectedClients }
            return [NodeSummary(node: shard.group.nodeName, running: true, connections: connections,
                                uptimeMilliseconds: (now - shard.group.stats.startedAt) / 1_000_000, version: version)]
        }
        return shard.group.clusterBoard.read().nodes.map {
            NodeSummary(node: $0.name, running: $0.running, connections: $0.connections, uptimeMilliseconds: $0.uptimeMilliseconds,
                        version: version)
        }
    }

    func health() -> HealthReport {
        HealthReport(version: shard.group.config.version, uptimeSeconds: (now - shard.group.stats.startedAt) / 1_000_000_000,
                     tickAges: shard.group.tickAges(now: now), stallNanoseconds: ShardGroup.stallNanoseconds)
    }

    var isReady: Bool { shard.group.ready.load(ordering: .acquiring) }

    func refusal(_ request: PublishRequest) -> PublishRefusal? {
        shard.core.config.refusal(qos: request.qos, retain: request.retain, payloadCount: request.payload.count)
    }

    mutating func publish(_ request: PublishRequest) -> PublishOutcome {
        shard.core.publishFromAPI(topic: request.topic, payload: request.payload, qos: request.qos,
                                  retain: request.retain, properties: request.properties)
    }

    mutating func nextMessageID() -> String {
        shard.httpMessageCounter &+= 1
        return Self.hex(apus_monotonic_ns()) + Self.hex(shard.httpMessageCounter)
    }

    mutating func didPublish() { shard.flushConnections() }

    static func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
