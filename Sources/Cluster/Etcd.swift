// etcd's v3 API over its HTTP/1.1 + JSON gateway (etcd 3.4, Debian etcd-server), sans-IO: the
// requests membership needs and the decoding of their answers. Keys and values travel base64;
// int64 fields come back as strings; fields at their default value are left out of answers (a
// PUT watch event has no "type", a dead lease's keep-alive no "TTL").
//
//   POST /v3/lease/grant      {"TTL":n}                       → {"ID":"…","TTL":"…"}
//   POST /v3/lease/keepalive  {"ID":"…"}                      → {"result":{"ID":"…","TTL":"…"}}
//   POST /v3/lease/revoke     {"ID":"…"}
//   POST /v3/kv/put           {"key":b64,"value":b64,"lease":"…"}
//   POST /v3/kv/range         {"key":b64,"range_end":b64}     → {"header":{"revision":"…"},"kvs":[…]}
//   POST /v3/watch            {"create_request":{"key","range_end","start_revision"}}
//                             → a stream of {"result":{"events":[…],"compact_revision","canceled"}}

import ApusCrypto
import HTTP1

public enum Etcd {
    /// One request: its path and JSON body.
    public struct Request: Equatable, Sendable {
        public var path: String
        public var body: String

        /// The whole HTTP/1.1 request for `host` (kept alive).
        public func bytes(host: String) -> [UInt8] {
            let body = Array(self.body.utf8)
            let head = "POST \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.count)\r\n\r\n"
            return Array(head.utf8) + body
        }
    }

    public static func grant(ttl: Int) -> Request {
        Request(path: "/v3/lease/grant", body: #"{"TTL":\#(ttl)}"#)
    }

    public static func keepAlive(lease: Int64) -> Request {
        Request(path: "/v3/lease/keepalive", body: #"{"ID":"\#(lease)"}"#)
    }

    public static func revoke(lease: Int64) -> Request {
        Request(path: "/v3/lease/revoke", body: #"{"ID":"\#(lease)"}"#)
    }

    public static func put(key: String, value: String, lease: Int64) -> Request {
        Request(path: "/v3/kv/put", body: JSONValue.object([
            ("key", .string(Base64.encode(Array(key.utf8)))),
            ("value", .string(Base64.encode(Array(value.utf8)))),
            ("lease", .string(String(lease))),
        ]).serialized())
    }

    /// Every key under `prefix`.
    public static func range(prefix: String) -> Request {
        Request(path: "/v3/kv/range", body: JSONValue.object([
            ("key", .string(Base64.encode(Array(prefix.utf8)))),
            ("range_end", .string(Base64.encode(prefixEnd(prefix)))),
        ]).serialized())
    }

    /// A watch of every key under `prefix` from `revision` on (inclusive).
    public static func watch(prefix: String, from revision: Int64) -> Request {
        Request(path: "/v3/watch", body: JSONValue.object([
            ("create_request", .object([
                ("key", .string(Base64.encode(Array(prefix.utf8)))),
                ("range_end", .string(Base64.encode(prefixEnd(prefix)))),
                ("start_revision", .string(String(revision))),
            ])),
        ]).serialized())
    }

    /// The end of a prefix range: the prefix with its last byte incremented (etcd's convention).
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF { bytes[bytes.count - 1] = last + 1; return bytes }
            bytes.removeLast()
        }
        return [0]
    }

    // MARK: answers

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { "etcd: \(message)" }
    }

    public struct KeyValue: Equatable, Sendable {
        public var key: String
        public var value: [UInt8]
        public var modRevision: Int64
    }

    static func parse(_ body: [UInt8]) throws(Failure) -> JSONValue {
        guard let json = JSONValue.parse(body) else { throw Failure("answer is not JSON") }
        if let error = json["error"]?.string ?? json["message"]?.string, json["header"] == nil {
            throw Failure(error)
        }
        return json
    }

    static func int64(_ value: JSONValue?) -> Int64? {
        switch value {
        case .string(let s)?: return Int64(s)
        case .number(let n)?: return Int64(exactly: n)
        default: return nil
        }
    }

    /// A lease grant's ID and TTL.
    public static func decodeGrant(_ body: [UInt8]) throws(Failure) -> (lease: Int64, ttl: Int) {
        let json = try parse(body)
        guard let id = int64(json["ID"]), let ttl = int64(json["TTL"]), ttl > 0 else {
            throw Failure(json["error"]?.string ?? "lease not granted")
        }
        return (id, Int(ttl))
    }

    /// A keep-alive's remaining TTL: nil when the lease no longer exists (it expired).
    public static func decodeKeepAlive(_ body: [UInt8]) throws(Failure) -> Int? {
        let json = try parse(body)
        let result = json["result"] ?? json
        guard let ttl = int64(result["TTL"]), ttl > 0 else { return nil }
        return Int(ttl)
    }

    /// A range's keys and the store's revision.
    public static func decodeRange(_ body: [UInt8]) throws(Failure) -> (kvs: [KeyValue], revision: Int64) {
        let json = try parse(body)
        guard let revision = int64(json["header"]?["revision"]) else { throw Failure("range answer without revision") }
        var kvs: [KeyValue] = []
        if case .array(let items)? = json["kvs"] {
            for item in items {
                if let kv = keyValue(item) { kvs.append(kv) }
            }
        }
        return (kvs, revision)
    }

    static func keyValue(_ item: JSONValue) -> KeyValue? {
        guard let key64 = item["key"]?.string, let key = Base64.decode(key64) else { return nil }
        let value = item["value"]?.string.flatMap { Base64.decode($0) } ?? []
        return KeyValue(key: String(decoding: key, as: UTF8.self), value: value, modRevision: int64(item["mod_revision"]) ?? 0)
    }

    /// One message of a watch stream.
    public enum WatchMessage: Equatable, Sendable {
        case created
        case put(KeyValue)
        case delete(key: String, revision: Int64)
        /// The watch ended; `compactedAt` > 0: the revision asked for was compacted (re-read all).
        case canceled(compactedAt: Int64)
        /// The store's revision with no event (progress).
        case progress(revision: Int64)
    }

    /// Decodes one line of a watch stream into its messages, in order.
    public static func decodeWatch(_ line: [UInt8]) throws(Failure) -> [WatchMessage] {
        let json = try parse(line)
        guard let result = json["result"] else { throw Failure(json["error"]?["message"]?.string ?? "watch answer without result") }
        var out: [WatchMessage] = []
        if result["created"]?.bool == true { out.append(.created) }
        if case .array(let events)? = result["events"] {
            for event in events {
                guard let kvJSON = event["kv"], let kv = keyValue(kvJSON) else { continue }
                if event["type"]?.string == "DELETE" {
                    out.append(.delete(key: kv.key, revision: kv.modRevision))
                } else {
                    out.append(.put(kv))
                }
            }
        }
        if result["canceled"]?.bool == true {
            out.append(.canceled(compactedAt: int64(result["compact_revision"]) ?? 0))
        } else if out.isEmpty, let revision = int64(result["header"]?["revision"]) {
            out.append(.progress(revision: revision))
        }
        return out
    }
}

/// Splits a byte stream into lines (a watch stream's JSON objects, one per line), bounded.
public struct LineSplitter {
    private var pending: [UInt8] = []
    public let maximumLine: Int

    public init(maximumLine: Int = 4 << 20) { self.maximumLine = maximumLine }

    public struct TooLong: Error {}

    /// Appends bytes; returns the whole lines they complete (without the newline; empty ones skipped).
    public mutating func feed(_ bytes: [UInt8]) throws(TooLong) -> [[UInt8]] {
        pending.append(contentsOf: bytes)
        var lines: [[UInt8]] = []
        var start = 0
        while let nl = pending[start...].firstIndex(of: 10) {
            var line = Array(pending[start..<nl])
            if line.last == 13 { line.removeLast() }
            if !line.isEmpty { lines.append(line) }
            start = nl + 1
        }
        pending.removeFirst(start)
        if pending.count > maximumLine { throw TooLong() }
        return lines
    }
}
