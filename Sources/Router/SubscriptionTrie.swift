// The topic-filter trie: filters with `+` and `#` map to a value each; a topic name is matched
// against all filters in one walk without allocating. A value type: arrays give copy-on-write,
// so a copy is a snapshot that later updates do not change.

import ApusBase

/// Receives the value of every filter that matches a topic. Generic, so matching specializes.
public protocol TrieVisitor<Value> {
    associatedtype Value
    /// Called once per matching filter.
    mutating func visit(_ value: Value)
}

/// A topic-filter trie mapping MQTT topic filters to a `Value` per filter.
public struct SubscriptionTrie<Value> {
    @usableFromInline struct Node {
        /// The level's bytes (`+` and `#` nodes hold those characters).
        @usableFromInline var level: [UInt8]
        @usableFromInline var parent: Int32
        @usableFromInline var hash: UInt64
        @usableFromInline var plusChild: Int32 = -1
        @usableFromInline var hashChild: Int32 = -1
        /// Next literal sibling with the same (parent, hash): the collision chain.
        @usableFromInline var nextCollision: Int32 = -1
        @usableFromInline var childCount: Int32 = 0
        @usableFromInline var value: Value? = nil
        @usableFromInline var inUse = true

        @usableFromInline init(level: [UInt8], parent: Int32, hash: UInt64) {
            self.level = level; self.parent = parent; self.hash = hash
        }
    }

    @usableFromInline var nodes: [Node]
    /// Literal children: (parent, hash of level) → first node of the collision chain.
    @usableFromInline var children = ChildTable()
    @usableFromInline var freeNodes: [Int32] = []
    /// Applied to every level hash; tests set it to 0 to force collisions.
    @usableFromInline var hashMask: UInt64 = ~0
    @usableFromInline var filterCount = 0
    /// Filters with a value.
    public var count: Int { filterCount }
    /// Changes with every `update`: a result computed from the trie (a cached match) is current
    /// while the generation it was computed at is.
    @inlinable public var generation: UInt64 { _generation }
    @usableFromInline var _generation: UInt64 = 0

    public init() {
        nodes = [Node(level: [], parent: -1, hash: 0)]
    }

    /// A trie whose level hashes are masked (tests: `hashMask: 0` makes every level collide).
    init(hashMask: UInt64) {
        self.init()
        self.hashMask = hashMask
    }

    // MARK: matching

    /// Visits the value of every filter that matches `topic` (a topic name: UTF-8, no wildcards),
    /// each exactly once. A topic starting with `$` is not matched by a first-level `+` or `#`
    /// [MQTT-4.7.2-1].
    @inlinable
    public func match<V: TrieVisitor>(topic: UnsafeRawBufferPointer, visitor: inout V) where V.Value == Value {
        let dollar = topic.count > 0 && topic[0] == UInt8(ascii: "$")
        nodes.withUnsafeBufferPointer { nodes in
            matchLevel(nodes, 0, topic, 0, dollar, &visitor)
        }
    }

    // Nodes are read in place through the buffer (`nodes[i].field`), never copied whole: a copy
    // would retain and release the level bytes and every array of the value at each level.
    @inlinable
    func matchLevel<V: TrieVisitor>(
        _ nodes: UnsafeBufferPointer<Node>, _ index: Int32, _ topic: UnsafeRawBufferPointer,
        _ start: Int, _ dollar: Bool, _ visitor: inout V
    ) where V.Value == Value {
        let i = Int(index)
        let hashChild = nodes[i].hashChild
        if start > topic.count {
            // Every level consumed: the filter ending here matches, and so does `filter/#`.
            SubscriptionTrie.visitValue(nodes, i, &visitor)
            if hashChild >= 0 { SubscriptionTrie.visitValue(nodes, Int(hashChild), &visitor) }
            return
        }
        var end = start
        while end < topic.count && topic[end] != UInt8(ascii: "/") { end += 1 }
        let next = end + 1  // past the end (count + 1) when this was the last level
        let wildcardsAllowed = !(index == 0 && dollar)
        if wildcardsAllowed {
            if hashChild >= 0 { SubscriptionTrie.visitValue(nodes, Int(hashChild), &visitor) }
            let plusChild = nodes[i].plusChild
            if plusChild >= 0 { matchLevel(nodes, plusChild, topic, next, dollar, &visitor) }
        }
        if nodes[i].childCount == 0 { return }
        let hash = FNV1a.hash(topic, start, end) & hashMask
        guard var child = children.find(parent: index, hash: hash) else { return }
        let length = end - start
        while child >= 0 {
            let c = Int(child)
            if nodes[c].level.count == length && nodes[c].level.withUnsafeBytes({ level in
                SubscriptionTrie.equal(level, topic, start, length)
            }) {
                matchLevel(nodes, child, topic, next, dollar, &visitor)
                return
            }
            child = nodes[c].nextCollision
        }
    }

    @inlinable @inline(__always)
    static func visitValue<V: TrieVisitor>(_ nodes: UnsafeBufferPointer<Node>, _ i: Int, _ visitor: inout V) where V.Value == Value {
        if case .some(let value) = nodes[i].value { visitor.visit(value) }
    }

    @inlinable static func equal(_ level: UnsafeRawBufferPointer, _ topic: UnsafeRawBufferPointer, _ start: Int, _ length: Int) -> Bool {
        var i = 0
        while i < length {
            if level[i] != topic[start + i] { return false }
            i += 1
        }
        return true
    }

    /// The values of every filter matching `topic` (tests and cold paths).
    public func matches(topic: String) -> [Value] {
        var collector = Collector<Value>()
        var t = topic
        t.withUTF8 { match(topic: UnsafeRawBufferPointer($0), visitor: &collector) }
        return collector.values
    }

    // MARK: lookup and update
    // Inlinable like `match`, so that they specialize for the value type in the caller's module:
    // unspecialized, every call looks up generic metadata and copies nodes through witnesses.

    /// Calls `body` with each level of `filter` (split at `/`, empty levels kept) and whether it
    /// is the last; stops early when `body` returns false.
    @inlinable @inline(__always)
    static func forEachLevel(_ filter: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var start = 0
        while true {
            var end = start
            while end < filter.count && filter[end] != UInt8(ascii: "/") { end += 1 }
            guard body(UnsafeRawBufferPointer(rebasing: filter[start..<end])) else { return }
            if end >= filter.count { return }
            start = end + 1
        }
    }

    /// The node of exactly this filter, if present.
    @inlinable
    func find(_ filter: UnsafeRawBufferPointer) -> Int32? {
        var index: Int32? = 0
        SubscriptionTrie.forEachLevel(filter) { level in
            index = child(of: index!, level: level)
            return index != nil
        }
        return index
    }

    @inlinable
    func child(of parent: Int32, level: UnsafeRawBufferPointer) -> Int32? {
        if level.count == 1 && level[0] == UInt8(ascii: "+") { let c = nodes[Int(parent)].plusChild; return c >= 0 ? c : nil }
        if level.count == 1 && level[0] == UInt8(ascii: "#") { let c = nodes[Int(parent)].hashChild; return c >= 0 ? c : nil }
        let hash = FNV1a.hash(level, 0, level.count) & hashMask
        var c = children.find(parent: parent, hash: hash) ?? -1
        while c >= 0 {
            if nodes[Int(c)].level.withUnsafeBytes({ $0.elementsEqual(level) }) { return c }
            c = nodes[Int(c)].nextCollision
        }
        return nil
    }

    /// The value stored for exactly this filter (no wildcard matching).
    @inlinable
    public func value(forFilter filter: String) -> Value? {
        var f = filter
        return f.withUTF8 { value(forFilter: UnsafeRawBufferPointer($0)) }
    }

    /// The value stored for exactly this filter (UTF-8 bytes; no wildcard matching).
    @inlinable
    public func value(forFilter filter: UnsafeRawBufferPointer) -> Value? {
        guard let index = find(filter) else { return nil }
        return nodes[Int(index)].value
    }

    /// Creates, changes or deletes (the body leaves it nil) the value of exactly this filter.
    /// Nodes left without value and children are removed.
    @inlinable @discardableResult
    public mutating func update<R>(filter: String, _ body: (inout Value?) -> R) -> R {
        var f = filter
        return f.withUTF8 { update(filter: UnsafeRawBufferPointer($0), body) }
    }

    /// `update(filter:_:)` with the filter as UTF-8 bytes (a mailbox record's). Changing the value
    /// of a filter already present allocates nothing; each new level node allocates its bytes.
    @inlinable @discardableResult
    public mutating func update<R>(filter: UnsafeRawBufferPointer, _ body: (inout Value?) -> R) -> R {
        var index: Int32 = 0
        SubscriptionTrie.forEachLevel(filter) { level in
            index = child(of: index, level: level) ?? addChild(of: index, level: level)
            return true
        }
        let hadValue = nodes[Int(index)].value != nil
        _generation &+= 1
        let result = body(&nodes[Int(index)].value)
        let hasValue = nodes[Int(index)].value != nil
        if hadValue != hasValue { filterCount += hasValue ? 1 : -1 }
        prune(from: index)
        return result
    }

    @inlinable
    mutating func addChild(of parent: Int32, level: UnsafeRawBufferPointer) -> Int32 {
        let hash = FNV1a.hash(level, 0, level.count) & hashMask
        let node = Node(level: Array(level), parent: parent, hash: hash)
        let index: Int32
        if let reused = freeNodes.popLast() {
            index = reused
            nodes[Int(index)] = node
        } else {
            index = Int32(nodes.count)
            nodes.append(node)
        }
        if level.count == 1 && level[0] == UInt8(ascii: "+") {
            nodes[Int(parent)].plusChild = index
        } else if level.count == 1 && level[0] == UInt8(ascii: "#") {
            nodes[Int(parent)].hashChild = index
        } else {
            nodes[Int(index)].nextCollision = children.find(parent: parent, hash: hash) ?? -1
            children.set(parent: parent, hash: hash, node: index)
        }
        nodes[Int(parent)].childCount += 1
        return index
    }

    /// Removes `index` and its ancestors while they hold neither a value nor children.
    @inlinable
    mutating func prune(from start: Int32) {
        var index = start
        while index != 0 {
            guard nodes[Int(index)].value == nil && nodes[Int(index)].childCount == 0 else { return }
            let node = nodes[Int(index)]
            let parent = node.parent
            if nodes[Int(parent)].plusChild == index {
                nodes[Int(parent)].plusChild = -1
            } else if nodes[Int(parent)].hashChild == index {
                nodes[Int(parent)].hashChild = -1
            } else {
                let head = children.find(parent: parent, hash: node.hash)!
                if head == index {
                    if node.nextCollision >= 0 {
                        children.set(parent: parent, hash: node.hash, node: node.nextCollision)
                    } else {
                        children.remove(parent: parent, hash: node.hash)
                    }
                } else {
                    var previous = head
                    while nodes[Int(previous)].nextCollision != index { previous = nodes[Int(previous)].nextCollision }
                    nodes[Int(previous)].nextCollision = node.nextCollision
                }
            }
            nodes[Int(parent)].childCount -= 1
            nodes[Int(index)] = Node(level: [], parent: -1, hash: 0)
            nodes[Int(index)].inUse = false
            freeNodes.append(index)
            index = parent
        }
    }

    /// Nodes allocated, including the root and free ones (diagnostics, tests).
    var nodeCapacity: Int { nodes.count }
    /// Nodes in use, including the root.
    var liveNodes: Int { nodes.count - freeNodes.count }

    /// All (filter, value) pairs, for diagnostics and session transfer.
    public func allFilters() -> [(filter: String, value: Value)] {
        var result: [(filter: String, value: Value)] = []
        for i in nodes.indices where nodes[i].inUse && i != 0 {
            guard let value = nodes[i].value else { continue }
            var levels: [String] = []
            var index = Int32(i)
            while index != 0 {
                levels.append(String(decoding: nodes[Int(index)].level, as: UTF8.self))
                index = nodes[Int(index)].parent
            }
            result.append((levels.reversed().joined(separator: "/"), value))
        }
        return result
    }
}

/// Collects matched values into an array.
struct Collector<Value>: TrieVisitor {
    var values: [Value] = []
    mutating func visit(_ value: Value) { values.append(value) }
}
