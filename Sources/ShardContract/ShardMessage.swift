// The whole shard-to-shard contract: the typed messages one shard sends another, and where they
// come from. The runtime moves their encoded records (ShardRecordCodec.swift) through the SPSC
// mailboxes without looking inside; the same records can cross a node link, since nothing in
// them is a pointer and every field has a fixed width and byte order.

import Codec

/// A shard of some node: what every record names as its origin. Node 0 is this process until
/// nodes exist (the cluster issue); shards are 0...63 within a node.
public struct ShardAddress: Hashable, Sendable {
    public var node: UInt16
    public var shard: UInt8

    @inlinable public init(node: UInt16 = 0, shard: Int) {
        self.node = node
        self.shard = UInt8(truncatingIfNeeded: shard)
    }
}

/// Kinds of shard-to-shard messages (the record's kind byte).
public enum ShardMessageKind: UInt8, Sendable, CaseIterable {
    case publish = 1
    case routeAdd = 2
    case routeRemove = 3
    case barrier = 4
    case barrierAck = 5
    case claim = 6
    case release = 7
    case evict = 8
    case retain = 9
    case claimed = 10
    case shareCount = 11
    case sharedPublish = 12
    case throttle = 13
    case unthrottle = 14
    case replayPublish = 15
    case storeBarrier = 16
    case storeBarrierAck = 17
    /// A publish whose payload is held by reference (ShardRecordCodec.encodePublishShared):
    /// only between the shards of one process, never built as a `ShardMessage`.
    case publishShared = 18
}

/// One message between shards. Byte fields are views into the record (valid while the record
/// is: until the mailbox space is released); registry messages hold owned values.
public enum ShardMessage {
    /// An application message for the target's local subscribers.
    case publish(ForwardedPublish)
    /// A message routed on the origin shard just after the SUBSCRIBE of a route it received late:
    /// for the target's subscribers of exactly `filter` (Broker's RecentPublishes.swift).
    case replayPublish(ForwardedPublish, filter: UnsafeRawBufferPointer)
    /// An application message for member `member` of a shared group on the target shard.
    case sharedPublish(ForwardedPublish, filter: UnsafeRawBufferPointer, group: UnsafeRawBufferPointer, member: Int)
    /// The origin shard now has at least one subscriber on `filter`; `time` is when the SUBSCRIBE
    /// was read (`UInt64.max`: no replay), for replaying messages routed after it.
    case routeAdd(filter: UnsafeRawBufferPointer, time: UInt64)
    /// The origin shard no longer has any subscriber on `filter`.
    case routeRemove(filter: UnsafeRawBufferPointer, time: UInt64)
    /// "Acknowledge when you have applied everything I sent before this": answered with
    /// barrierAck. A SUBSCRIBE that created routes is acknowledged (SUBACK) only when every other
    /// shard has acknowledged, so a message published anywhere after SUBACK is routed.
    case barrier(token: UInt32)
    case barrierAck(token: UInt32)
    /// The origin shard now has `count` members in a shared subscription group.
    case shareCount(filter: UnsafeRawBufferPointer, group: UnsafeRawBufferPointer, count: Int)
    /// A retained message (or, with an empty payload, its deletion) for the target's replica.
    case retain(RetainedUpdate)
    /// Flow control: a subscriber on the origin shard queues this publisher's messages past its
    /// throttle length; hold the publisher's acknowledgements.
    case throttle(publisher: ConnectionID)
    /// The answer to one earlier `throttle`: that subscriber no longer holds the publisher back.
    case unthrottle(publisher: ConnectionID)
    /// "Acknowledge when what you stored because of everything I sent before this is durable":
    /// answered with storeBarrierAck once the target's log is written (or synced) that far. A
    /// publisher's PUBACK waits for it when its message went to another shard, whose persistent
    /// sessions may have stored it (ShardCore+SessionStore.swift).
    case storeBarrier(token: UInt64)
    case storeBarrierAck(token: UInt64)
    /// Client-id registry traffic (claim, release, evict, claimed).
    case client(ClientMessage)
}

/// A decoded record: where it came from and what it says.
public struct ShardRecord {
    public var origin: ShardAddress
    public var message: ShardMessage

    @inlinable public init(origin: ShardAddress, message: ShardMessage) {
        self.origin = origin
        self.message = message
    }
}

/// An application message as it travels between shards.
public struct ForwardedPublish {
    public var qos: QoS
    public var retain: Bool
    /// The publishing connection on the origin shard (no-local, flow control).
    public var origin: ConnectionID
    public var topic: UnsafeRawBufferPointer
    /// v5 PUBLISH properties to pass on (empty when the publisher was 3.1.1), no Topic Alias.
    public var properties: UnsafeRawBufferPointer
    public var payload: UnsafeRawBufferPointer

    @inlinable public init(qos: QoS, retain: Bool, origin: ConnectionID, topic: UnsafeRawBufferPointer,
                           properties: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        self.qos = qos; self.retain = retain; self.origin = origin
        self.topic = topic; self.properties = properties; self.payload = payload
    }
}

/// When and where a retained message was stored: replicas keep the message with the latest stamp
/// (by time, then origin node, then origin shard, so two origins never tie), and every replica
/// converges on the same one. `time` is the origin's clock in nanoseconds — the shard's monotonic
/// clock, comparable between the shards of one process; updates between nodes need a clock the
/// nodes share (wall clock or a hybrid logical clock), which the node link will supply.
public struct RetainedStamp: Comparable, Hashable, Sendable {
    public var time: UInt64
    public var origin: ShardAddress

    @inlinable public init(time: UInt64, origin: ShardAddress) {
        self.time = time
        self.origin = origin
    }

    @inlinable public static func < (a: RetainedStamp, b: RetainedStamp) -> Bool {
        (a.time, a.origin.node, a.origin.shard) < (b.time, b.origin.node, b.origin.shard)
    }
}

/// A retained message for the replicas; the latest `stamp` wins on every replica.
public struct RetainedUpdate {
    public var qos: QoS
    public var stamp: RetainedStamp
    public var topic: UnsafeRawBufferPointer
    public var properties: UnsafeRawBufferPointer
    public var payload: UnsafeRawBufferPointer

    @inlinable public init(qos: QoS, stamp: RetainedStamp, topic: UnsafeRawBufferPointer, properties: UnsafeRawBufferPointer,
                           payload: UnsafeRawBufferPointer) {
        self.qos = qos; self.stamp = stamp; self.topic = topic; self.properties = properties; self.payload = payload
    }
}

/// Client-id registry messages. Each client id has a home shard (a hash of the id) that records
/// which connection holds it: CONNECT sends `claim` home; home sends `evict` to the previous
/// holder, which answers the claimant with `claimed` (carrying the session to hand over, if any).
public enum ClientMessageKind: UInt8, Sendable {
    /// To the home shard: this connection now holds the client id (flags bit 0: clean start).
    case claim = 6
    /// To the home shard: this connection no longer holds it.
    case release = 7
    /// From the home shard: another connection claimed the id; end this one (takeover) and
    /// answer it with `claimed` (flags bit 0: hand the session over).
    case evict = 8
    /// To the claimant: the id is yours; here is the previous session, if it is to be kept.
    case claimed = 10
}

/// A client-registry message, decoded into owned values.
public struct ClientMessage {
    public var kind: ClientMessageKind
    public var clientID: String
    public var connection: ConnectionID
    public var otherConnection: ConnectionID
    /// evict: where the claimant is.
    public var other: ShardAddress
    public var flags: UInt8
    /// claimed: the previous session, serialised (SessionSnapshot.swift).
    public var session: SessionSnapshot?

    public init(kind: ClientMessageKind, clientID: String, connection: ConnectionID,
                otherConnection: ConnectionID = ConnectionID(slot: 0, generation: 0),
                other: ShardAddress = ShardAddress(shard: 0), flags: UInt8 = 0, session: SessionSnapshot? = nil) {
        self.kind = kind; self.clientID = clientID; self.connection = connection
        self.otherConnection = otherConnection; self.other = other; self.flags = flags; self.session = session
    }
}
