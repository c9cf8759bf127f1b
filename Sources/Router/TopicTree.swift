// A tree of concrete topic names (no wildcards), each holding a value, that answers "which
// stored topics does this filter match?" — the retained-message lookup on SUBSCRIBE.
// A cold path (it runs per SUBSCRIBE, not per PUBLISH), so it favours simplicity.

/// Topic names → values, searchable by topic filter.
public struct TopicTree<Value> {
    // Inlinable (with what it touches), so each user's Value is specialised: unspecialised generic
    // code looked up type metadata on every insert (a tenth of a restart with 1M retained messages).
    @usableFromInline struct Node {
        @usableFromInline var children: [String: Int] = [:]
        @usableFromInline var value: Value? = nil
        /// `value != nil`, without copying the value out to test it.
        @usableFromInline var occupied = false
        @usableFromInline var parent: Int
        @usableFromInline var level: String

        @inlinable init(parent: Int, level: String) { self.parent = parent; self.level = level }
    }

    @usableFromInline var nodes: [Node] = [Node(parent: -1, level: "")]
    @usableFromInline var freeNodes: [Int] = []
    @usableFromInline var stored = 0
    /// Topics with a value.
    public var count: Int { stored }

    public init() {}

    /// Room for about `topics` more topics (a load at start), so the node table grows once.
    @inlinable public mutating func reserveCapacity(_ topics: Int) {
        nodes.reserveCapacity(nodes.count + topics + topics / 8)
    }

    /// The value stored for exactly this topic.
    @inlinable public func value(forTopic topic: String) -> Value? {
        var index = 0
        for level in topic.split(separator: "/", omittingEmptySubsequences: false) {
            guard let child = nodes[index].children[String(level)] else { return nil }
            index = child
        }
        return nodes[index].value
    }

    /// Stores (or with nil, removes) the value of a topic; removal prunes empty nodes.
    @inlinable public mutating func set(_ value: Value?, forTopic topic: String) {
        update(forTopic: topic) { $0 = value }
    }

    /// Calls `body` with the topic's value in place (nil: none), in one walk: it may read it, replace
    /// it or remove it (nil); removal prunes empty nodes.
    @inlinable public mutating func update(forTopic topic: String, _ body: (inout Value?) -> Void) {
        var index = 0
        for level in topic.split(separator: "/", omittingEmptySubsequences: false) {
            let key = String(level)
            if let child = nodes[index].children[key] {
                index = child
            } else {
                let node = Node(parent: index, level: key)
                let child: Int
                if let reused = freeNodes.popLast() { child = reused; nodes[child] = node } else { child = nodes.count; nodes.append(node) }
                nodes[index].children[key] = child
                index = child
            }
        }
        let had = nodes[index].occupied
        body(&nodes[index].value)
        let has: Bool
        if case .some = nodes[index].value { has = true } else { has = false }
        nodes[index].occupied = has
        stored += (has ? 1 : 0) - (had ? 1 : 0)
        // Prune.
        while index != 0 && !nodes[index].occupied && nodes[index].children.isEmpty {
            let parent = nodes[index].parent
            nodes[parent].children.removeValue(forKey: nodes[index].level)
            nodes[index] = Node(parent: -1, level: "")
            freeNodes.append(index)
            index = parent
        }
    }

    /// Calls `body` with every stored value, `$` topics included, in no particular order.
    @inlinable public func forEachValue(_ body: (Value) throws -> Void) rethrows {
        for node in nodes { if let value = node.value { try body(value) } }
    }

    /// Every (topic, value) whose topic matches `filter` (with `+` and `#`). Topics starting with
    /// `$` are not matched by a first-level wildcard [MQTT-4.7.2-1].
    public func matches(filter: String) -> [(topic: String, value: Value)] {
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var out: [(topic: String, value: Value)] = []
        walk(0, levels, 0, [], &out)
        return out
    }

    private func walk(_ index: Int, _ filter: [String], _ depth: Int, _ path: [String], _ out: inout [(topic: String, value: Value)]) {
        if depth == filter.count {
            if let value = nodes[index].value { out.append((path.joined(separator: "/"), value)) }
            return
        }
        let level = filter[depth]
        switch level {
        case "#":
            // `#` matches the parent level too: `a/#` matches `a`.
            if depth > 0, let value = nodes[index].value { out.append((path.joined(separator: "/"), value)) }
            collectAll(index, path, depth == 0, &out)
        case "+":
            for (key, child) in nodes[index].children where !(depth == 0 && key.hasPrefix("$")) {
                walk(child, filter, depth + 1, path + [key], &out)
            }
        default:
            if let child = nodes[index].children[level] { walk(child, filter, depth + 1, path + [level], &out) }
        }
    }

    private func collectAll(_ index: Int, _ path: [String], _ atRoot: Bool, _ out: inout [(topic: String, value: Value)]) {
        for (key, child) in nodes[index].children where !(atRoot && key.hasPrefix("$")) {
            let childPath = path + [key]
            if let value = nodes[child].value { out.append((childPath.joined(separator: "/"), value)) }
            collectAll(child, childPath, false, &out)
        }
    }
}
