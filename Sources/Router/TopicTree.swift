// A tree of concrete topic names (no wildcards), each holding a value, that answers "which
// stored topics does this filter match?" — the retained-message lookup on SUBSCRIBE.
// Keyed by bytes like the subscription trie: a level is found through the shared ChildTable
// (parent, FNV-1a of the level) with a collision chain, and every node also links its children
// in a list, which the `+` and `#` walks follow. The levels' bytes sit in one array (compacted
// when half of it belongs to removed nodes). No String, no Dictionary and no allocation per level:
// loading a million retained messages at start is a hash probe and a node per new level.

import ApusBase
#if canImport(Glibc)
import Glibc
#endif

/// Topic names → values, searchable by topic filter.
public struct TopicTree<Value> {
    // Inlinable (with what it touches), so each user's Value is specialised.
    @usableFromInline struct Node {
        /// The level's bytes in `levelBytes`.
        @usableFromInline var levelStart: Int
        @usableFromInline var levelCount: Int32
        @usableFromInline var parent: Int32
        /// Next node with the same (parent, hash): the collision chain.
        @usableFromInline var nextCollision: Int32 = -1
        /// The children as a doubly linked list (for the wildcard walks and pruning).
        @usableFromInline var firstChild: Int32 = -1
        @usableFromInline var nextSibling: Int32 = -1
        @usableFromInline var previousSibling: Int32 = -1
        @usableFromInline var value: Value? = nil
        /// `value != nil`, without copying the value out to test it.
        @usableFromInline var occupied = false

        @inlinable init(levelStart: Int, levelCount: Int32, parent: Int32) {
            self.levelStart = levelStart; self.levelCount = levelCount; self.parent = parent
        }
    }

    @usableFromInline var nodes: [Node] = [Node(levelStart: 0, levelCount: 0, parent: -1)]
    @usableFromInline var levelBytes: [UInt8] = []
    /// Bytes of `levelBytes` that removed nodes left behind.
    @usableFromInline var garbageBytes = 0
    @usableFromInline var children = ChildTable()
    @usableFromInline var freeNodes: [Int32] = []
    @usableFromInline var stored = 0
    /// Applied to every level hash; tests set it to 0 to force collisions.
    @usableFromInline var hashMask: UInt64 = ~0
    /// Topics with a value.
    public var count: Int { stored }

    public init() {}

    /// A tree whose level hashes are masked (tests: `hashMask: 0` makes every level collide).
    init(hashMask: UInt64) { self.hashMask = hashMask }

    /// Room for about `topics` more topics (a load at start), so the tables grow once.
    @inlinable public mutating func reserveCapacity(_ topics: Int) {
        nodes.reserveCapacity(nodes.count + topics + topics / 8)
        children.reserveCapacity(children.count + topics + topics / 8)
    }

    // MARK: lookup and update

    @inlinable func levelHash(_ level: UnsafeRawBufferPointer) -> UInt64 { FNV1a.hash(level, 0, level.count) & hashMask }

    @inlinable func level(of node: Int32, equals level: UnsafeRawBufferPointer) -> Bool {
        let n = nodes[Int(node)]
        guard Int(n.levelCount) == level.count else { return false }
        if level.isEmpty { return true }
        return levelBytes.withUnsafeBytes { memcmp($0.baseAddress! + n.levelStart, level.baseAddress!, level.count) == 0 }
    }

    /// Whether the node's level starts with `$` (not matched by a first-level wildcard).
    @inlinable func isDollar(_ node: Int32) -> Bool {
        let n = nodes[Int(node)]
        return n.levelCount > 0 && levelBytes[n.levelStart] == UInt8(ascii: "$")
    }

    @inlinable func child(of parent: Int32, level: UnsafeRawBufferPointer) -> Int32? {
        var c = children.find(parent: parent, hash: levelHash(level)) ?? -1
        while c >= 0 {
            if self.level(of: c, equals: level) { return c }
            c = nodes[Int(c)].nextCollision
        }
        return nil
    }

    @inlinable mutating func addChild(of parent: Int32, level: UnsafeRawBufferPointer) -> Int32 {
        let hash = levelHash(level)
        var node = Node(levelStart: levelBytes.count, levelCount: Int32(level.count), parent: parent)
        levelBytes.append(contentsOf: level)
        node.nextCollision = children.find(parent: parent, hash: hash) ?? -1
        node.nextSibling = nodes[Int(parent)].firstChild
        let index: Int32
        if let reused = freeNodes.popLast() {
            index = reused
            nodes[Int(index)] = node
        } else {
            index = Int32(nodes.count)
            nodes.append(node)
        }
        if node.nextSibling >= 0 { nodes[Int(node.nextSibling)].previousSibling = index }
        nodes[Int(parent)].firstChild = index
        children.set(parent: parent, hash: hash, node: index)
        return index
    }

    /// Calls `body` with each level of `topic` (split at `/`, empty levels included).
    @inlinable @inline(__always)
    static func forEachLevel(_ topic: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var start = 0
        var i = 0
        let count = topic.count
        while i <= count {
            if i == count || topic[i] == UInt8(ascii: "/") {
                guard body(UnsafeRawBufferPointer(rebasing: topic[start..<i])) else { return }
                start = i + 1
            }
            i += 1
        }
    }

    @inlinable func find(_ topic: UnsafeRawBufferPointer) -> Int32? {
        var index: Int32? = 0
        TopicTree.forEachLevel(topic) { level in
            index = child(of: index!, level: level)
            return index != nil
        }
        return index
    }

    /// The value stored for exactly this topic (UTF-8 bytes).
    @inlinable public func value(forTopic topic: UnsafeRawBufferPointer) -> Value? {
        guard let index = find(topic) else { return nil }
        return nodes[Int(index)].value
    }

    /// The value stored for exactly this topic.
    @inlinable public func value(forTopic topic: String) -> Value? {
        var t = topic
        return t.withUTF8 { value(forTopic: UnsafeRawBufferPointer($0)) }
    }

    /// Stores (or with nil, removes) the value of a topic; removal prunes empty nodes.
    @inlinable public mutating func set(_ value: Value?, forTopic topic: String) {
        update(forTopic: topic) { $0 = value }
    }

    @inlinable public mutating func update(forTopic topic: String, _ body: (inout Value?) -> Void) {
        var t = topic
        t.withUTF8 { update(forTopic: UnsafeRawBufferPointer($0), body) }
    }

    /// Calls `body` with the topic's value in place (nil: none), in one walk: it may read it, replace
    /// it or remove it (nil); removal prunes empty nodes.
    @inlinable public mutating func update(forTopic topic: UnsafeRawBufferPointer, _ body: (inout Value?) -> Void) {
        var index: Int32 = 0
        TopicTree.forEachLevel(topic) { level in
            index = child(of: index, level: level) ?? addChild(of: index, level: level)
            return true
        }
        let i = Int(index)
        let had = nodes[i].occupied
        body(&nodes[i].value)
        let has: Bool
        if case .some = nodes[i].value { has = true } else { has = false }
        nodes[i].occupied = has
        stored += (has ? 1 : 0) - (had ? 1 : 0)
        if !has { prune(from: index) }
    }

    /// Removes `start` and its ancestors while they hold neither a value nor children.
    @inlinable mutating func prune(from start: Int32) {
        var index = start
        defer { if garbageBytes > 4096 && garbageBytes * 2 > levelBytes.count { compactLevels() } }
        while index != 0 {
            let node = nodes[Int(index)]
            guard !node.occupied && node.firstChild < 0 else { return }
            let parent = node.parent
            let hash = levelBytes.withUnsafeBytes { levelHash(UnsafeRawBufferPointer(rebasing: $0[node.levelStart..<node.levelStart + Int(node.levelCount)])) }
            let head = children.find(parent: parent, hash: hash)!
            if head == index {
                if node.nextCollision >= 0 {
                    children.set(parent: parent, hash: hash, node: node.nextCollision)
                } else {
                    children.remove(parent: parent, hash: hash)
                }
            } else {
                var previous = head
                while nodes[Int(previous)].nextCollision != index { previous = nodes[Int(previous)].nextCollision }
                nodes[Int(previous)].nextCollision = node.nextCollision
            }
            if node.previousSibling >= 0 {
                nodes[Int(node.previousSibling)].nextSibling = node.nextSibling
            } else {
                nodes[Int(parent)].firstChild = node.nextSibling
            }
            if node.nextSibling >= 0 { nodes[Int(node.nextSibling)].previousSibling = node.previousSibling }
            garbageBytes += Int(node.levelCount)
            nodes[Int(index)] = Node(levelStart: 0, levelCount: 0, parent: -1)
            freeNodes.append(index)
            index = parent
        }
    }

    /// Copies the levels of the nodes in use to a new array, leaving the removed ones' behind.
    @usableFromInline mutating func compactLevels() {
        var compacted: [UInt8] = []
        compacted.reserveCapacity(levelBytes.count - garbageBytes)
        for i in nodes.indices where nodes[i].parent >= 0 {
            let start = nodes[i].levelStart
            nodes[i].levelStart = compacted.count
            compacted.append(contentsOf: levelBytes[start..<start + Int(nodes[i].levelCount)])
        }
        levelBytes = compacted
        garbageBytes = 0
    }

    /// Nodes in use, the root included (tests).
    var liveNodes: Int { nodes.count - freeNodes.count }

    // MARK: walks

    /// Calls `body` with every stored value, `$` topics included, in no particular order.
    @inlinable public func forEachValue(_ body: (Value) throws -> Void) rethrows {
        for node in nodes { if let value = node.value { try body(value) } }
    }

    /// The value of every topic that matches `filter` (with `+` and `#`). Topics starting with `$`
    /// are not matched by a first-level wildcard [MQTT-4.7.2-1].
    public func values(matching filter: String) -> [Value] {
        var out: [Value] = []
        walk(filter) { out.append(nodes[Int($0)].value!) }
        return out
    }

    /// Every (topic, value) whose topic matches `filter` (diagnostics and tests: the topic is
    /// rebuilt from the levels).
    public func matches(filter: String) -> [(topic: String, value: Value)] {
        var out: [(topic: String, value: Value)] = []
        walk(filter) { out.append((topic(of: $0), nodes[Int($0)].value!)) }
        return out
    }

    func topic(of node: Int32) -> String {
        var levels: [ArraySlice<UInt8>] = []
        var index = node
        while index > 0 {
            let n = nodes[Int(index)]
            levels.append(levelBytes[n.levelStart..<n.levelStart + Int(n.levelCount)])
            index = nodes[Int(index)].parent
        }
        return String(decoding: Array(levels.reversed().joined(separator: [UInt8(ascii: "/")])), as: UTF8.self)
    }

    /// Calls `found` with each occupied node whose topic matches `filter`.
    func walk(_ filter: String, _ found: (Int32) -> Void) {
        var levels: [[UInt8]] = []
        var f = filter
        f.withUTF8 { bytes in
            TopicTree.forEachLevel(UnsafeRawBufferPointer(bytes)) { levels.append(Array($0)); return true }
        }
        walk(0, levels, 0, found)
    }

    private func walk(_ index: Int32, _ filter: [[UInt8]], _ depth: Int, _ found: (Int32) -> Void) {
        if depth == filter.count {
            if nodes[Int(index)].occupied { found(index) }
            return
        }
        let level = filter[depth]
        if level == [UInt8(ascii: "#")] {
            // `#` matches the parent level too: `a/#` matches `a`.
            if depth > 0 && nodes[Int(index)].occupied { found(index) }
            collectAll(index, atRoot: depth == 0, found)
        } else if level == [UInt8(ascii: "+")] {
            var c = nodes[Int(index)].firstChild
            while c >= 0 {
                if !(depth == 0 && isDollar(c)) { walk(c, filter, depth + 1, found) }
                c = nodes[Int(c)].nextSibling
            }
        } else if let c = level.withUnsafeBytes({ child(of: index, level: $0) }) {
            walk(c, filter, depth + 1, found)
        }
    }

    /// Every occupied node below `index` (an explicit stack: a topic may have thousands of levels).
    private func collectAll(_ index: Int32, atRoot: Bool, _ found: (Int32) -> Void) {
        var stack: [Int32] = []
        var c = nodes[Int(index)].firstChild
        while c >= 0 {
            if !(atRoot && isDollar(c)) { stack.append(c) }
            c = nodes[Int(c)].nextSibling
        }
        while let n = stack.popLast() {
            if nodes[Int(n)].occupied { found(n) }
            var c = nodes[Int(n)].firstChild
            while c >= 0 {
                stack.append(c)
                c = nodes[Int(c)].nextSibling
            }
        }
    }
}
