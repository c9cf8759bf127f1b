// A shard's cache of trie matches by topic name. Publishers mostly repeat their topics (a sensor,
// a bench pair), so the walk of the trie, the copies of each matching filter's subscriber list and
// their sort by connection are done once per topic and trie generation, not once per message.
//
// Direct-mapped: a topic's hash picks one entry. An entry is current while the trie's generation
// is the one it was filled at (any subscribe, unsubscribe or route change anywhere on the shard
// makes every entry stale). A topic is stored at its second miss in a row on its entry, so a
// stream of never-repeated topics (ids in the topic) does not rewrite entries and allocates
// nothing; a stale entry of the same topic is refilled at once. Refilling reuses the entry's
// arrays, so a steady workload allocates only while the cache warms up.

import Codec
import Router

struct MatchCache {
    struct Entry {
        var hash: UInt64 = 0
        /// The trie generation the entry was filled at; `.max` = never filled.
        var generation: UInt64 = .max
        var topic: [UInt8] = []
        /// Local subscribers, sorted by connection slot (deliveries group them per client).
        var local: [LocalSubscriber] = []
        var remote: ShardSet = .empty
        var shared: [SharedGroup] = []
    }

    /// Entries (a power of two of them).
    private(set) var entries: [Entry]
    /// Per entry: the hash of the last topic that missed without being stored (admission).
    private var missed: [UInt64]
    private let mask: Int
    /// Lookups answered from the cache, and not.
    private(set) var hits: UInt64 = 0
    private(set) var misses: UInt64 = 0

    /// `capacity` is rounded up to a power of two; 0 disables the cache.
    init(capacity: Int) {
        let size = capacity <= 0 ? 0 : 1 << (Int.bitWidth - (capacity - 1).leadingZeroBitCount)
        entries = Array(repeating: Entry(), count: size)
        missed = Array(repeating: 0, count: size)
        mask = size - 1
    }

    var isEnabled: Bool { !entries.isEmpty }

    /// A hash of the topic bytes, 8 at a time.
    @inline(__always)
    static func hash(_ topic: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(topic.count)
        var i = 0
        let n = topic.count
        while i + 8 <= n {
            h = (h ^ topic.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            i += 8
        }
        if i < n {
            var tail: UInt64 = 0
            if n >= 8 {
                // The last 8 bytes, overlapping the chunk before: one load instead of a byte loop.
                tail = topic.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
            } else {
                var shift: UInt64 = 0
                while i < n { tail |= UInt64(topic[i]) << shift; shift += 8; i += 1 }
            }
            h = (h ^ tail) &* 0xFF51_AFD7_ED55_8CCD
        }
        h ^= h >> 29
        return h
    }

    /// Byte equality of two buffers of the same length, 8 bytes at a time.
    @inline(__always)
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        let n = a.count
        var i = 0
        while i + 8 <= n {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        if i < n && n >= 8 {
            return a.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        }
        while i < n {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    @inline(__always)
    func index(of hash: UInt64) -> Int { Int(truncatingIfNeeded: hash) & mask }

    /// The entry holding the current match of `topic`, or nil.
    @inline(__always)
    mutating func lookup(_ topic: UnsafeRawBufferPointer, hash: UInt64, generation: UInt64) -> Int? {
        let i = index(of: hash)
        let hit = entries[i].hash == hash && entries[i].generation == generation
            && entries[i].topic.count == topic.count
            && entries[i].topic.withUnsafeBytes { MatchCache.equal($0, topic) }
        if hit { hits &+= 1; return i }
        misses &+= 1
        return nil
    }

    /// Whether a missed topic should be stored now: it missed on its entry just before, or the
    /// entry holds a stale match of it.
    @inline(__always)
    mutating func admits(hash: UInt64) -> Bool {
        let i = index(of: hash)
        if missed[i] == hash || entries[i].hash == hash { return true }
        missed[i] = hash
        return false
    }

    /// Stores a match (the local subscribers already sorted by slot).
    mutating func store(_ topic: UnsafeRawBufferPointer, hash: UInt64, generation: UInt64,
                        local: [LocalSubscriber], remote: ShardSet, shared: [SharedGroup]) {
        let i = index(of: hash)
        entries[i].hash = hash
        entries[i].generation = generation
        entries[i].topic.removeAll(keepingCapacity: true)
        entries[i].topic.append(contentsOf: topic)
        entries[i].local.removeAll(keepingCapacity: true)
        entries[i].local.append(contentsOf: local)
        entries[i].remote = remote
        entries[i].shared.removeAll(keepingCapacity: true)
        entries[i].shared.append(contentsOf: shared)
        missed[i] = 0
    }
}
