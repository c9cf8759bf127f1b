// The MQTT core's contract with the runtime, in one place: every input the runtime hands a shard's
// core and every output it takes from it (as rumqttd lists its router's in two enums). The core is
// sans-IO: it never touches a socket, a ring, a thread or a clock; the runtime (Shards) never looks
// inside a session. `ShardCore` conforms, so this list cannot drift from the code, and a unit test
// (CoreInterfaceTests) checks that the runtime uses nothing of the core that is not listed here.
//
// The runtime calls the concrete `ShardCore` (no existential on the data path); the protocol is the
// listing and the check.

import ApusBase
import Codec
import Store

public protocol ShardCoreInterface: AnyObject {
    // MARK: inputs — connections (ShardCore.swift, ShardCore+Receive.swift, ShardCore+Session.swift)

    /// A socket was accepted; the core gives it a connection slot.
    func accept(now: UInt64) -> ConnectionID
    /// A socket of another protocol (HTTP) that the runtime serves itself takes a slot of the same
    /// table; the core ignores it until `release`.
    func acceptExternal() -> ConnectionID
    /// Plaintext bytes from the connection's transport (any split; the decoder reassembles).
    func receive(_ id: ConnectionID, bytes: UnsafeRawBufferPointer, now: UInt64)
    /// The rest of a large packet received straight into the decoder's storage (plain TCP): whether
    /// there is such room, lending it, and its bytes back (false: the runtime frees the allocation).
    func isReceivingLargePacket(_ id: ConnectionID, minimum: Int) -> Bool
    func canLendReceiveRoom(_ id: ConnectionID, minimum: Int) -> Bool
    func lendReceiveRoom(_ id: ConnectionID, minimum: Int) -> (room: UnsafeMutableRawBufferPointer, allocation: UnsafeMutableRawPointer)?
    func directReceived(_ id: ConnectionID, count: Int, now: UInt64) -> Bool
    /// EOF or a socket error: the session ends abnormally (its will is published).
    func connectionLost(_ id: ConnectionID)
    /// The runtime closed the socket; the slot is freed or keeps an offline session.
    func release(_ id: ConnectionID)
    /// What the connection's transport and the kernel still hold for the client (slow-consumer limits).
    func setTransportBacklog(_ id: ConnectionID, bytes: Int)
    /// The transport authenticated the client by a verified certificate: its user name (TLS
    /// use_identity_as_username); no password is checked.
    func setCertificateUsername(_ id: ConnectionID, _ username: String)
    /// The connection is one of this broker's bridges (the bridges' inflight window).
    func markBridge(_ id: ConnectionID)

    // MARK: inputs — time, other shards, the broker itself

    /// The timer: keep alive, connect timeouts, delayed wills, session expiry, stalled subscribers.
    func tick(now: UInt64)
    /// When the input being processed arrived (the kernel's receive time, or the earliest it can
    /// have arrived): what dates a SUBSCRIBE for the subscribe-race replay.
    var inputArrivedAfter: UInt64? { get set }
    /// One record from another shard's mailbox (ShardContract's codec), and a record's length.
    func receiveShardMessage(_ record: UnsafeRawBufferPointer)
    static func shardMessageLength(_ pointer: UnsafeRawPointer) -> Int
    /// $SYS topics (the broker as publisher) and the HTTP publish API (with a typed outcome).
    func publishFromBroker(topic: String, payload: [UInt8], qos: QoS, retain: Bool, properties: [UInt8]) -> Bool
    func publishFromAPI(topic: String, payload: [UInt8], qos: QoS, retain: Bool, properties: [UInt8]) -> PublishOutcome
    /// SIGHUP: new password file, authenticators and ACL, applied between inputs.
    func reloadSecurity(_ security: SecuritySettings)
    /// Shutdown: wills first (on every shard), then DISCONNECT 0x8B to v5 clients.
    func publishWillsAtShutdown()
    func serverShuttingDown()

    // MARK: outputs — what the runtime takes after each batch of inputs

    /// Connections with bytes queued (their slots), swapped out; then their bytes, swapped out.
    func swapFlushQueue(_ other: inout [Int32])
    func takeOutbound(_ id: ConnectionID, swappingWith buffer: inout ByteBuffer)
    /// Gathered output (plain TCP): large payloads spliced into the bytes, not copied there.
    func enableGatheredOutput(_ id: ConnectionID)
    func takeOutbound(_ id: ConnectionID, swappingWith buffer: inout ByteBuffer, splices: inout [OutboundSplice])
    func hasQueuedOutput(_ id: ConnectionID) -> Bool
    func outboundReleased(_ id: ConnectionID) -> Bool
    /// Connections whose session ended: the runtime flushes, closes, then calls `release`.
    func swapCloseQueue(_ other: inout [Int32])
    /// Connections whose input flow control paused or resumed (the runtime cancels or re-arms recv).
    var inputPauseChanges: [Int32] { get }
    func swapInputPauseChanges(_ other: inout [Int32])
    func isInputPaused(_ id: ConnectionID) -> Bool
    /// Records for each other shard (index = shard), and whether some must leave at once.
    var shardOutbox: [ByteBuffer] { get set }
    var hasUrgentShardRecords: Bool { get set }
    /// Refused logins, for the runtime's log (it knows the peer's address).
    func takeAuthenticationFailures() -> [AuthenticationFailure]
    /// Events for the webhooks made since the last call (ShardCore+Events.swift).
    func takeEvents(into other: inout [BrokerEvent])

    // MARK: the durable store (ShardCore+Store.swift)

    /// Records for this shard's log (the runtime writes them) and the last sequence appended; the
    /// runtime's own segment records take their sequence here too.
    var storeRecords: ByteBuffer { get set }
    var storeSequence: UInt64 { get set }
    func nextStoreSequence() -> UInt64
    /// Input: every record up to `sequence` is durable; the acknowledgements that waited go out.
    func storeDurable(through sequence: UInt64)
    /// A compaction's snapshot of what this shard owns; at start, the recovered retained messages.
    func appendStoreSnapshot(into buffer: inout ByteBuffer) -> UInt64
    func loadRetained(_ records: [RetainedRecord], now: UInt64)
    func reserveRetained(_ count: Int)
    /// At start, the persistent sessions recovered for this shard.
    func loadSessions(_ records: [SessionRecord], now: UInt64)
    /// The HTTP API's answer to a publish waits for the store as a PUBACK does.
    func takeAPIStoreWait() -> StoreWait?
    func isDurable(_ wait: StoreWait) -> Bool
    /// Set while this shard's log cannot be written (v5 QoS 1/2 PUBLISHes get 0x97 meanwhile).
    var storeUnavailable: Bool { get set }
    /// The last sequence known durable (the runtime sets the recovered one at start).
    var storeDurableSequence: UInt64 { get set }
    /// End of a loop turn, before the outbox goes and the log is written: this turn's store
    /// ticket goes to the shards it waits for (ShardCore+SessionStore.swift).
    func storeEndOfTurn()
    /// The current segment's salt (every record's CRC starts from it).
    var storeSalt: UInt32 { get set }
    /// Connections whose acknowledgements wait for the store (a gauge).
    var storeWaitingConnections: Int { get }
    /// Realtime minus monotonic: stored stamps are wall-clock times.
    var wallClockOffset: UInt64 { get set }

    // MARK: outputs — what the broker reports (Telemetry renders them)

    var config: BrokerConfig { get }
    var counters: ShardCounters { get }
    var packetsReceived: UInt64 { get }
    func gauges() -> ShardGauges
}

extension ShardCore: ShardCoreInterface {}
