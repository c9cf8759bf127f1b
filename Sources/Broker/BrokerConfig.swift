// Broker settings that the session logic needs. Defaults follow mosquitto where it has one.

import Codec

/// Settings of the MQTT session logic (per broker; every shard gets the same copy).
public struct BrokerConfig: Sendable {
    /// Largest packet accepted from a client, in bytes (v5 CONNACK advertises it). A larger one
    /// is refused at its fixed header, before its body is read. 1 MiB as EMQX's default: the
    /// protocol's 256 MiB (mosquitto's and HiveMQ's default) lets a few clients pin gigabytes.
    public var maxPacketSize: Int = BrokerConfig.defaultMaxPacketSize
    /// This node's id in a cluster (records' origin, retained stamps); 0 outside a cluster.
    public var nodeID: UInt16 = 0
    /// The events some webhook wants (BrokerEvent.Kind bits; 0: none is made) and the topic
    /// filters of message events (empty: every topic).
    public var eventKinds: UInt8 = 0
    public var eventTopicFilters: [String] = []
    public static let defaultMaxPacketSize = 1 << 20
    /// Bytes all partial (not yet complete) packets of one shard may hold; past it the connections
    /// holding the most are cut off (v5: DISCONNECT 0x97), largest first. 0 = no limit.
    public var partialPacketMemoryLimit: Int = 64 << 20
    /// Seconds a connection may stay open without sending CONNECT.
    public var connectTimeoutSeconds: Double = 10
    /// Connections per shard beyond which CONNECT is refused (0x03 / v5 0x97 quota exceeded).
    public var maxConnectionsPerShard: Int = 100_000
    /// Keep alive the broker imposes when a v5 client asks for more (Server Keep Alive); 0 = no cap.
    public var maxKeepAlive: UInt16 = 65_535
    /// Largest Topic Alias a client may use towards the broker (v5; mosquitto's max_topic_alias);
    /// 0 disables inbound aliases.
    public var topicAliasMaximum: UInt16 = 10
    /// Most Topic Aliases the broker assigns towards one client (v5; the client's own Topic Alias
    /// Maximum lowers it); 0 disables outbound aliases.
    public var outboundTopicAliasMaximum: UInt16 = 64
    /// Response Information sent in CONNACK to a v5 client that asks for it (Request Response
    /// Information 1); `%c` becomes the client identifier. Empty: never sent.
    public var responseInformation: String = "response/%c"
    /// Receive Maximum the broker advertises: inbound unacknowledged QoS 1/2 PUBLISHes it accepts.
    public var receiveMaximum: UInt16 = 65_535

    /// Outbound QoS 1/2 messages that may be unacknowledged per client (mosquitto's
    /// max_inflight_messages); the v5 client's Receive Maximum lowers it.
    public var maxInflightMessages: Int = 20
    /// The inflight window towards a bridge (this broker's, or another broker's that says it is
    /// one): `bridge_max_inflight_messages`, at least `maxInflightMessages`.
    public var bridgeInflightMessages: Int = 1000
    /// Outbound QoS 1/2 messages queued per client behind the inflight window, online or offline
    /// (mosquitto's max_queued_messages); beyond it messages are dropped and counted.
    public var maxQueuedMessages: Int = 1000
    /// Largest PUBLISH payload the broker accepts (mosquitto's message_size_limit); 0 = no limit.
    /// Larger messages are not routed; QoS 1/2 are still acknowledged (v5: reason 0x95).
    public var messageSizeLimit: Int = 0

    /// Checks CONNECT user name and password when set (mosquitto's password_file); without it any
    /// user name is accepted.
    public var passwords: (any PasswordChecker)? = nil
    /// Whether a client without a user name (and without enhanced authentication) may connect
    /// (mosquitto's allow_anonymous). Refused: CONNACK 0x05 / v5 0x87.
    public var allowAnonymous: Bool = true
    /// Topic access control (mosquitto's acl_file); nil: every client may publish and subscribe anywhere.
    public var acl: AccessControlList? = nil
    /// Enhanced authentication methods by Authentication Method name (v5 AUTH flow); a CONNECT
    /// naming another method is refused with 0x8C.
    public var authenticators: [String: any EnhancedAuthenticator] = [:]

    /// Whether retained messages are supported (mosquitto's retain_available). Off: v5 CONNACK says
    /// Retain Available 0 and a PUBLISH with retain set ends the connection (v5: DISCONNECT 0x9A).
    public var retainAvailable: Bool = true
    /// Highest QoS accepted and granted (mosquitto's max_qos). Below 2: v5 CONNACK carries Maximum
    /// QoS, subscriptions are granted at most this, and a PUBLISH above it ends the connection (0x9B).
    public var maximumQoS: QoS = .exactlyOnce
    /// Whether filters with `+`/`#` are accepted; off: SUBACK 0xA2 (3.1.1: 0x80).
    public var wildcardSubscriptionsAvailable: Bool = true
    /// Whether `$share/` and `$queue/` filters are accepted; off: SUBACK 0x9E (3.1.1: 0x80), and the
    /// filters are then ordinary topic filters no client can publish to.
    public var sharedSubscriptionsAvailable: Bool = true
    /// Whether v5 Subscription Identifiers are accepted; off: SUBACK 0xA1 for such a SUBSCRIBE.
    public var subscriptionIdentifiersAvailable: Bool = true
    /// Entries of each shard's cache of topic matches (MatchCache.swift), a power of two; 0 = no
    /// cache (every PUBLISH walks the subscription trie).
    public var matchCacheEntries: Int = 1024

    /// Bytes that may wait to be sent to one client before the broker gives up on it (a consumer
    /// that stopped reading): DISCONNECT 0x97 (quota exceeded) and close; a persistent session
    /// keeps its QoS 1/2 messages. QoS 0 is dropped long before, above 4 MiB.
    public var maxOutboundBuffer: Int = 64 << 20

    /// Seconds a connected subscriber that holds publishers back (flow control) may go without
    /// acknowledging anything before it is disconnected (v5: DISCONNECT 0x97); 0 = never.
    public var subscriberStallTimeoutSeconds: Double = 10

    /// Seconds after which an offline session that would never expire (3.1/3.1.1 clean session 0,
    /// v5 Session Expiry 0xFFFFFFFF) is discarded (mosquitto's persistent_client_expiration); 0 = never.
    public var persistentClientExpiration: UInt32 = 0
    /// Keep retained messages in the shards' logs (`persistence`).
    public var persistence: Bool = false
    /// When an acknowledgement of something stored goes out (`persistence_durability`).
    public var durability: StoreDurability = .written

    /// How shared subscription groups pick a member.
    public var sharedSubscriptionStrategy: SharedSubscriptionStrategy = .roundRobin

    public init() {}
}

/// When the broker acknowledges what it stores (PUBACK / PUBREC of a retained message).
public enum StoreDurability: String, Sendable, CaseIterable {
    /// Not before the record was handed to the kernel (a completed write): survives kill -9 and
    /// the OOM killer, not a power loss.
    case written
    /// Not before an fdatasync that covers the record: survives a power loss too.
    case synced
    /// At once; the record is written at the end of the loop turn: a crash may lose what was
    /// acknowledged in the last moments.
    case none
}
