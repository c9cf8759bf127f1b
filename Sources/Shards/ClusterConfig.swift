// A node's cluster settings (`cluster_name`, `node_name`, `cluster_listener`, `etcd_endpoints`,
// `cluster_lease_ttl`), and the membership view the gateway and the HTTP API read.

import Cluster
import HTTP1
import Synchronization

public struct ClusterConfig: Sendable {
    public var clusterName: String
    public var nodeName: String
    /// The node link's listening address, also what the other nodes connect to.
    public var listenHost: String
    public var listenPort: UInt16
    /// etcd client URLs' hosts and ports (`http://HOST:PORT`), tried in order.
    public var etcdEndpoints: [(host: String, port: UInt16)]
    /// Seconds; the lease is renewed every third of it. A node that stops renewing leaves after it.
    public var leaseTTL: Int = 10
    /// Seconds between two attempts to reach a peer that refused or dropped a link (doubling up to
    /// `linkBackoffMaximum`).
    public var linkBackoffInitial: Double = 0.2
    public var linkBackoffMaximum: Double = 5
    /// Bytes queued for one peer beyond which its link is dropped (and re-established with a
    /// fresh snapshot): a stalled peer cannot grow this node's memory without bound.
    public var maxLinkBacklog = 64 << 20

    public init(clusterName: String, nodeName: String, listenHost: String, listenPort: UInt16,
                etcdEndpoints: [(host: String, port: UInt16)]) {
        self.clusterName = clusterName; self.nodeName = nodeName
        self.listenHost = listenHost; self.listenPort = listenPort; self.etcdEndpoints = etcdEndpoints
    }

    /// Parses `http://host:port[,http://host:port…]` (the scheme may be left out).
    public static func parseEndpoints(_ text: String) -> [(host: String, port: UInt16)]? {
        var out: [(host: String, port: UInt16)] = []
        for part in text.split(separator: ",") {
            var s = Substring(part.trimmingSpaces())
            if s.hasPrefix("https://") { return nil }  // TLS to etcd: not supported
            if s.hasPrefix("http://") { s = s.dropFirst(7) }
            while s.hasSuffix("/") { s = s.dropLast() }
            guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]), port > 0 else { return nil }
            let host = String(s[..<colon])
            guard !host.isEmpty else { return nil }
            out.append((host == "localhost" ? "127.0.0.1" : host, port))
        }
        return out.isEmpty ? nil : out
    }
}

/// One node as `/api/v5/nodes` shows it.
public struct NodeView: Sendable, Equatable {
    public var name: String
    public var running: Bool
    public var connections: Int
    public var uptimeMilliseconds: UInt64
    public var linkUp: Bool
}

/// What the gateway thread publishes for readers (the HTTP API, metrics): a Mutex taken once a
/// second by the gateway and per request by readers.
public final class ClusterBoard: Sendable {
    public struct Figures: Sendable {
        public var nodes: [NodeView] = []
        public var membersSeen = 0
        public var linksUp = 0
        public var publishesToPeers = 0
        public var publishesFromPeers = 0
        public var retainedToPeers = 0
        public var retainedFromPeers = 0
        public var linkDrops = 0
        public var linkBytesSent: [String: UInt64] = [:]
        public var linkBytesReceived: [String: UInt64] = [:]
        public var remoteFilters = 0
        public var remoteSharedMembers = 0
        public var etcdUp = false
        public var etcdFailures = 0
    }
    private let figures = Mutex(Figures())

    public init() {}
    public func read() -> Figures { figures.withLock { $0 } }
    /// Until the gateway's first report: this node alone.
    func seed(nodeName: String) { figures.withLock { $0.nodes = [NodeView(name: nodeName, running: true, connections: 0, uptimeMilliseconds: 0, linkUp: true)] } }
    func update(_ body: (inout Figures) -> Void) { figures.withLock { body(&$0) } }
}

extension ClusterBoard.Figures {
    /// The cluster's `$SYS/broker/cluster/...` topics and values (published with the others every
    /// `sys_interval`): nodes by state, links, and per node its state, connections and link bytes.
    func sysTopics() -> [(String, String)] {
        var out: [(String, String)] = [
            ("$SYS/broker/cluster/nodes/running", "\(nodes.filter(\.running).count)"),
            ("$SYS/broker/cluster/nodes/stopped", "\(nodes.filter { !$0.running }.count)"),
            ("$SYS/broker/cluster/links/up", "\(linksUp)"),
            ("$SYS/broker/cluster/etcd/up", etcdUp ? "1" : "0"),
            ("$SYS/broker/cluster/messages/sent", "\(publishesToPeers)"),
            ("$SYS/broker/cluster/messages/received", "\(publishesFromPeers)"),
        ]
        for node in nodes {
            out.append(("$SYS/broker/cluster/node/\(node.name)/status", node.running ? "running" : "stopped"))
            out.append(("$SYS/broker/cluster/node/\(node.name)/connections", "\(node.connections)"))
            if let sent = linkBytesSent[node.name] { out.append(("$SYS/broker/cluster/node/\(node.name)/link/bytes/sent", "\(sent)")) }
            if let received = linkBytesReceived[node.name] { out.append(("$SYS/broker/cluster/node/\(node.name)/link/bytes/received", "\(received)")) }
        }
        return out
    }

    /// The cluster's lines of GET /metrics.
    func prometheusText() -> String {
        func escape(_ s: String) -> String {
            var out = ""
            for c in s { if c == "\\" || c == "\"" { out.append("\\") }; out.append(c) }
            return out
        }
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ lines: [(String, String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in lines { out += "\(name)\(labels) \(value)\n" }
        }
        metric("apus_cluster_nodes", "gauge", "Nodes known to this one, by state (this node included).", [
            ("{state=\"running\"}", "\(nodes.filter(\.running).count)"), ("{state=\"stopped\"}", "\(nodes.filter { !$0.running }.count)"),
        ])
        metric("apus_cluster_links_up", "gauge", "Peers linked both ways.", [("", "\(linksUp)")])
        metric("apus_cluster_etcd_up", "gauge", "1 when the last call to etcd succeeded.", [("", etcdUp ? "1" : "0")])
        metric("apus_cluster_etcd_failures_total", "counter", "Failed calls to etcd.", [("", "\(etcdFailures)")])
        metric("apus_cluster_remote_filters", "gauge", "Distinct topic filters other nodes subscribed.", [("", "\(remoteFilters)")])
        metric("apus_cluster_shared_remote_members", "gauge", "Members of shared subscription groups on other nodes.",
               [("", "\(remoteSharedMembers)")])
        metric("apus_cluster_publishes_sent_total", "counter", "Messages sent to other nodes (one per node).", [("", "\(publishesToPeers)")])
        metric("apus_cluster_publishes_received_total", "counter", "Messages received from other nodes.", [("", "\(publishesFromPeers)")])
        metric("apus_cluster_retained_sent_total", "counter", "Retained updates sent to other nodes.", [("", "\(retainedToPeers)")])
        metric("apus_cluster_retained_received_total", "counter", "Retained updates received from other nodes.", [("", "\(retainedFromPeers)")])
        metric("apus_cluster_link_drops_total", "counter", "Links dropped because a peer stopped reading.", [("", "\(linkDrops)")])
        metric("apus_cluster_link_bytes_sent_total", "counter", "Bytes written to each peer's link.",
               linkBytesSent.keys.sorted().map { ("{peer=\"\(escape($0))\"}", "\(linkBytesSent[$0]!)") })
        metric("apus_cluster_link_bytes_received_total", "counter", "Bytes read from each peer's link.",
               linkBytesReceived.keys.sorted().map { ("{peer=\"\(escape($0))\"}", "\(linkBytesReceived[$0]!)") })
        metric("apus_cluster_node_up", "gauge", "1 for each node running, 0 for one that left.",
               nodes.map { ("{node=\"\(escape($0.name))\"}", $0.running ? "1" : "0") })
        return out
    }
}
