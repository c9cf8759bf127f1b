// Whether one topic filter matches one topic name, on the raw bytes (section 4.7): `+` matches one
// level, `#` the rest (including the parent level), and filters starting with a wildcard do not
// match topics starting with `$` [MQTT-4.7.2-1]. The trie matches many filters at once; this is
// for checking a single filter against a few topics (replaying recent messages to a new route).

public enum TopicMatch {
    /// True when `filter` (a valid topic filter) matches `topic` (a valid topic name).
    public static func matches(filter: UnsafeRawBufferPointer, topic: UnsafeRawBufferPointer) -> Bool {
        let slash = UInt8(ascii: "/"), plus = UInt8(ascii: "+"), hash = UInt8(ascii: "#")
        if let first = topic.first, first == UInt8(ascii: "$"), let f = filter.first, f == plus || f == hash { return false }
        var f = 0, t = 0
        while f < filter.count {
            let c = filter[f]
            if c == hash { return true }  // `#` is the last level: the rest (or nothing) matches
            if c == plus {
                // One whole level of the topic (possibly empty).
                while t < topic.count && topic[t] != slash { t += 1 }
                f += 1
            } else {
                // A literal level: byte for byte up to the next `/`.
                while f < filter.count && filter[f] != slash {
                    guard t < topic.count, topic[t] == filter[f] else { return false }
                    f += 1
                    t += 1
                }
                if t < topic.count && topic[t] != slash { return false }
            }
            // Both at a level end: the end of both, or a `/` in both.
            if f == filter.count { return t == topic.count }
            // filter[f] == "/"
            f += 1
            if t == topic.count {
                // The topic ended: only a trailing `#` still matches ("a/#" matches "a").
                return f < filter.count && filter[f] == hash
            }
            t += 1  // past the topic's "/"
            if f == filter.count { return t == topic.count }  // an empty last level ("a/")
        }
        return t == topic.count
    }

    /// `matches` on Swift strings (tests, configuration).
    public static func matches(filter: String, topic: String) -> Bool {
        var f = filter, t = topic
        return f.withUTF8 { fb in t.withUTF8 { tb in matches(filter: UnsafeRawBufferPointer(fb), topic: UnsafeRawBufferPointer(tb)) } }
    }
}
