// Topic Aliases the broker assigns towards one v5 client: the first PUBLISH on a topic carries the
// topic and a new alias, later ones the alias and an empty topic [MQTT-3.3.2.3.4].

import Codec

/// Topic name → alias for one connection. Aliases go to the first `maximum` distinct topics the
/// client receives and stay for the life of the connection: a topic that arrives when all aliases
/// are taken is sent in full. (Reassigning an alias costs a full topic on the wire each time, so
/// with more topics than aliases a first-come table keeps the hits where an LRU would thrash.)
struct OutboundTopicAliases {
    /// Aliases this connection may use (min of the client's Topic Alias Maximum and the broker's).
    let maximum: UInt16
    /// Topic of alias `i + 1`.
    private var topics: [[UInt8]] = []
    /// Open-addressed hash table of alias numbers (0 = empty); twice `maximum`, a power of two.
    private var table: [UInt16] = []

    init(maximum: UInt16 = 0) { self.maximum = maximum }

    /// The alias for `topic`, and whether the client already knows it; nil when there is no alias
    /// for it and none left to assign.
    @inline(__always)
    mutating func alias(for topic: UnsafeRawBufferPointer) -> (alias: UInt16, known: Bool)? {
        guard maximum > 0, topic.count > 0 else { return nil }
        if table.isEmpty {
            var size = 8
            while size < Int(maximum) * 2 { size <<= 1 }
            table = Array(repeating: 0, count: size)
            topics.reserveCapacity(Int(maximum))
        }
        let mask = table.count - 1
        var i = Int(truncatingIfNeeded: Self.hash(topic)) & mask
        while true {
            let alias = table[i]
            if alias == 0 { break }
            if topics[Int(alias) - 1].withUnsafeBytes({ $0.elementsEqual(topic) }) { return (alias, true) }
            i = (i + 1) & mask
        }
        guard topics.count < Int(maximum) else { return nil }
        topics.append(Array(topic))
        let alias = UInt16(topics.count)
        table[i] = alias
        return (alias, false)
    }

    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }
}
