// Mosquitto's persistence file (`mosquitto.db`, format version 6: Mosquitto 2.0), read into the
// store's records: its retained messages and its persistent sessions with their subscriptions
// and queued and in-flight messages. Pure: the caller reads the file and writes the records.
//
// The format, as Mosquitto 2.0.11 writes it (learned from its persist code and checked on files it
// wrote): a 15-byte magic `00 B5 00 "mosquitto db"`, a u32 CRC (written as 0), a u32 version,
// then chunks: u32 type, u32 body length (both big-endian), the body. Multi-byte fields are
// big-endian except the 64-bit ones (ids and times), which are in the writer's byte order (little
// on every machine Mosquitto is built for here).
//   1 config      u64 last db id, u8 shutdown, u8 db id size, padding to 16
//   2 message     u64 store id, i64 expiry time (unix s, 0 never), u32 payload length, u16 source
//                 mid, u16 source id length, u16 source user name length, u16 topic length, u16
//                 source port, u8 QoS, u8 retain (32 bytes); source id, user name, topic, payload,
//                 then (to the end of the chunk) the v5 property block with its length prefix
//   3 client msg  u64 store id, u16 mid, u16 client id length, u8 QoS, u8 state, u8 retain << 4 |
//                 dup, u8 direction (0 in, 1 out) (16 bytes); client id
//   4 retain      u64 store id
//   5 subscription  u32 identifier, u16 client id length, u16 topic length, u8 QoS, u8 options,
//                 padding to 12; client id, topic
//   6 client      i64 session expiry time (unix s), u32 session expiry interval, u16 last mid, u16
//                 client id length, u16 listener port, u16 user name length, padding to 24; client
//                 id, user name

import ApusBase

/// What a Mosquitto persistence file holds, as the store's records.
public struct MosquittoImport: Sendable {
    public var retained: [RetainedRecord] = []
    /// Persistent sessions (keys 1..., message ids 1... in each), in file order.
    public var sessions: [SessionRecord] = []
    /// Messages of sessions in flight or queued, in total.
    public var messages: Int { sessions.reduce(0) { $0 + $1.messages.count } }
    /// Messages dropped: expired, or of a session or message the file does not have.
    public var skipped = 0
    /// Deliveries of inbound QoS 2 messages Mosquitto held until PUBREL, queued for the matching sessions.
    public var released = 0
    public var version: UInt32 = 0

    public init() {}
}

public struct MosquittoDBError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
    init(_ description: String) { self.description = description }
}

public enum MosquittoDB {
    static let magic: [UInt8] = [0x00, 0xB5, 0x00] + Array("mosquitto db".utf8)

    /// Reads `bytes` (a whole file); `now` is the wall clock in ns (remaining expiries are taken
    /// from it, expired messages dropped).
    public static func read(_ bytes: UnsafeRawBufferPointer, now: UInt64) throws(MosquittoDBError) -> MosquittoImport {
        guard bytes.count >= 23, Array(bytes[0..<15]) == magic else { throw MosquittoDBError("not a mosquitto persistence file") }
        var out = MosquittoImport()
        out.version = be32(bytes, 19)
        guard out.version == 5 || out.version == 6 else {
            throw MosquittoDBError("format version \(out.version): this reads versions 5 and 6 (Mosquitto 1.6 and 2.0)")
        }
        struct Message { var expiry: Int64; var qos: UInt8; var retain: Bool; var topic: [UInt8]; var payload: [UInt8]; var properties: [UInt8] }
        var messages: [UInt64: Message] = [:]
        var retainedIDs: [UInt64] = []
        var sessionIndex: [[UInt8]: Int] = [:]
        var subscriptions: [([UInt8], StoredSubscription)] = []
        var clientMessages: [(client: [UInt8], storeID: UInt64, mid: UInt16, qos: UInt8, state: UInt8, retain: Bool, out: Bool)] = []
        let nowSeconds = Int64(now / 1_000_000_000)
        var offset = 23
        while offset < bytes.count {
            guard bytes.count - offset >= 8 else { throw MosquittoDBError("a chunk header cut short at offset \(offset)") }
            let type = be32(bytes, offset), length = Int(be32(bytes, offset + 4))
            let start = offset + 8
            guard length <= bytes.count - start else { throw MosquittoDBError("chunk at offset \(offset) runs past the end of the file") }
            let body = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])
            offset = start + length
            func need(_ n: Int) throws(MosquittoDBError) {
                guard body.count >= n else { throw MosquittoDBError("chunk of type \(type) at offset \(start - 8) is too short") }
            }
            switch type {
            case 2:
                try need(32)
                let storeID = le64(body, 0), expiry = Int64(bitPattern: le64(body, 8)), payloadLength = Int(be32(body, 16))
                let idLength = Int(be16(body, 22)), userLength = Int(be16(body, 24)), topicLength = Int(be16(body, 26))
                let qos = body[30], retain = body[31] != 0
                var at = 32 + idLength + userLength
                try need(at + topicLength + payloadLength)
                let topic = Array(body[at..<at + topicLength]); at += topicLength
                let payload = Array(body[at..<at + payloadLength]); at += payloadLength
                guard qos <= 2 else { throw MosquittoDBError("message \(storeID): QoS \(qos)") }
                messages[storeID] = Message(expiry: expiry, qos: qos, retain: retain, topic: topic, payload: payload,
                                            properties: try bareProperties(Array(body[at...])))
            case 3:
                try need(16)
                let idLength = Int(be16(body, 10))
                try need(16 + idLength)
                clientMessages.append((Array(body[16..<16 + idLength]), le64(body, 0), be16(body, 8), body[12], body[13],
                                       body[14] >> 4 & 1 != 0, body[15] == 1))
            case 4:
                try need(8)
                retainedIDs.append(le64(body, 0))
            case 5:
                try need(12)
                let idLength = Int(be16(body, 4)), topicLength = Int(be16(body, 6))
                try need(12 + idLength + topicLength)
                let options = (body[8] & 3) | (body[9] & 0x3C)
                subscriptions.append((Array(body[12..<12 + idLength]),
                                      StoredSubscription(filter: Array(body[12 + idLength..<12 + idLength + topicLength]),
                                                         options: options, identifier: be32(body, 0))))
            case 6:
                try need(24)
                let expiryTime = Int64(bitPattern: le64(body, 0)), interval = be32(body, 8)
                let idLength = Int(be16(body, 14))
                try need(24 + idLength)
                let clientID = Array(body[24..<24 + idLength])
                // Offline since: the expiry time less the interval (Mosquitto keeps when it ends).
                var offline = now
                if interval != .max && expiryTime > Int64(interval) {
                    offline = nanoseconds(UInt64(expiryTime - Int64(interval)))
                }
                sessionIndex[clientID] = out.sessions.count
                out.sessions.append(SessionRecord(key: UInt64(out.sessions.count + 1), stamp: now, offlineSince: offline, expiry: interval,
                                                  nextPacketID: be16(body, 12) == .max ? 1 : be16(body, 12) + 1,
                                                  version: interval == .max ? 4 : 5, clientID: clientID))
            default:
                continue  // config, and chunk types of later versions
            }
        }
        func expiresAt(_ m: Message) -> UInt64? {
            guard m.expiry > 0 else { return 0 }
            return m.expiry > nowSeconds ? nanoseconds(UInt64(m.expiry)) : nil
        }
        for id in retainedIDs {
            guard let m = messages[id], let expires = expiresAt(m) else { out.skipped += 1; continue }
            var properties = m.properties
            if expires > 0 && !properties.contains(0x02) {
                // The remaining Message Expiry Interval, as Apus keeps it (Mosquitto keeps the time apart).
                let left = UInt32(clamping: (expires - now) / 1_000_000_000)
                properties = [0x02, UInt8(left >> 24), UInt8(left >> 16 & 0xFF), UInt8(left >> 8 & 0xFF), UInt8(left & 0xFF)] + properties
            }
            out.retained.append(RetainedRecord(wallTime: now, node: 0, shard: 0, qos: m.qos, topic: m.topic, properties: properties,
                                               payload: m.payload))
        }
        for (client, subscription) in subscriptions {
            guard let i = sessionIndex[client] else { continue }
            out.sessions[i].subscriptions.append(subscription)
        }
        var nextID = [UInt64](repeating: 0, count: out.sessions.count)
        var inbound: [(Message, UInt64)] = []
        for cm in clientMessages {
            guard let i = sessionIndex[cm.client] else { out.skipped += 1; continue }
            if !cm.out {
                // An inbound QoS 2 message the client still has to release (PUBREL). Mosquitto
                // passes it on at PUBREL, Apus at PUBLISH: it goes to the matching sessions now,
                // and the id waits for its PUBREL.
                guard cm.state == 7 else { continue }
                out.sessions[i].awaitingRelease.append(cm.mid)
                if let m = messages[cm.storeID], let e = expiresAt(m) { inbound.append((m, e)) }
                continue
            }
            let state: StoredMessageState
            switch cm.state {
            case 3: state = .awaitingPubAck          // wait for PUBACK
            case 5: state = .awaitingPubRec          // wait for PUBREC
            case 6, 9: state = .awaitingPubComp      // resend PUBREL, wait for PUBCOMP
            case 1, 2, 4, 11: state = .queued        // not sent yet (publish QoS 0/1/2, queued)
            default: out.skipped += 1; continue
            }
            let message = messages[cm.storeID]
            guard state == .awaitingPubComp || message != nil, cm.qos >= 1 && cm.qos <= 2 else { out.skipped += 1; continue }
            var expires: UInt64 = 0
            if let message {
                guard let e = expiresAt(message) else { out.skipped += 1; continue }
                expires = e
            }
            nextID[i] += 1
            out.sessions[i].messages.append(StoredSessionMessage(
                id: nextID[i], packetID: state == .queued ? 0 : cm.mid, state: state, qos: cm.qos, retain: cm.retain,
                expiresAt: expires, topic: state == .awaitingPubComp ? [] : message?.topic ?? [],
                properties: state == .awaitingPubComp ? [] : message?.properties ?? [],
                payload: state == .awaitingPubComp ? [] : message?.payload ?? []))
        }
        for (m, expires) in inbound {
            for i in out.sessions.indices {
                let granted = out.sessions[i].subscriptions.filter { TopicFilter.matches($0.filter, topic: m.topic) }.map { $0.options & 3 }.max()
                guard let granted, min(granted, m.qos) > 0 else { continue }
                nextID[i] += 1
                out.sessions[i].messages.append(StoredSessionMessage(id: nextID[i], packetID: 0, state: .queued, qos: min(granted, m.qos),
                                                                     retain: false, expiresAt: expires, topic: m.topic,
                                                                     properties: m.properties, payload: m.payload))
                out.released += 1
            }
        }
        // Mosquitto adds the Subscription Identifiers when it sends; Apus keeps them with the
        // message (it adds them when it routes): the ones of the session's matching subscriptions.
        for i in out.sessions.indices {
            let identified = out.sessions[i].subscriptions.filter { $0.identifier != 0 }
            guard !identified.isEmpty else { continue }
            for j in out.sessions[i].messages.indices where out.sessions[i].messages[j].state != .awaitingPubComp {
                for sub in identified where TopicFilter.matches(sub.filter, topic: out.sessions[i].messages[j].topic) {
                    var id = sub.identifier
                    var property: [UInt8] = [0x0B]
                    repeat {
                        property.append(UInt8(id & 0x7F) | (id > 0x7F ? 0x80 : 0))
                        id >>= 7
                    } while id > 0
                    out.sessions[i].messages[j].properties += property
                }
            }
        }
        // In flight first (their send order), then the queue, as a session keeps them.
        for i in out.sessions.indices {
            let inflight = out.sessions[i].messages.filter { $0.state != .queued }
            let queued = out.sessions[i].messages.filter { $0.state == .queued }
            out.sessions[i].messages = (inflight + queued).enumerated().map { var m = $1; m.id = UInt64($0 + 1); return m }
        }
        return out
    }

    /// A property block without its length prefix (as the store keeps them); empty stays empty.
    static func bareProperties(_ block: [UInt8]) throws(MosquittoDBError) -> [UInt8] {
        guard !block.isEmpty else { return [] }
        var length = 0, shift = 0, i = 0
        while true {
            guard i < block.count, i < 4 else { throw MosquittoDBError("a property block with a bad length") }
            length |= Int(block[i] & 0x7F) << shift
            shift += 7
            i += 1
            if block[i - 1] & 0x80 == 0 { break }
        }
        guard length == block.count - i else { throw MosquittoDBError("a property block of \(length) bytes in \(block.count - i)") }
        return Array(block[i...])
    }

    /// Seconds as nanoseconds, saturating (a hostile file's times do not overflow).
    static func nanoseconds(_ seconds: UInt64) -> UInt64 {
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : ns
    }

    static func be16(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt16 { UInt16(b[at]) << 8 | UInt16(b[at + 1]) }
    static func be32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }
    static func le64(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt64 { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
}

/// A checksum over what a store holds, independent of keys, ids, stamps and order: retained
/// messages by topic, sessions by client id (with their subscriptions, QoS 2 ids and messages in
/// order). The import prints it for what it read, for a second read of the source, and for the
/// store read back.
public enum StoreDigest {
    public static func of(retained: [RetainedRecord], sessions: [SessionRecord]) -> UInt64 {
        var parts: [UInt64] = []
        for r in retained {
            var h = FNV1a.hash([0x01, r.qos] + r.topic + [0] + r.properties + [0] + r.payload)
            h ^= UInt64(r.payload.count)
            parts.append(h)
        }
        for s in sessions {
            var bytes: [UInt8] = [0x02] + s.clientID + [0]
            withUnsafeBytes(of: s.expiry.bigEndian) { bytes += $0 }
            for sub in s.subscriptions.sorted(by: { $0.filter.lexicographicallyPrecedes($1.filter) }) {
                bytes += sub.filter + [0, sub.options]
                withUnsafeBytes(of: sub.identifier.bigEndian) { bytes += $0 }
            }
            for id in s.awaitingRelease.sorted() { withUnsafeBytes(of: id.bigEndian) { bytes += $0 } }
            for m in s.messages {
                bytes += [m.state.rawValue, m.qos, m.retain ? 1 : 0]
                withUnsafeBytes(of: m.packetID.bigEndian) { bytes += $0 }
                bytes += m.topic + [0] + m.properties + [0] + m.payload
            }
            parts.append(FNV1a.hash(bytes))
        }
        // Order-free: a sum of the parts' hashes, mixed once more.
        var sum: UInt64 = 0
        for p in parts { sum &+= p &* 0x9E37_79B9_7F4A_7C15 }
        return FNV1a.hash(withUnsafeBytes(of: sum) { Array($0) }) ^ UInt64(parts.count)
    }
}

/// MQTT topic filter matching on bytes (the import's own; the broker's is the Router's trie).
enum TopicFilter {
    static func matches(_ filter: [UInt8], topic: [UInt8]) -> Bool {
        var f = filter.split(separator: 0x2F, omittingEmptySubsequences: false).map(Array.init)
        if f.count >= 3, f[0] == Array("$share".utf8) { f.removeFirst(2) }  // $share/<group>/<filter>
        let t = topic.split(separator: 0x2F, omittingEmptySubsequences: false).map(Array.init)
        if topic.first == 0x24, let first = f.first, first == [0x23] || first == [0x2B] { return false }  // $ topics [MQTT-4.7.2-1]
        var i = 0
        while i < f.count {
            if f[i] == [0x23] { return true }
            guard i < t.count, f[i] == [0x2B] || f[i] == t[i] else { return false }
            i += 1
        }
        return i == t.count
    }
}
