// UTF-8 rules of [MQTT-1.5.4] and topic name / topic filter validation [MQTT-4.7].

public enum TopicValidation {
    /// True when `bytes` is well-formed UTF-8 (no overlongs, no surrogates, nothing above
    /// U+10FFFF) without U+0000. Control characters U+0001..U+001F and U+007F..U+009F are allowed
    /// (the spec says SHOULD NOT, a receiver MAY close; brokers accept them).
    @inlinable
    public static func isValidMQTTString(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var i = 0
        while i < count {
            let b = bytes[i]
            if b >= 0x01 && b < 0x80 { i += 1; continue }
            if b == 0 { return false }
            if !validateMultibyte(bytes, &i) { return false }
        }
        return true
    }

    @usableFromInline
    static func validateMultibyte(_ bytes: UnsafeRawBufferPointer, _ i: inout Int) -> Bool {
        let count = bytes.count
        let b0 = bytes[i]
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        let continuation: Int
        switch b0 {
        case 0xC2...0xDF: continuation = 1
        case 0xE0: continuation = 2; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: continuation = 2
        case 0xED: continuation = 2; upper = 0x9F  // U+D800..U+DFFF are surrogates
        case 0xF0: continuation = 3; lower = 0x90
        case 0xF1...0xF3: continuation = 3
        case 0xF4: continuation = 3; upper = 0x8F
        default: return false
        }
        if i + continuation >= count { return false }  // truncated sequence
        let b1 = bytes[i + 1]
        if b1 < lower || b1 > upper { return false }
        var k = 2
        while k <= continuation {
            let b = bytes[i + k]
            if b < 0x80 || b > 0xBF { return false }
            k += 1
        }
        i += continuation + 1
        return true
    }

    /// A PUBLISH topic name: 1...65535 bytes, valid MQTT string, no `+` or `#`.
    @inlinable
    public static func isValidTopicName(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count > 0 && count <= 65_535 else { return false }
        // Eight bytes at a time while they are plain ASCII without NUL, `+` or `#` (every topic on
        // the publish path, nearly always): one pass instead of two byte loops.
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var i = 0
        while i + 8 <= count {
            let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if w & highs != 0 { break }  // a non-ASCII byte: the byte loop validates it
            // With every byte below 0x80, (x - 0x01…01) sets a byte's high bit only at a zero byte
            // (or above one, through the borrow): zero bytes of w, w ^ "+…+" and w ^ "#…#".
            let zero = (w &- ones) | ((w ^ (ones &* 0x2B)) &- ones) | ((w ^ (ones &* 0x23)) &- ones)
            if zero & highs != 0 { break }
            i += 8
        }
        while i < count {
            let b = bytes[i]
            if b >= 0x01 && b < 0x80 {
                if b == UInt8(ascii: "+") || b == UInt8(ascii: "#") { return false }
                i += 1
                continue
            }
            if b == 0 { return false }
            // A multi-byte sequence: its bytes are all >= 0x80, so none is `+` or `#`.
            if !validateMultibyte(bytes, &i) { return false }
        }
        return true
    }

    /// A topic filter: non-empty, `#` only as the whole last level, `+` only as a whole level.
    /// A `$share/{group}/{filter}` filter needs a non-empty group without `+ # /` and a valid filter.
    public static func isValidTopicFilter(_ filter: String) -> Bool {
        if filter.hasPrefix("$share/") || filter.hasPrefix("$queue/") { return SharedSubscriptionFilter(filter) != nil }
        return isValidPlainFilter(Array(filter.utf8))
    }

    public static func isValidPlainFilter(_ bytes: [UInt8]) -> Bool {
        guard !bytes.isEmpty && bytes.count <= 65_535 else { return false }
        guard bytes.withUnsafeBytes({ isValidMQTTString($0) }) else { return false }
        let levels = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for (index, level) in levels.enumerated() {
            if level.contains(UInt8(ascii: "#")) {
                if level.count != 1 || index != levels.count - 1 { return false }
            }
            if level.contains(UInt8(ascii: "+")) && level.count != 1 { return false }
        }
        return true
    }
}

/// A parsed `$share/{group}/{filter}` subscription (MQTT 5, also EMQX's syntax), or EMQX's
/// `$queue/{filter}`, which is a shared subscription of the group `$queue`.
public struct SharedSubscriptionFilter: Hashable, Sendable {
    public var group: String
    public var filter: String

    /// Parses a shared filter; nil when `filter` is not a `$share/` or `$queue/` filter, or is invalid.
    public init?(_ filter: String) {
        if filter.hasPrefix("$queue/") {
            let inner = Array(filter.utf8.dropFirst(7))
            guard TopicValidation.isValidPlainFilter(inner) else { return nil }
            self.group = "$queue"
            self.filter = String(decoding: inner, as: UTF8.self)
            return
        }
        let bytes = Array(filter.utf8)
        let prefix = Array("$share/".utf8)
        guard bytes.count > prefix.count, Array(bytes[0..<prefix.count]) == prefix else { return nil }
        let rest = bytes[prefix.count...]
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        let group = Array(rest[rest.startIndex..<slash])
        let inner = Array(rest[(slash + 1)...])
        guard !group.isEmpty,
              !group.contains(UInt8(ascii: "+")), !group.contains(UInt8(ascii: "#")),
              TopicValidation.isValidPlainFilter(inner),
              group.withUnsafeBytes({ TopicValidation.isValidMQTTString($0) }) else { return nil }
        self.group = String(decoding: group, as: UTF8.self)
        self.filter = String(decoding: inner, as: UTF8.self)
    }
}
