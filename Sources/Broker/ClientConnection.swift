// The per-connection state a shard keeps: decoder, outbound bytes, aliases, keep alive, and the
// MQTT session of the client on it (Session.swift). Stored by value in the shard's connection
// table (no per-connection class).

import Codec

/// Where a connection slot is in its life.
public enum ConnectionPhase: Sendable {
    /// The slot is unused.
    case free
    /// Accepted; no CONNECT yet.
    case awaitingConnect
    /// CONNECT accepted; waiting for the client id's home shard (and any previous session) before
    /// CONNACK. Input that follows CONNECT is held until then.
    case connecting
    /// CONNECT accepted and answered.
    case connected
    /// A persistent session without a connection: subscriptions stay, QoS 1/2 messages queue.
    case offline
    /// The session is over; the runtime is flushing the last bytes and closing the socket.
    case closing
    /// A connection the runtime serves itself (the HTTP API, `acceptExternal`): it holds a slot
    /// so that the shard has one connection table, and the core reads and writes nothing on it.
    case external
}

/// The fields of a connection that only a connecting, authenticating or offline session uses, out
/// of the slot so that an idle connected client's slot stays small (136 bytes become 8).
final class ConnectionExtras {
    var held = ByteBuffer()
    var offlineSince: UInt64 = 0
    var authExchange: (any AuthenticationExchange)? = nil
    var authMethod: String? = nil
    var pendingConnect: (connect: Connect, assignedID: String?)? = nil
    var pendingConnAckProperties = Properties()
    // Flow control (ShardCore+FlowControl.swift). As a publisher: how many subscribers throttle
    // it, since when, and the acknowledgements held meanwhile. As a subscriber: the publishers it
    // throttles, and when it last acknowledged something.
    var throttledBy = 0
    var throttledSince: UInt64 = 0
    var heldAcks = ByteBuffer()
    var heldAckCount = 0
    var throttling: Set<PublisherKey> = []
    var lastProgress: UInt64 = 0
    /// The store record its held acknowledgements wait for (ShardCore+Store.swift).
    var storeWait: UInt64 = 0

    deinit { heldAcks.deallocate() }

    /// Nothing here needs keeping (the times only mean something offline or throttled).
    var isUnused: Bool {
        held.capacity == 0 && authExchange == nil && authMethod == nil
            && pendingConnect == nil && pendingConnAckProperties.isEmpty
            && throttledBy == 0 && heldAcks.capacity == 0 && throttling.isEmpty && storeWait == 0
    }
}

/// One client connection and its session (which stays on the slot, offline, when persistent).
///
/// The slot is 312 bytes; fields are ordered so the small ones fill what would be padding (Swift
/// lays fields out in declaration order), and what few connections use is a reference.
struct ClientConnection {
    var decoder = StreamDecoder()
    /// Bytes (plaintext MQTT packets) queued for the client by the session logic; the runtime
    /// takes them for the connection's transport (`ShardCore.takeOutbound`).
    var outbound = ByteBuffer()
    var clientID: String = ""
    var openedAt: UInt64 = 0
    var lastReceived: UInt64 = 0
    var generation: UInt32 = 0
    /// Bytes the connection's transport holds for the client beyond `outbound` (what the runtime
    /// took and the kernel has not; a TLS layer's records), as the runtime last reported them.
    var transportBacklog: Int32 = 0
    /// Maximum Packet Size the client accepts (v5), or UInt32.max.
    var clientMaximumPacketSize: UInt32 = .max
    var keepAlive: UInt16 = 0
    /// The client's Receive Maximum (v5), or 65535.
    var clientReceiveMaximum: UInt16 = 65_535
    var phase: ConnectionPhase = .free
    var version: ProtocolVersion = .v3_1_1
    /// Whether the v5 client wants Reason Strings and User Properties on errors.
    var requestProblemInformation: Bool = true
    /// Already listed in the core's flush queue.
    var flushQueued: Bool = false
    /// Clean Session / Clean Start of the CONNECT.
    var cleanStart: Bool = true
    /// A bridge that said so (protocol level bit 7): its subscriptions are No Local and Retain As
    /// Published, so what it publishes never goes back to it (mosquitto's loop detection). A bit
    /// of `flow`, which has room, so the slot stays small.
    var isBridge: Bool {
        get { flow & FlowFlag.bridge != 0 }
        set { if newValue { flow |= FlowFlag.bridge } else { flow &= ~FlowFlag.bridge } }
    }
    /// The runtime still has a socket on this slot (false once an offline session's socket closed).
    var socketAttached: Bool = true
    /// Deliveries must be checked against `access` (a deny rule overlaps a subscription, or the
    /// subscriptions came with a resumed session).
    var accessCheckDeliveries = false
    /// Flow-control state (FlowFlag bits; the rest is in `extras`).
    var flow: UInt8 = 0
    /// The MQTT session (subscriptions, messages in flight and queued, QoS 2 ids, expiry, will);
    /// changed only through its methods (Session.swift).
    var session = Session()
    /// Inbound v5 topic aliases of this connection: alias → topic name.
    var topicAliases: [UInt16: [UInt8]] = [:]
    /// Topic Aliases the broker assigned towards this connection (v5).
    var outboundAliases = OutboundTopicAliases()
    /// The user name the client authenticated as (or sent in CONNECT).
    var username: String? = nil
    /// The user name came from the client's verified TLS certificate (use_identity_as_username,
    /// use_subject_as_username): the certificate authenticated it, the CONNECT's user name and
    /// password are not looked at.
    var usernameFromCertificate = false
    /// The client's topic access rules when an ACL is configured.
    var access: ClientAccess? = nil
    /// The last topic this client was allowed to publish to (skips re-checking a repeated topic).
    var lastAllowedTopic: [UInt8] = []

    /// What only a connecting, authenticating or offline session needs (see ConnectionExtras).
    var extras: ConnectionExtras? = nil

    @inline(__always) mutating func materializeExtras() -> ConnectionExtras {
        if let e = extras { return e }
        let e = ConnectionExtras()
        extras = e
        return e
    }

    /// Input received after CONNECT while `connecting`.
    var held: ByteBuffer {
        get { extras?.held ?? ByteBuffer() }
        _modify { let e = materializeExtras(); yield &e.held }
    }
    var offlineSince: UInt64 {
        get { extras?.offlineSince ?? 0 }
        set { materializeExtras().offlineSince = newValue }
    }
    /// An enhanced authentication in progress (CONNECT waiting for AUTH, or a re-authentication).
    var authExchange: (any AuthenticationExchange)? {
        get { extras?.authExchange }
        set { if newValue != nil || extras != nil { materializeExtras().authExchange = newValue } }
    }
    /// The Authentication Method of CONNECT (v5), which a re-authentication must repeat.
    var authMethod: String? {
        get { extras?.authMethod }
        set { if newValue != nil || extras != nil { materializeExtras().authMethod = newValue } }
    }
    /// The CONNECT being authenticated, continued once the exchange succeeds.
    var pendingConnect: (connect: Connect, assignedID: String?)? {
        get { extras?.pendingConnect }
        set { if newValue != nil || extras != nil { materializeExtras().pendingConnect = newValue } }
    }
    /// The CONNACK properties prepared while `connecting`.
    var pendingConnAckProperties: Properties {
        get { extras?.pendingConnAckProperties ?? Properties() }
        set { if !newValue.isEmpty || extras != nil { materializeExtras().pendingConnAckProperties = newValue } }
    }

    /// Frees the extras once nothing in them is in use (after CONNACK, for most connections).
    mutating func dropUnusedExtras() {
        if let e = extras, e.isUnused { extras = nil }
    }

    /// Bytes waiting to reach the client: queued here plus held by the transport and the kernel.
    var pendingOutboundBytes: Int { outbound.readableBytes + Int(transportBacklog) }

    /// Frees what only a connected socket needs (an offline session keeps the rest).
    mutating func releaseSocketBuffers() {
        decoder.deallocate()
        outbound.deallocate()
        transportBacklog = 0
        extras?.held.deallocate()
        authExchange = nil
        pendingConnect = nil
        outboundAliases = OutboundTopicAliases()
        topicAliases = [:]
        flushQueued = false
    }

    /// Frees buffers; the slot keeps its generation.
    mutating func releaseResources() {
        releaseSocketBuffers()
        session.clear()
        topicAliases = [:]
        clientID = ""
        authMethod = nil
        username = nil
        usernameFromCertificate = false
        access = nil
        accessCheckDeliveries = false
        lastAllowedTopic = []
        flow = 0
        extras = nil
    }
}
