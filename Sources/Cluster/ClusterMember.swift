// A node as etcd holds it: the value under `/apus/<cluster>/members/<node name>`, kept under the
// node's lease (it vanishes when the node stops renewing). etcd holds only this — membership —
// never per-client or per-subscription state: a CONNECT or a SUBSCRIBE costs etcd nothing.

import ApusBase
import HTTP1

public struct ClusterMember: Equatable, Sendable {
    /// `node_name`, unique in the cluster.
    public var name: String
    /// The node link's address (`cluster_listener`), host and port.
    public var linkHost: String
    public var linkPort: UInt16
    public var shards: Int
    /// Wall-clock nanoseconds at the node's start: a restarted node is a new incarnation.
    public var incarnation: UInt64

    public init(name: String, linkHost: String, linkPort: UInt16, shards: Int, incarnation: UInt64) {
        self.name = name; self.linkHost = linkHost; self.linkPort = linkPort; self.shards = shards; self.incarnation = incarnation
    }

    /// The node's 16-bit id in records' origin fields and retained stamps: a hash of its name
    /// (never 0, which is a node outside any cluster). Two names with one id cannot link; the
    /// membership refuses the second and logs it.
    public var nodeID: UInt16 { ClusterMember.nodeID(forName: name) }

    public static func nodeID(forName name: String) -> UInt16 {
        let h = FNV1a.hash(name.utf8)
        let folded = UInt16(truncatingIfNeeded: h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48))
        return folded == 0 ? 1 : folded
    }

    /// The etcd key prefix of a cluster's members.
    public static func prefix(cluster: String) -> String { "/apus/\(cluster)/members/" }

    public var json: String {
        JSONValue.object([
            ("name", .string(name)),
            ("link", .string("\(linkHost):\(linkPort)")),
            ("shards", .number(Double(shards))),
            ("incarnation", .string(String(incarnation))),
        ]).serialized()
    }

    public init?(json bytes: [UInt8]) {
        guard let json = JSONValue.parse(bytes), let name = json["name"]?.string, !name.isEmpty,
              let link = json["link"]?.string, let colon = link.lastIndex(of: ":"),
              let port = UInt16(link[link.index(after: colon)...]), let shards = json["shards"]?.number,
              let incarnationText = json["incarnation"]?.string, let incarnation = UInt64(incarnationText) else { return nil }
        self.init(name: name, linkHost: String(link[..<colon]), linkPort: port, shards: Int(shards), incarnation: incarnation)
    }
}
