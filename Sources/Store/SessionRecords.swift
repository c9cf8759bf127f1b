// The records of persistent sessions in a shard's log. A session has a key (unique in its shard's
// log) and is written whole once (`sessionImage`: when it starts, arrives from another shard, or
// in a snapshot), then as changes: its state without messages (`sessionState`: subscriptions,
// expiry, online or offline, will), the QoS 2 ids it awaits PUBREL for, each message it queues or
// sends (`messageAdd`, with its own id), each step of one (`messageState`) and its end
// (`messageDone`). Recovery replays them (SessionImage) in log order.
//
// Bodies (little-endian):
//   sessionImage / sessionState
//                  u64 key, u64 stamp (wall ns when this copy of the session began), u64 wall time
//                  it went offline (0: it was online), u32 expiry seconds (max: never), u16 next
//                  packet id, u8 flags (bit 0: a will follows), u8 protocol level (3, 4, 5: how its
//                  queued messages are kept and sent), u16 client id length, client
//                  id; u32 subscriptions, each: u16 filter length, filter, u8 options (bits 0-1
//                  QoS, 2 no local, 3 retain as published, 4-5 retain handling), u32 identifier;
//                  the will: u8 QoS | retain << 2, u32 delay seconds, u16 topic length, u32
//                  properties length, u32 payload length, topic, properties, payload.
//                  sessionImage goes on: u32 awaited QoS 2 ids, each u16; u32 messages, each a
//                  message entry.
//   sessionEnd     u64 key
//   qos2Received   u64 key, u16 packet id, u8 1 (PUBREC sent) / 0 (PUBREL received), u8 0
//   messageAdd     u64 key, a message entry
//   messageState   u64 key, u64 message id, u16 packet id, u8 state, u8 0
//   messageDone    u64 key, u64 message id
// A message entry: u64 id, u16 packet id (0: queued), u8 state (0 queued, 1 awaiting PUBACK,
// 2 awaiting PUBREC, 3 awaiting PUBCOMP: no message bytes), u8 QoS | retain << 2, u64 wall time
// its Message Expiry Interval runs out (0: never), u16 topic length, u32 properties length, u32
// payload length; topic, properties, payload.

import ApusBase

/// Where a session's message is (the record's state byte).
public enum StoredMessageState: UInt8, Sendable {
    case queued = 0
    case awaitingPubAck = 1
    case awaitingPubRec = 2
    case awaitingPubComp = 3
}

/// One message of a stored session.
public struct StoredSessionMessage: Equatable, Sendable {
    public var id: UInt64
    public var packetID: UInt16
    public var state: StoredMessageState
    public var qos: UInt8
    public var retain: Bool
    /// Wall-clock ns when its Message Expiry Interval runs out, or 0.
    public var expiresAt: UInt64
    public var topic: [UInt8]
    public var properties: [UInt8]
    public var payload: [UInt8]

    public init(id: UInt64, packetID: UInt16, state: StoredMessageState, qos: UInt8, retain: Bool, expiresAt: UInt64,
                topic: [UInt8], properties: [UInt8], payload: [UInt8]) {
        self.id = id; self.packetID = packetID; self.state = state; self.qos = qos; self.retain = retain
        self.expiresAt = expiresAt; self.topic = topic; self.properties = properties; self.payload = payload
    }
}

public struct StoredSubscription: Equatable, Sendable {
    public var filter: [UInt8]
    public var options: UInt8
    public var identifier: UInt32
    public init(filter: [UInt8], options: UInt8, identifier: UInt32) {
        self.filter = filter; self.options = options; self.identifier = identifier
    }
}

public struct StoredWill: Equatable, Sendable {
    public var qos: UInt8
    public var retain: Bool
    public var delay: UInt32
    public var topic: [UInt8]
    public var properties: [UInt8]
    public var payload: [UInt8]
    public init(qos: UInt8, retain: Bool, delay: UInt32, topic: [UInt8], properties: [UInt8], payload: [UInt8]) {
        self.qos = qos; self.retain = retain; self.delay = delay; self.topic = topic; self.properties = properties; self.payload = payload
    }
}

/// A persistent session as stored.
public struct SessionRecord: Equatable, Sendable {
    public var key: UInt64
    public var stamp: UInt64
    public var offlineSince: UInt64
    public var expiry: UInt32
    public var nextPacketID: UInt16
    /// The MQTT protocol level of its last connection (4: 3.1.1, 5: 5.0).
    public var version: UInt8
    public var clientID: [UInt8]
    public var subscriptions: [StoredSubscription]
    public var will: StoredWill?
    public var awaitingRelease: [UInt16]
    /// In id order: the ones in flight (send order), then the queued ones.
    public var messages: [StoredSessionMessage]

    public init(key: UInt64, stamp: UInt64, offlineSince: UInt64 = 0, expiry: UInt32, nextPacketID: UInt16 = 1, version: UInt8 = 4,
                clientID: [UInt8], subscriptions: [StoredSubscription] = [], will: StoredWill? = nil,
                awaitingRelease: [UInt16] = [], messages: [StoredSessionMessage] = []) {
        self.key = key; self.stamp = stamp; self.offlineSince = offlineSince; self.expiry = expiry
        self.nextPacketID = nextPacketID; self.version = version; self.clientID = clientID; self.subscriptions = subscriptions; self.will = will
        self.awaitingRelease = awaitingRelease; self.messages = messages
    }

    // MARK: writing

    /// Appends the whole session (`sessionImage`).
    public func appendImage(sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        append(type: .sessionImage, sequence: sequence, salt: salt, into: &buffer)
    }

    /// Appends the session's state without its messages and QoS 2 ids (`sessionState`).
    public func appendState(sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        append(type: .sessionState, sequence: sequence, salt: salt, into: &buffer)
    }

    func append(type: StoreRecordType, sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        var body = ByteBuffer()
        defer { body.deallocate() }
        body.writeLE(key); body.writeLE(stamp); body.writeLE(offlineSince); body.writeLE(expiry); body.writeLE(nextPacketID)
        body.writeByte(will == nil ? 0 : 1); body.writeByte(version)
        body.writeLE(UInt16(clientID.count)); body.writeBytes(clientID)
        body.writeLE(UInt32(subscriptions.count))
        for s in subscriptions {
            body.writeLE(UInt16(s.filter.count)); body.writeBytes(s.filter); body.writeByte(s.options); body.writeLE(s.identifier)
        }
        if let w = will {
            body.writeByte(w.qos | (w.retain ? 4 : 0)); body.writeLE(w.delay)
            body.writeLE(UInt16(w.topic.count)); body.writeLE(UInt32(w.properties.count)); body.writeLE(UInt32(w.payload.count))
            body.writeBytes(w.topic); body.writeBytes(w.properties); body.writeBytes(w.payload)
        }
        if type == .sessionImage {
            body.writeLE(UInt32(awaitingRelease.count))
            for id in awaitingRelease { body.writeLE(id) }
            body.writeLE(UInt32(messages.count))
            for m in messages {
                SessionLog.writeEntry(id: m.id, packetID: m.packetID, state: m.state, qos: m.qos, retain: m.retain,
                                      expiresAt: m.expiresAt, topic: m.topic, properties: m.properties, payload: m.payload, into: &body)
            }
        }
        let view = body.readableView
        LogRecord.append(type: type.rawValue, sequence: sequence, salt: salt, bodySize: view.count, into: &buffer) { p in
            if let b = view.baseAddress { p.copyMemory(from: b, byteCount: view.count) }
        }
    }

    // MARK: reading

    /// Decodes a sessionImage or sessionState record; nil for another type or a body that lies.
    public init?(_ record: StoredRecord) {
        guard record.type == StoreRecordType.sessionImage.rawValue || record.type == StoreRecordType.sessionState.rawValue else { return nil }
        var r = CheckedReader(record.body)
        guard let key = r.u64(), let stamp = r.u64(), let offline = r.u64(), let expiry = r.u32(), let next = r.u16(),
              let flags = r.u8(), let version = r.u8(), let idLength = r.u16(), let clientID = r.bytes(Int(idLength)),
              let subscriptionCount = r.u32(), Int(subscriptionCount) <= r.remaining / 7 else { return nil }
        var subscriptions: [StoredSubscription] = []
        subscriptions.reserveCapacity(Int(subscriptionCount))
        for _ in 0..<subscriptionCount {
            guard let length = r.u16(), let filter = r.bytes(Int(length)), let options = r.u8(), let identifier = r.u32() else { return nil }
            subscriptions.append(StoredSubscription(filter: filter, options: options, identifier: identifier))
        }
        var will: StoredWill? = nil
        if flags & 1 != 0 {
            guard let qr = r.u8(), let delay = r.u32(), let t = r.u16(), let pr = r.u32(), let pl = r.u32(),
                  let topic = r.bytes(Int(t)), let properties = r.bytes(Int(pr)), let payload = r.bytes(Int(pl)) else { return nil }
            will = StoredWill(qos: qr & 3, retain: qr & 4 != 0, delay: delay, topic: topic, properties: properties, payload: payload)
        }
        var awaiting: [UInt16] = []
        var messages: [StoredSessionMessage] = []
        if record.type == StoreRecordType.sessionImage.rawValue {
            guard let count = r.u32(), Int(count) <= r.remaining / 2 else { return nil }
            for _ in 0..<count {
                guard let id = r.u16() else { return nil }
                awaiting.append(id)
            }
            guard let messageCount = r.u32(), Int(messageCount) <= r.remaining / SessionLog.entryHeaderSize else { return nil }
            messages.reserveCapacity(Int(messageCount))
            for _ in 0..<messageCount {
                guard let m = SessionLog.readEntry(&r) else { return nil }
                messages.append(m)
            }
        }
        guard r.remaining == 0 else { return nil }
        self.init(key: key, stamp: stamp, offlineSince: offline, expiry: expiry, nextPacketID: next, version: version, clientID: clientID,
                  subscriptions: subscriptions, will: will, awaitingRelease: awaiting, messages: messages)
    }
}

/// The small, frequent session records, written from borrowed bytes (the publish path).
public enum SessionLog {
    static let entryHeaderSize = 30

    public static func appendEnd(key: UInt64, sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.sessionEnd.rawValue, sequence: sequence, salt: salt, bodySize: 8, into: &buffer) { p in
            p.storeBytes(of: key.littleEndian, toByteOffset: 0, as: UInt64.self)
        }
    }

    public static func appendQoS2(key: UInt64, packetID: UInt16, received: Bool, sequence: UInt64, salt: UInt32,
                                  into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.qos2Received.rawValue, sequence: sequence, salt: salt, bodySize: 12, into: &buffer) { p in
            p.storeBytes(of: key.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: packetID.littleEndian, toByteOffset: 8, as: UInt16.self)
            p.storeBytes(of: received ? 1 : 0, toByteOffset: 10, as: UInt8.self)
            p.storeBytes(of: 0, toByteOffset: 11, as: UInt8.self)
        }
    }

    /// A message queued or sent: `bytes` is topic, properties and payload in one run, or topic
    /// and properties followed by `payload` when the payload is held apart (a shared one).
    @inlinable
    public static func appendMessage(key: UInt64, id: UInt64, packetID: UInt16, state: StoredMessageState, qos: UInt8, retain: Bool,
                                     expiresAt: UInt64, topicLength: Int, propertiesLength: Int, bytes: UnsafeRawBufferPointer,
                                     payload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                                     sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.messageAdd.rawValue, sequence: sequence, salt: salt, bodySize: 38 + bytes.count + payload.count,
                         into: &buffer) { p in
            p.storeBytes(of: key.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: packetID.littleEndian, toByteOffset: 16, as: UInt16.self)
            p.storeBytes(of: state.rawValue, toByteOffset: 18, as: UInt8.self)
            p.storeBytes(of: qos | (retain ? 4 : 0), toByteOffset: 19, as: UInt8.self)
            p.storeBytes(of: expiresAt.littleEndian, toByteOffset: 20, as: UInt64.self)
            p.storeBytes(of: UInt16(topicLength).littleEndian, toByteOffset: 28, as: UInt16.self)
            p.storeBytes(of: UInt32(propertiesLength).littleEndian, toByteOffset: 30, as: UInt32.self)
            p.storeBytes(of: UInt32(bytes.count + payload.count - topicLength - propertiesLength).littleEndian, toByteOffset: 34, as: UInt32.self)
            if let b = bytes.baseAddress { (p + 38).copyMemory(from: b, byteCount: bytes.count) }
            if let b = payload.baseAddress { (p + 38 + bytes.count).copyMemory(from: b, byteCount: payload.count) }
        }
    }

    @inlinable
    public static func appendState(key: UInt64, id: UInt64, packetID: UInt16, state: StoredMessageState, sequence: UInt64,
                                   salt: UInt32, into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.messageState.rawValue, sequence: sequence, salt: salt, bodySize: 20, into: &buffer) { p in
            p.storeBytes(of: key.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: packetID.littleEndian, toByteOffset: 16, as: UInt16.self)
            p.storeBytes(of: state.rawValue, toByteOffset: 18, as: UInt8.self)
            p.storeBytes(of: 0, toByteOffset: 19, as: UInt8.self)
        }
    }

    @inlinable
    public static func appendDone(key: UInt64, id: UInt64, sequence: UInt64, salt: UInt32, into buffer: inout ByteBuffer) {
        LogRecord.append(type: StoreRecordType.messageDone.rawValue, sequence: sequence, salt: salt, bodySize: 16, into: &buffer) { p in
            p.storeBytes(of: key.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
    }

    static func writeEntry(id: UInt64, packetID: UInt16, state: StoredMessageState, qos: UInt8, retain: Bool, expiresAt: UInt64,
                           topic: [UInt8], properties: [UInt8], payload: [UInt8], into body: inout ByteBuffer) {
        body.writeLE(id); body.writeLE(packetID); body.writeByte(state.rawValue); body.writeByte(qos | (retain ? 4 : 0))
        body.writeLE(expiresAt); body.writeLE(UInt16(topic.count)); body.writeLE(UInt32(properties.count)); body.writeLE(UInt32(payload.count))
        body.writeBytes(topic); body.writeBytes(properties); body.writeBytes(payload)
    }

    static func readEntry(_ r: inout CheckedReader) -> StoredSessionMessage? {
        guard let id = r.u64(), let packetID = r.u16(), let stateByte = r.u8(), let state = StoredMessageState(rawValue: stateByte),
              let flags = r.u8(), flags & 0xF8 == 0, flags & 3 != 3, let expiresAt = r.u64(), let t = r.u16(), let pr = r.u32(), let pl = r.u32(),
              let topic = r.bytes(Int(t)), let properties = r.bytes(Int(pr)), let payload = r.bytes(Int(pl)) else { return nil }
        return StoredSessionMessage(id: id, packetID: packetID, state: state, qos: flags & 3, retain: flags & 4 != 0, expiresAt: expiresAt,
                                    topic: topic, properties: properties, payload: payload)
    }
}

/// Reads little-endian fields, refusing to read past the body (nil).
struct CheckedReader {
    let body: UnsafeRawBufferPointer
    var offset = 0
    init(_ body: UnsafeRawBufferPointer) { self.body = body }
    var remaining: Int { body.count - offset }
    mutating func u8() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { offset += 1 }
        return body.load(fromByteOffset: offset, as: UInt8.self)
    }
    mutating func u16() -> UInt16? {
        guard remaining >= 2 else { return nil }
        defer { offset += 2 }
        return UInt16(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    mutating func u64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        defer { offset += 8 }
        return UInt64(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    mutating func bytes(_ n: Int) -> [UInt8]? {
        guard n >= 0, remaining >= n else { return nil }
        defer { offset += n }
        return Array(body[offset..<offset + n])
    }
}

/// The sessions one shard's log holds, replayed record by record.
public struct SessionImage: Sendable {
    struct Working: Sendable {
        var record: SessionRecord
        var messages: [UInt64: StoredSessionMessage]
        var awaiting: Set<UInt16>
    }
    var sessions: [UInt64: Working] = [:]

    public init() {}

    public var count: Int { sessions.count }

    /// Applies one session record; false if it is not one or does not decode.
    public mutating func apply(_ record: StoredRecord) -> Bool {
        guard let type = StoreRecordType(rawValue: record.type) else { return false }
        var r = CheckedReader(record.body)
        switch type {
        case .sessionImage:
            guard let s = SessionRecord(record) else { return false }
            var messages: [UInt64: StoredSessionMessage] = [:]
            for m in s.messages { messages[m.id] = m }
            var bare = s
            bare.messages = []
            sessions[s.key] = Working(record: bare, messages: messages, awaiting: Set(s.awaitingRelease))
        case .sessionState:
            guard let s = SessionRecord(record) else { return false }
            if let stamp = sessions[s.key]?.record.stamp {
                sessions[s.key]?.record = SessionRecord(key: s.key, stamp: stamp, offlineSince: s.offlineSince, expiry: s.expiry,
                                                        nextPacketID: s.nextPacketID, version: s.version, clientID: s.clientID,
                                                        subscriptions: s.subscriptions, will: s.will)
            }
        case .sessionEnd:
            guard let key = r.u64(), r.remaining == 0 else { return false }
            sessions.removeValue(forKey: key)
        case .qos2Received:
            guard let key = r.u64(), let id = r.u16(), let received = r.u8(), r.u8() != nil, r.remaining == 0 else { return false }
            if received == 1 { sessions[key]?.awaiting.insert(id) } else { sessions[key]?.awaiting.remove(id) }
        case .messageAdd:
            guard let key = r.u64(), let m = SessionLog.readEntry(&r), r.remaining == 0 else { return false }
            sessions[key]?.messages[m.id] = m
        case .messageState:
            guard let key = r.u64(), let id = r.u64(), let packetID = r.u16(), let stateByte = r.u8(),
                  let state = StoredMessageState(rawValue: stateByte), r.u8() != nil, r.remaining == 0 else { return false }
            if var m = sessions[key]?.messages[id] {
                m.packetID = packetID
                m.state = state
                if state == .awaitingPubComp { m.topic = []; m.properties = []; m.payload = [] }
                sessions[key]?.messages[id] = m
            }
        case .messageDone:
            guard let key = r.u64(), let id = r.u64(), r.remaining == 0 else { return false }
            sessions[key]?.messages.removeValue(forKey: id)
        default:
            return false
        }
        return true
    }

    /// The sessions, each with its messages in id order and its QoS 2 ids.
    public var records: [SessionRecord] {
        sessions.values.map { w in
            var s = w.record
            s.messages = w.messages.values.sorted { $0.id < $1.id }
            s.awaitingRelease = w.awaiting.sorted()
            return s
        }
    }

    /// The sessions of every shard's log, one per client id: where a session moved between shards
    /// and both copies survived, the later copy (stamp) wins.
    public static func merge(_ images: [SessionImage]) -> [SessionRecord] { merge(records: images.map(\.records)) }

    /// `merge` of the images' `records` (which the recovery threads make in parallel); in stamp
    /// order.
    public static func merge(records: [[SessionRecord]]) -> [SessionRecord] {
        let nonEmpty = records.filter { !$0.isEmpty }
        if nonEmpty.count <= 1 { return (nonEmpty.first ?? []).sorted { $0.stamp < $1.stamp } }
        var byClient: [HashedBytes: SessionRecord] = [:]
        byClient.reserveCapacity(nonEmpty.reduce(0) { $0 + $1.count })
        for part in nonEmpty {
            for s in part {
                let key = HashedBytes(s.clientID)
                if let existing = byClient[key], existing.stamp >= s.stamp { continue }
                byClient[key] = s
            }
        }
        return byClient.values.sorted { $0.stamp < $1.stamp }
    }
}

extension ByteBuffer {
    mutating func writeLE<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { writeBytes($0) }
    }
}
