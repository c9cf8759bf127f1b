// The node gateway's per-peer and per-connection state (ClusterGateway.swift).

import ApusBase
import CApusSys
import Cluster
import Codec
import IOUring
import Logging
import ShardContract
@preconcurrency import Glibc

/// A peer node: its outbound link and what it told us on its own.
final class PeerNode {
    let slot: Int
    let name: String
    var member: ClusterMember?
    var nodeID: UInt16
    /// Still listed by etcd (a node that left shows as `stopped`).
    var isMember = true

    // The outbound link (this node writes).
    enum LinkState { case idle, connecting, up }
    var state = LinkState.idle
    var fd: Int32 = -1
    var generation: UInt32 = 0
    let address = UnsafeMutablePointer<sockaddr_in>.allocate(capacity: 1)
    var wire = ByteBuffer()
    var sending = false
    /// Operations of any generation still in the ring (the wire and probe must outlive them).
    var operationsInFlight = 0
    let probe = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
    var backoff: Double
    var nextAttempt: UInt64 = 0
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var upSince: UInt64 = 0

    // What the peer's own link said.
    var inbound: Int? = nil
    var status: NodeStatus? = nil

    init(slot: Int, name: String, nodeID: UInt16, backoff: Double) {
        self.slot = slot; self.name = name; self.nodeID = nodeID; self.backoff = backoff
    }

    deinit {
        address.deallocate()
        probe.deallocate()
        wire.deallocate()
    }
}

/// A connection a peer opened to this node.
final class InboundLink {
    let fd: Int32
    let generation: UInt32
    var framer: LinkFramer
    let buffer: UnsafeMutableRawPointer
    static let bufferSize = 256 << 10
    var peer: Int? = nil
    var peerNode: UInt16 = 0
    var open = true
    var receiving = false
    var paused = false

    init(fd: Int32, generation: UInt32, maximumRecord: Int) {
        self.fd = fd; self.generation = generation
        framer = LinkFramer(maximumRecord: maximumRecord)
        buffer = .allocate(byteCount: InboundLink.bufferSize, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        framer.deallocate()
    }
}
