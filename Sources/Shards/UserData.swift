// io_uring user data for a shard's operations: the kind of operation and the connection it
// belongs to, packed in 64 bits so completions are dispatched without any lookup or allocation.

import Broker

/// The operation a completion belongs to.
enum OperationKind: UInt8 {
    case accept = 1
    case recv = 2
    case send = 3
    /// A MSG_RING from another shard: its mailbox has records.
    case wake = 4
    /// The local completion of a MSG_RING we sent (only reported when it failed).
    case wakeSent = 5
    /// An ASYNC_CANCEL of a connection's receive (flow control paused its input); its own
    /// completion says nothing the recv's -ECANCELED does not.
    case cancel = 9
    /// A write of this shard's store log, and its fdatasync (Shard+Store.swift).
    case storeWrite = 10
    case storeSync = 11
    /// The node gateway's operations (ClusterGateway.swift): accepting peers' links, reading
    /// them, connecting and writing this node's links, and watching those for a close.
    case linkAccept = 12
    case linkRecv = 13
    case linkConnect = 14
    case linkSend = 15
    case linkProbe = 16
    /// A bridge's connect to its remote broker (Shard+Bridge.swift); the slot is the bridge's index.
    case bridgeConnect = 17
    /// A single recv straight into the decoder's storage: the rest of a large packet.
    case recvDirect = 18
    /// A single recv into one provided buffer (a connection receiving large packets, between them).
    case recvOnce = 19
}

/// `kind << 56 | (generation & 0xFFFFFF) << 32 | slot`.
struct UserData {
    static func make(_ kind: OperationKind, _ id: ConnectionID = ConnectionID(slot: 0, generation: 0)) -> UInt64 {
        UInt64(kind.rawValue) << 56 | UInt64(id.generation & 0xFF_FFFF) << 32 | UInt64(UInt32(bitPattern: id.slot))
    }
    @inline(__always) static func kind(_ value: UInt64) -> OperationKind? { OperationKind(rawValue: UInt8(value >> 56)) }
    @inline(__always) static func slot(_ value: UInt64) -> Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: value)) }
    @inline(__always) static func generation24(_ value: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: value >> 32) & 0xFF_FFFF }
}
