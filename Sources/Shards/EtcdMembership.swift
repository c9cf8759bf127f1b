// Membership in etcd, off the data path: two threads with blocking sockets (etcd sees a few
// requests per TTL, never one per client or message).
//   - the lease thread grants a lease (TTL `cluster_lease_ttl`), puts this node's record under
//     it and renews it every TTL/3; a lease found expired (etcd answered without TTL) is granted
//     again and the record put again; on stop the lease is revoked, so the others see the node
//     leave at once instead of after the TTL.
//   - the watch thread reads every member (a range on the prefix), then watches the prefix from
//     the next revision; a compacted revision, a broken stream or a restarted etcd start over with
//     a full read. Each change publishes the member list (a Mutex and a generation the gateway
//     compares at its tick).
// While etcd is unreachable, both keep retrying (every second, over the endpoints in turn) and
// the node keeps its last view: links and clients stay as they are.

import ApusBase
import Cluster
import HTTP1
import Logging
import CApusSys
import Synchronization
@preconcurrency import Glibc

final class EtcdMembership: @unchecked Sendable {
    // Invariants: `threads` is touched only by start/stop (the group's thread).
    let config: ClusterConfig
    let me: ClusterMember
    let logger: Logger
    let board: ClusterBoard
    let stopping = Atomic<Bool>(false)
    let generation = Atomic<Int>(0)
    private let members = Mutex<[String: ClusterMember]>([:])
    private let lease = Mutex<Int64?>(nil)
    private var threads: [pthread_t] = []
    private let prefix: String

    init(config: ClusterConfig, me: ClusterMember, board: ClusterBoard, logger: Logger) {
        self.config = config
        self.me = me
        self.board = board
        self.logger = logger
        self.prefix = ClusterMember.prefix(cluster: config.clusterName)
    }

    /// The members etcd lists (this node included) and the generation they belong to.
    func current() -> (generation: Int, members: [String: ClusterMember]) {
        members.withLock { m in (generation.load(ordering: .acquiring), m) }
    }

    func start() throws {
        threads.append(try spawnThread(name: "apus-etcd-lease") { [self] in leaseLoop() })
        threads.append(try spawnThread(name: "apus-etcd-watch") { [self] in watchLoop() })
    }

    /// Stops both threads and revokes the lease (best effort, bounded by the socket timeouts).
    func stop() {
        stopping.store(true, ordering: .releasing)
        for t in threads { pthread_join(t, nil) }
        threads = []
        if let id = lease.withLock({ $0 }) {
            for endpoint in config.etcdEndpoints {
                if let c = try? EtcdConnection(host: endpoint.host, port: endpoint.port, timeoutSeconds: 1),
                   (try? c.call(Etcd.revoke(lease: id))) != nil {
                    logger.info("cluster: left (lease revoked)")
                    break
                }
            }
        }
    }

    private func sleepChecking(seconds: Double) {
        var left = seconds
        while left > 0 && !stopping.load(ordering: .relaxed) {
            usleep(UInt32(min(left, 0.1) * 1_000_000))
            left -= 0.1
        }
    }

    /// Connects to the first endpoint that answers, starting after the last one that failed.
    private func connect(startingAt first: inout Int) -> EtcdConnection? {
        let endpoints = config.etcdEndpoints
        for i in 0..<endpoints.count {
            let e = endpoints[(first + i) % endpoints.count]
            if let c = try? EtcdConnection(host: e.host, port: e.port, timeoutSeconds: 2) {
                first = (first + i) % endpoints.count
                return c
            }
        }
        first = (first + 1) % endpoints.count
        return nil
    }

    private func failed(_ what: String, _ error: Error, quiet: inout Bool) {
        board.update { $0.etcdFailures += 1; $0.etcdUp = false }
        if !quiet { logger.warning("cluster: etcd \(what): \(error)") }
        quiet = true
    }

    // MARK: the lease

    private func leaseLoop() {
        apus_set_thread_name("apus-etcd-lease")
        let key = prefix + me.name
        var endpoint = 0
        var quiet = false
        var currentLease: Int64? = nil
        while !stopping.load(ordering: .relaxed) {
            guard let c = connect(startingAt: &endpoint) else {
                failed("unreachable", SystemCallError("connect", errno: ECONNREFUSED), quiet: &quiet)
                sleepChecking(seconds: 1)
                continue
            }
            do {
                var ttl = config.leaseTTL
                if let id = currentLease, let left = try Etcd.decodeKeepAlive(c.call(Etcd.keepAlive(lease: id))) {
                    ttl = left  // etcd came back and the lease lived on
                } else {
                    let grant = try Etcd.decodeGrant(c.call(Etcd.grant(ttl: config.leaseTTL)))
                    _ = try c.call(Etcd.put(key: key, value: me.json, lease: grant.lease))
                    currentLease = grant.lease
                    lease.withLock { $0 = grant.lease }
                    logger.info("cluster: registered in etcd", metadata: ["node": "\(me.name)", "lease_ttl": "\(grant.ttl)"])
                    ttl = grant.ttl
                }
                if quiet { logger.info("cluster: etcd reachable again") }
                quiet = false
                board.update { $0.etcdUp = true }
                // Renew every TTL/3 on this connection until it fails or the lease is gone.
                while !stopping.load(ordering: .relaxed) {
                    sleepChecking(seconds: max(Double(ttl) / 3, 0.5))
                    if stopping.load(ordering: .relaxed) { break }
                    guard let left = try Etcd.decodeKeepAlive(c.call(Etcd.keepAlive(lease: currentLease!))) else {
                        logger.warning("cluster: lease expired in etcd; registering again")
                        currentLease = nil
                        break
                    }
                    ttl = left
                }
            } catch {
                failed("lease", error, quiet: &quiet)
                sleepChecking(seconds: 1)
            }
        }
    }

    // MARK: the members

    private func publish(_ all: [String: ClusterMember]) {
        members.withLock { m in
            m = all
            generation.add(1, ordering: .releasing)
        }
    }

    private func watchLoop() {
        apus_set_thread_name("apus-etcd-watch")
        var endpoint = 0
        var quiet = false
        while !stopping.load(ordering: .relaxed) {
            guard let c = connect(startingAt: &endpoint) else {
                failed("unreachable", SystemCallError("connect", errno: ECONNREFUSED), quiet: &quiet)
                sleepChecking(seconds: 1)
                continue
            }
            do {
                let range = try Etcd.decodeRange(c.call(Etcd.range(prefix: prefix)))
                var all: [String: ClusterMember] = [:]
                for kv in range.kvs {
                    guard let m = ClusterMember(json: kv.value) else { continue }
                    all[m.name] = m
                }
                publish(all)
                quiet = false
                // The watch streams on the same connection until it ends.
                var splitter = LineSplitter()
                try c.stream(Etcd.watch(prefix: prefix, from: range.revision + 1), stopping: stopping) { bytes in
                    for line in try splitter.feed(bytes) {
                        var changed = false
                        for message in try Etcd.decodeWatch(line) {
                            switch message {
                            case .put(let kv):
                                if let m = ClusterMember(json: kv.value) { all[m.name] = m; changed = true }
                            case .delete(let key, _):
                                if key.hasPrefix(prefix) { all.removeValue(forKey: String(key.dropFirst(prefix.count))); changed = true }
                            case .canceled(let compacted):
                                throw Etcd.Failure(compacted > 0 ? "watch compacted at \(compacted): reading again" : "watch canceled")
                            case .created, .progress:
                                break
                            }
                        }
                        if changed { publish(all) }
                    }
                }
            } catch {
                if !stopping.load(ordering: .relaxed) {
                    failed("watch", error, quiet: &quiet)
                    sleepChecking(seconds: 1)
                }
            }
        }
    }
}

/// One blocking HTTP/1.1 connection to etcd (kept alive between calls).
final class EtcdConnection {
    let fd: Int32
    let hostHeader: String
    private var buffer = [UInt8](repeating: 0, count: 16 << 10)

    init(host: String, port: UInt16, timeoutSeconds: Int) throws {
        fd = try BlockingSocket.connect(host: host, port: port, timeoutSeconds: Double(timeoutSeconds))
        hostHeader = "\(host):\(port)"
    }

    deinit { close(fd) }

    private func send(_ request: Etcd.Request) throws {
        let bytes = request.bytes(host: hostHeader)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SystemCallError("send to etcd", errno: errno) }
            sent += n
        }
    }

    /// Sends a request and returns the body of a 200 answer.
    func call(_ request: Etcd.Request) throws -> [UInt8] {
        try send(request)
        var parser = HTTPResponseParser()
        var status = 0
        var body: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 { throw SystemCallError("recv from etcd", errno: errno) }
            let events = n == 0 ? parser.connectionClosed() : try parser.feed(buffer[0..<n])
            for event in events {
                switch event {
                case .head(let s): status = s
                case .body(let b): body += b
                case .end:
                    guard status == 200 else {
                        throw Etcd.Failure("HTTP \(status) \(String(decoding: body.prefix(200), as: UTF8.self))")
                    }
                    return body
                }
            }
            if n == 0 { throw Etcd.Failure("connection closed mid-answer") }
        }
    }

    /// Sends a streaming request (a watch) and hands each piece of its body to `body` until the
    /// stream ends, an error is thrown, or `stopping` is set (checked at each receive timeout).
    func stream(_ request: Etcd.Request, stopping: borrowing Atomic<Bool>, _ body: ([UInt8]) throws -> Void) throws {
        try send(request)
        var parser = HTTPResponseParser()
        while !stopping.load(ordering: .relaxed) {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                throw SystemCallError("recv from etcd", errno: errno)
            }
            if n == 0 { throw Etcd.Failure("watch stream closed") }
            for event in try parser.feed(buffer[0..<n]) {
                switch event {
                case .head(let status): if status != 200 { throw Etcd.Failure("watch: HTTP \(status)") }
                case .body(let bytes): try body(bytes)
                case .end: throw Etcd.Failure("watch stream ended")
                }
            }
        }
    }
}
