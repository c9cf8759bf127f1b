// The literal-children index of the subscription trie: (parent node, hash of the level's bytes)
// → first node of the collision chain. An open-addressed table with linear probing: the level
// hash is already computed (FNV-1a) when a topic is matched, so a lookup is one multiply and a
// probe or two, where a Dictionary would run SipHash over the key at every level of every match.
// A slot keeps the hash's low 32 bits (12 bytes a slot: the table of a million retained topics is
// 24 MB, not 32): levels whose hashes agree there share a collision chain, which the tries walk
// comparing the levels' bytes anyway.

/// Open-addressed map from (parent, level hash) to a node index.
@usableFromInline struct ChildTable {
    @usableFromInline struct Slot {
        /// -1 marks an empty slot.
        @usableFromInline var parent: Int32 = -1
        @usableFromInline var node: Int32 = -1
        @usableFromInline var hash: UInt32 = 0
        @inlinable init() {}
        @inlinable init(parent: Int32, node: Int32, hash: UInt32) { self.parent = parent; self.node = node; self.hash = hash }
    }

    /// A power of two, at most half full.
    @usableFromInline var slots: [Slot]
    @usableFromInline var count = 0

    @inlinable init() { slots = Array(repeating: Slot(), count: 16) }

    @inlinable @inline(__always)
    static func home(_ parent: Int32, _ hash: UInt32, _ mask: Int) -> Int {
        var h = UInt64(hash) &+ UInt64(UInt32(bitPattern: parent)) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        return Int(truncatingIfNeeded: h) & mask
    }

    /// The node stored for (parent, hash), if any.
    @inlinable
    func find(parent: Int32, hash wide: UInt64) -> Int32? {
        let hash = UInt32(truncatingIfNeeded: wide)
        return slots.withUnsafeBufferPointer { slots in
            let mask = slots.count - 1
            var i = ChildTable.home(parent, hash, mask)
            while true {
                let slot = slots[i]
                if slot.parent == -1 { return nil }
                if slot.parent == parent && slot.hash == hash { return slot.node }
                i = (i + 1) & mask
            }
        }
    }

    /// Stores `node` for (parent, hash), replacing any previous one.
    @usableFromInline
    mutating func set(parent: Int32, hash wide: UInt64, node: Int32) {
        let hash = UInt32(truncatingIfNeeded: wide)
        if (count + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var i = ChildTable.home(parent, hash, mask)
        while slots[i].parent != -1 {
            if slots[i].parent == parent && slots[i].hash == hash {
                slots[i].node = node
                return
            }
            i = (i + 1) & mask
        }
        slots[i] = Slot(parent: parent, node: node, hash: hash)
        count += 1
    }

    /// Removes the entry of (parent, hash), if present.
    @usableFromInline
    mutating func remove(parent: Int32, hash wide: UInt64) {
        let hash = UInt32(truncatingIfNeeded: wide)
        let mask = slots.count - 1
        var i = ChildTable.home(parent, hash, mask)
        while true {
            if slots[i].parent == -1 { return }
            if slots[i].parent == parent && slots[i].hash == hash { break }
            i = (i + 1) & mask
        }
        // Backward-shift deletion: move later entries of the probe run into the hole when their
        // home slot does not lie (cyclically) between the hole and where they sit.
        var hole = i
        var j = (i + 1) & mask
        while slots[j].parent != -1 {
            let home = ChildTable.home(slots[j].parent, slots[j].hash, mask)
            let movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j)
            if movable {
                slots[hole] = slots[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        slots[hole] = Slot()
        count -= 1
    }

    /// Room for `entries` entries without growing.
    @usableFromInline
    mutating func reserveCapacity(_ entries: Int) {
        var size = slots.count
        while entries * 2 > size { size *= 2 }
        if size > slots.count { resize(size) }
    }

    mutating func grow() { resize(slots.count * 2) }

    mutating func resize(_ size: Int) {
        let old = slots
        slots = Array(repeating: Slot(), count: size)
        count = 0
        for slot in old where slot.parent != -1 { set(parent: slot.parent, hash: UInt64(slot.hash), node: slot.node) }
    }
}
