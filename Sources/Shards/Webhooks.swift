// Webhooks (EMQX's event hooks): broker events POSTed as JSON to HTTP endpoints, off the data
// path. Shards take the events their core made after each loop turn and append the ones each
// hook wants to that hook's bounded queue (one lock per hook per turn, not per event); one sender
// thread per hook POSTs them in order over a kept-alive HTTP/1.1 connection with blocking
// sockets, retrying a failed POST twice before counting it failed. A slow, hanging or dead
// endpoint never slows a shard: past `maxQueue` waiting events, new ones are dropped and
// counted. Events of one client come from its shard in order and stay in order.

import ApusBase
import Broker
import CApusSys
import HTTP1
import HTTPAPI
import Logging
import Router
import Synchronization
@preconcurrency import Glibc

/// One `webhook` block.
public struct WebhookConfig: Sendable {
    public var name: String
    public var host = ""
    public var port: UInt16 = 80
    public var path = "/"
    /// BrokerEvent.Kind bits.
    public var events: UInt8 = 0
    /// Message events only for topics matching this filter; nil: every topic.
    public var topicFilter: String? = nil
    public var headers: [(String, String)] = []
    public var timeoutSeconds: Double = 5
    /// Events waiting to be sent beyond which new ones are dropped (counted).
    public var maxQueue = 10_000

    public init(name: String) { self.name = name }

    /// Parses `http://HOST[:PORT][/PATH]` (IPv4 or localhost; plain HTTP).
    public mutating func setURL(_ url: String) -> Bool {
        guard url.hasPrefix("http://") else { return false }
        let rest = url.dropFirst(7)
        let hostPort = rest.prefix { $0 != "/" }
        path = rest.count > hostPort.count ? String(rest.dropFirst(hostPort.count)) : "/"
        if let colon = hostPort.lastIndex(of: ":") {
            guard let p = UInt16(hostPort[hostPort.index(after: colon)...]), p > 0 else { return false }
            host = String(hostPort[..<colon]); port = p
        } else {
            host = String(hostPort); port = 80
        }
        if host == "localhost" { host = "127.0.0.1" }
        return !host.isEmpty
    }

    /// What is wrong with the block, if anything.
    public var problem: String? {
        if host.isEmpty { return "webhook \(name): no webhook_url" }
        if events == 0 { return "webhook \(name): no webhook_events" }
        return nil
    }

    func wants(_ e: BrokerEvent) -> Bool {
        guard events & e.kind.rawValue != 0 else { return false }
        guard e.kind.isMessage, let filter = topicFilter else { return true }
        return TopicMatch.matches(filter: filter, topic: e.topic)
    }
}

/// A hook's queue and sender thread.
final class WebhookSender: @unchecked Sendable {
    // Invariants: `thread` is touched only by start/stop; the connection only by the sender thread.
    let config: WebhookConfig
    let node: String
    let logger: Logger
    private let queue = Mutex<[BrokerEvent]>([])
    let sent = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let dropped = Atomic<Int>(0)
    /// Events queued or taken by the sender and not yet sent (a gauge).
    let waiting = Atomic<Int>(0)
    private let inBatch = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t? = nil
    private var fd: Int32 = -1
    private var buffer = [UInt8](repeating: 0, count: 16 << 10)
    private var failuresLogged = 0

    init(config: WebhookConfig, node: String, logger: Logger) {
        self.config = config
        self.node = node
        self.logger = logger
    }

    /// From a shard, once per loop turn: the events this hook wants, in order.
    func push(_ events: [BrokerEvent]) {
        let overflow = queue.withLock { q -> Int in
            let room = max(0, config.maxQueue - q.count)
            q.append(contentsOf: events.prefix(room))
            waiting.store(q.count + inBatch.load(ordering: .relaxed), ordering: .relaxed)
            return events.count - min(room, events.count)
        }
        if overflow > 0 { dropped.add(overflow, ordering: .relaxed) }
    }

    func start() throws {
        thread = try spawnThread(name: "apus-webhook") { [self] in run() }
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func run() {
        apus_set_thread_name("apus-webhook")
        while !stopping.load(ordering: .relaxed) {
            let batch = queue.withLock { q -> [BrokerEvent] in
                let all = q
                q.removeAll(keepingCapacity: true)
                inBatch.store(all.count, ordering: .relaxed)
                return all
            }
            if batch.isEmpty { usleep(2000); continue }
            for (i, event) in batch.enumerated() {
                if stopping.load(ordering: .relaxed) { failed.add(batch.count - i, ordering: .relaxed); break }
                deliver(event)
                inBatch.store(batch.count - i - 1, ordering: .relaxed)
                waiting.store(queue.withLock { $0.count } + batch.count - i - 1, ordering: .relaxed)
            }
        }
        if fd >= 0 { close(fd) }
    }

    /// POSTs one event: up to three attempts (a new connection after a failure).
    private func deliver(_ event: BrokerEvent) {
        let body = Array(WebhookBody.json(event, node: node).serialized().utf8)
        var head = "POST \(config.path) HTTP/1.1\r\nHost: \(config.host):\(config.port)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.count)\r\nConnection: keep-alive\r\n"
        for (name, value) in config.headers { head += "\(name): \(value)\r\n" }
        let request = Array((head + "\r\n").utf8) + body
        var why = ""
        for attempt in 0..<3 {
            if attempt > 0 { usleep(UInt32(100_000 * attempt)) }
            switch post(request) {
            case .ok:
                sent.add(1, ordering: .relaxed)
                if failuresLogged > 0 { logger.info("webhook \(config.name): endpoint answering again"); failuresLogged = 0 }
                return
            case .refused(let status):
                why = "HTTP \(status)"
                if status / 100 == 4 { break }  // the endpoint will not take it: no retry
                continue
            case .failed(let reason):
                why = reason
                continue
            }
            break
        }
        failed.add(1, ordering: .relaxed)
        failuresLogged += 1
        if failuresLogged <= 5 || failuresLogged % 1000 == 0 {
            logger.warning("webhook \(config.name): \(event.kind.name) not delivered: \(why)", metadata: ["failed_total": "\(failed.load(ordering: .relaxed))"])
        }
    }

    enum Outcome { case ok, refused(Int), failed(String) }

    private func post(_ request: [UInt8]) -> Outcome {
        if fd < 0 {
            do { fd = try BlockingSocket.connect(host: config.host, port: config.port, timeoutSeconds: config.timeoutSeconds) } catch {
                return .failed("\(error)")
            }
        }
        var sentBytes = 0
        while sentBytes < request.count {
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sentBytes, request.count - sentBytes, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { dropConnection(); return .failed("send: \(String(cString: strerror(errno)))") }
            sentBytes += n
        }
        var parser = HTTPResponseParser()
        var status = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                let e = errno
                dropConnection()
                return .failed(e == EAGAIN || e == EWOULDBLOCK ? "no answer within \(config.timeoutSeconds) s" : "recv: \(String(cString: strerror(e)))")
            }
            let events: [HTTPResponseParser.Event]
            do { events = n == 0 ? parser.connectionClosed() : try parser.feed(buffer[0..<n]) } catch {
                dropConnection()
                return .failed("\(error)")
            }
            for event in events {
                switch event {
                case .head(let s): status = s
                case .body: break
                case .end:
                    if n == 0 { dropConnection() }
                    return status / 100 == 2 ? .ok : .refused(status)
                }
            }
            if n == 0 { dropConnection(); return .failed("connection closed before the answer") }
        }
    }

    private func dropConnection() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// The hook's lines of /metrics.
    static func prometheusText(_ senders: [WebhookSender]) -> String {
        guard !senders.isEmpty else { return "" }
        var out = "# HELP apus_webhook_events_total Events per webhook: sent (2xx), failed (after retries) and dropped (queue full).\n"
        out += "# TYPE apus_webhook_events_total counter\n"
        for s in senders {
            out += "apus_webhook_events_total{webhook=\"\(s.config.name)\",result=\"sent\"} \(s.sent.load(ordering: .relaxed))\n"
            out += "apus_webhook_events_total{webhook=\"\(s.config.name)\",result=\"failed\"} \(s.failed.load(ordering: .relaxed))\n"
            out += "apus_webhook_events_total{webhook=\"\(s.config.name)\",result=\"dropped\"} \(s.dropped.load(ordering: .relaxed))\n"
        }
        out += "# HELP apus_webhook_queue Events waiting to be sent per webhook.\n# TYPE apus_webhook_queue gauge\n"
        for s in senders { out += "apus_webhook_queue{webhook=\"\(s.config.name)\"} \(s.waiting.load(ordering: .relaxed))\n" }
        return out
    }
}

extension Shard {
    /// The events the core made this turn, to the webhooks that want them (one lock per hook).
    func dispatchEvents() {
        core.takeEvents(into: &eventScratch)
        guard !eventScratch.isEmpty else { return }
        for sender in group.webhookSenders {
            hookScratch.removeAll(keepingCapacity: true)
            for e in eventScratch where sender.config.wants(e) { hookScratch.append(e) }
            if !hookScratch.isEmpty { sender.push(hookScratch) }
        }
        eventScratch.removeAll(keepingCapacity: true)
    }
}
