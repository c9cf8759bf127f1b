// Topic access control in mosquitto's acl_file format:
//
//     # rules before the first `user` line apply to anonymous clients
//     topic read $SYS/#
//     user alice
//     topic readwrite sensors/#
//     topic deny sensors/secret
//     pattern write devices/%c/status      # every client; %c client id, %u user name
//
// Once an ACL is configured everything not granted is denied, and a matching `deny` wins over any
// grant. Rules are resolved per connection at CONNECT (`ClientAccess`), so checks on the data path
// only walk that client's few filters, on the shard that owns the connection, without locks.

import ApusBase
import Codec
import Router

/// What a rule grants.
public enum TopicAccess: Sendable, Equatable {
    case read, write, readWrite, deny

    var grantsRead: Bool { self == .read || self == .readWrite }
    var grantsWrite: Bool { self == .write || self == .readWrite }
}

/// A parsed ACL file.
public struct AccessControlList: Sendable {
    struct Rule: Sendable {
        var access: TopicAccess
        var filter: String
    }
    /// `topic` rules before any `user` line.
    var anonymous: [Rule] = []
    /// `topic` rules per user.
    var users: [String: [Rule]] = [:]
    /// `pattern` rules, for every client.
    var patterns: [Rule] = []

    public init() {}

    /// Parses the file's text; errors name the line.
    public init(text: String) throws(LineError) {
        var currentUser: String? = nil
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            while let last = line.last, last == "\r" || last == " " || last == "\t" { line = line.dropLast() }
            while let first = line.first, first == " " || first == "\t" { line = line.dropFirst() }
            if line.isEmpty || line.first == "#" { continue }
            let keyEnd = line.firstIndex(where: { $0 == " " || $0 == "\t" }) ?? line.endIndex
            let key = line[..<keyEnd]
            var rest = line[keyEnd...].drop(while: { $0 == " " || $0 == "\t" })
            switch key {
            case "user":
                guard !rest.isEmpty else { throw LineError(line: lineNumber, message: "user needs a name") }
                currentUser = String(rest)
            case "topic", "pattern":
                // `topic [read|write|readwrite|deny] FILTER`; the filter may contain spaces.
                var access = TopicAccess.readWrite
                let wordEnd = rest.firstIndex(where: { $0 == " " || $0 == "\t" }) ?? rest.endIndex
                let word = rest[..<wordEnd]
                let named: [Substring: TopicAccess] = ["read": .read, "write": .write, "readwrite": .readWrite, "deny": .deny]
                if let a = named[word], wordEnd != rest.endIndex {
                    access = a
                    rest = rest[wordEnd...].drop(while: { $0 == " " || $0 == "\t" })
                }
                let filter = String(rest)
                guard !filter.isEmpty, TopicValidation.isValidPlainFilter(Array(filter.utf8)) else {
                    throw LineError(line: lineNumber, message: "invalid topic filter '\(filter)'")
                }
                let rule = Rule(access: access, filter: filter)
                if key == "pattern" {
                    patterns.append(rule)
                } else if let user = currentUser {
                    users[user, default: []].append(rule)
                } else {
                    anonymous.append(rule)
                }
            default:
                throw LineError(line: lineNumber, message: "unknown keyword '\(key)' (user, topic, pattern)")
            }
        }
    }

    /// The rules of one client, with `%c` and `%u` substituted (a pattern with `%u` does not apply to
    /// a client without a user name, nor does one whose substitution would add wildcards or levels).
    public func access(username: String?, clientID: String) -> ClientAccess {
        var rules = username.map { users[$0] ?? [] } ?? anonymous
        let safe: (String) -> Bool = { !$0.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" }) }
        for pattern in patterns {
            if pattern.filter.contains("%u") && (username == nil || !safe(username!)) { continue }
            if pattern.filter.contains("%c") && !safe(clientID) { continue }
            var filter = ""
            var rest = Substring(pattern.filter)
            while let percent = rest.firstIndex(of: "%") {
                filter += rest[..<percent]
                let code = rest[percent...].prefix(2)
                if code == "%c" { filter += clientID } else if code == "%u" { filter += username ?? "" } else { filter += code }
                rest = rest[rest.index(percent, offsetBy: code.count)...]
            }
            rules.append(Rule(access: pattern.access, filter: filter + rest))
        }
        return ClientAccess(rules: rules)
    }
}


/// One client's resolved rules (topic filters split into levels).
public final class ClientAccess: Sendable {
    // A class: a connection slot holds one reference (8 bytes) instead of the filter arrays.
    // Topics are matched on the raw bytes by the broker's one matcher (Router's TopicMatch); the
    // level arrays serve the filter-to-filter relations of `canSubscribe`.
    private let readFilters: [[UInt8]]
    private let writeFilters: [[UInt8]]
    private let denyFilters: [[UInt8]]
    private let readLevels: [[Substring]]
    private let denyLevels: [[Substring]]

    init(rules: [AccessControlList.Rule]) {
        var read: [[UInt8]] = [], write: [[UInt8]] = [], deny: [[UInt8]] = []
        var readLevels: [[Substring]] = [], denyLevels: [[Substring]] = []
        for rule in rules {
            let bytes = Array(rule.filter.utf8)
            let levels = rule.filter.split(separator: "/", omittingEmptySubsequences: false)
            if rule.access == .deny { deny.append(bytes); denyLevels.append(levels) }
            if rule.access.grantsRead { read.append(bytes); readLevels.append(levels) }
            if rule.access.grantsWrite { write.append(bytes) }
        }
        readFilters = read; writeFilters = write; denyFilters = deny
        self.readLevels = readLevels; self.denyLevels = denyLevels
    }

    /// Whether any deny rule applies to this client.
    public var hasDenyRules: Bool { !denyFilters.isEmpty }

    /// Whether the client may publish to `topic`.
    public func canPublish(_ topic: UnsafeRawBufferPointer) -> Bool {
        !Self.anyMatches(denyFilters, topic) && Self.anyMatches(writeFilters, topic)
    }

    /// Whether a message on `topic` may be delivered to the client.
    public func canReceive(_ topic: UnsafeRawBufferPointer) -> Bool {
        !Self.anyMatches(denyFilters, topic) && Self.anyMatches(readFilters, topic)
    }

    private static func anyMatches(_ filters: [[UInt8]], _ topic: UnsafeRawBufferPointer) -> Bool {
        for filter in filters where filter.withUnsafeBytes({ TopicMatch.matches(filter: $0, topic: topic) }) { return true }
        return false
    }

    /// Whether the client may subscribe to `filter`: refused when no read rule matches any topic
    /// of it, or a deny rule matches all of them (it could never receive anything). A filter only
    /// partly readable (`#` with `topic read sensors/#`) is granted and its deliveries are checked
    /// one by one (`needsDeliveryCheck`), like mosquitto, which grants every subscription and
    /// filters at delivery.
    public func canSubscribe(_ filter: String) -> (allowed: Bool, needsDeliveryCheck: Bool) {
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        var partlyDenied = false
        for deny in denyLevels {
            if Self.covers(deny, levels) { return (false, false) }
            if Self.overlaps(deny, levels) { partlyDenied = true }
        }
        if readLevels.contains(where: { Self.covers($0, levels) }) { return (true, partlyDenied) }
        if readLevels.contains(where: { Self.overlaps($0, levels) }) { return (true, true) }
        return (false, false)
    }

    /// Whether every topic that `inner` matches is matched by `outer`.
    static func covers(_ outer: [Substring], _ inner: [Substring]) -> Bool {
        if let first = inner.first, first.hasPrefix("$"), let o = outer.first, o == "+" || o == "#" { return false }
        var i = 0
        while i < outer.count {
            if outer[i] == "#" { return true }
            guard i < inner.count, inner[i] != "#" else { return false }
            if outer[i] != "+" && (inner[i] == "+" || outer[i] != inner[i]) { return false }
            i += 1
        }
        return i == inner.count
    }

    /// Whether some topic is matched by both filters.
    static func overlaps(_ a: [Substring], _ b: [Substring]) -> Bool {
        var i = 0
        while i < a.count && i < b.count {
            if a[i] == "#" || b[i] == "#" { return true }
            if a[i] != "+" && b[i] != "+" && a[i] != b[i] { return false }
            i += 1
        }
        if a.count == b.count { return true }
        // "x/#" also matches "x": one filter may end where the other has only "#" left.
        let longer = a.count > b.count ? a : b
        return longer.count == i + 1 && longer[i] == "#"
    }
}
