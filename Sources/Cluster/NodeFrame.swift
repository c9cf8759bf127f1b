// The node protocol: what travels on a link between two nodes, sans-IO.
//
// A link is one TCP connection from a node to a peer, written only by the node that opened it
// (each pair of nodes has two: each side sends on its own), so each direction keeps its order and
// there is no race over which of two simultaneous connections survives. The bytes are records in
// the shard contract's layout (ShardRecordCodec.swift: u32 length, u8 kind, u8 origin shard, u16
// origin node, body), so routes, publishes and retained messages cross unchanged. Two kinds are the
// node protocol's own, numbered apart from the shard kinds:
//   hello   (64)  u64 incarnation, u16 shards, u16 cluster name length, u16 node name length,
//                 u16 0; cluster name, node name. First on every link; the receiver drops what it
//                 knew of the sender's routes (a new epoch) and takes the snapshot that follows.
//   status  (65)  u64 connections, u64 uptime in milliseconds, u64 0 (reserved). Every second.
//
// `LinkFramer` cuts a byte stream into records and refuses a length outside [8, maximum].

import ApusBase
import ShardContract

public enum NodeFrameKind: UInt8, Sendable {
    case hello = 64
    case status = 65
}

/// The first record on a link.
public struct NodeHello: Equatable, Sendable {
    public var clusterName: String
    public var nodeName: String
    public var incarnation: UInt64
    public var shards: Int

    public init(clusterName: String, nodeName: String, incarnation: UInt64, shards: Int) {
        self.clusterName = clusterName; self.nodeName = nodeName; self.incarnation = incarnation; self.shards = shards
    }

    public func encode(origin: ShardAddress, into buffer: inout ByteBuffer) {
        let cluster = Array(clusterName.utf8), node = Array(nodeName.utf8)
        NodeFrame.writeHeader(kind: .hello, length: 8 + 16 + cluster.count + node.count, origin: origin, into: &buffer)
        NodeFrame.writeLE(incarnation, into: &buffer)
        NodeFrame.writeLE(UInt16(shards), into: &buffer)
        NodeFrame.writeLE(UInt16(cluster.count), into: &buffer)
        NodeFrame.writeLE(UInt16(node.count), into: &buffer)
        NodeFrame.writeLE(UInt16(0), into: &buffer)
        buffer.writeBytes(cluster)
        buffer.writeBytes(node)
    }

    public static func decode(_ record: UnsafeRawBufferPointer) -> NodeHello? {
        guard record.count >= 24, record[4] == NodeFrameKind.hello.rawValue,
              NodeFrame.length(record) == record.count else { return nil }
        let incarnation = NodeFrame.readLE(UInt64.self, record, 8)
        let shards = Int(NodeFrame.readLE(UInt16.self, record, 16))
        let clusterLength = Int(NodeFrame.readLE(UInt16.self, record, 18))
        let nodeLength = Int(NodeFrame.readLE(UInt16.self, record, 20))
        guard 24 + clusterLength + nodeLength == record.count else { return nil }
        let cluster = String(decoding: record[24..<(24 + clusterLength)], as: UTF8.self)
        let node = String(decoding: record[(24 + clusterLength)...], as: UTF8.self)
        return NodeHello(clusterName: cluster, nodeName: node, incarnation: incarnation, shards: shards)
    }
}

/// A node's figures for the other nodes' `/api/v5/nodes`.
public struct NodeStatus: Equatable, Sendable {
    public var connections: Int
    public var uptimeMilliseconds: UInt64

    public init(connections: Int, uptimeMilliseconds: UInt64) {
        self.connections = connections; self.uptimeMilliseconds = uptimeMilliseconds
    }

    public func encode(origin: ShardAddress, into buffer: inout ByteBuffer) {
        NodeFrame.writeHeader(kind: .status, length: 32, origin: origin, into: &buffer)
        NodeFrame.writeLE(UInt64(connections), into: &buffer)
        NodeFrame.writeLE(uptimeMilliseconds, into: &buffer)
        NodeFrame.writeLE(UInt64(0), into: &buffer)
    }

    public static func decode(_ record: UnsafeRawBufferPointer) -> NodeStatus? {
        guard record.count == 32, record[4] == NodeFrameKind.status.rawValue, NodeFrame.length(record) == 32 else { return nil }
        return NodeStatus(connections: Int(truncatingIfNeeded: NodeFrame.readLE(UInt64.self, record, 8)),
                          uptimeMilliseconds: NodeFrame.readLE(UInt64.self, record, 16))
    }
}

public enum NodeFrame {
    /// The node protocol kind of a record, if it is one (otherwise it is a shard record).
    public static func kind(_ record: UnsafeRawBufferPointer) -> NodeFrameKind? {
        record.count >= 8 ? NodeFrameKind(rawValue: record[4]) : nil
    }

    static func length(_ record: UnsafeRawBufferPointer) -> Int { Int(readLE(UInt32.self, record, 0)) }

    static func writeHeader(kind: NodeFrameKind, length: Int, origin: ShardAddress, into buffer: inout ByteBuffer) {
        writeLE(UInt32(length), into: &buffer)
        buffer.writeByte(kind.rawValue)
        buffer.writeByte(origin.shard)
        writeLE(origin.node, into: &buffer)
    }

    static func writeLE<T: FixedWidthInteger>(_ value: T, into buffer: inout ByteBuffer) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { buffer.writeBytes($0) }
    }

    static func readLE<T: FixedWidthInteger>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer, _ offset: Int) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// Cuts a link's byte stream into whole records.
public struct LinkFramer {
    /// The largest record accepted (a publish of the largest packet, with its header).
    public let maximumRecord: Int
    private var pending = ByteBuffer()

    public init(maximumRecord: Int) { self.maximumRecord = maximumRecord }

    public enum Failure: Error, Equatable { case badLength(Int) }

    /// Appends received bytes.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) { pending.writeBytes(bytes) }

    /// Calls `body` with each whole record received so far (valid during the call); a length
    /// outside [8, maximumRecord] throws (the link is then closed).
    public mutating func forEachRecord(_ body: (UnsafeRawBufferPointer) -> Bool) throws(Failure) {
        while pending.readableBytes >= 4 {
            let view = pending.readableView
            let length = Int(NodeFrame.readLE(UInt32.self, view, 0))
            guard length >= 8 && length <= maximumRecord else { throw .badLength(length) }
            guard view.count >= length else { break }
            let keep = body(UnsafeRawBufferPointer(rebasing: view[0..<length]))
            pending.moveReaderIndex(forwardBy: length)
            if !keep { break }
        }
        if pending.isEmpty { pending.clear() }
    }

    /// Bytes held for a record not yet complete.
    public var heldBytes: Int { pending.readableBytes }

    public mutating func deallocate() { pending.deallocate() }
}
