// Emptying a small scratch array that is reused every loop turn. `removeAll(keepingCapacity:
// true)` goes through an outlined `replaceSubrange` (about 60 instructions even when the array
// holds one element, measured with callgrind on the publish path); removing from the end is a
// count decrement per element and keeps the storage.

extension Array {
    /// Removes every element and keeps the capacity; cheap for the few elements a loop turn
    /// collects (long arrays go through `removeAll`).
    @inlinable @inline(__always)
    public mutating func removeAllKeepingCapacity() {
        if count > 16 {
            removeAll(keepingCapacity: true)
        } else {
            while !isEmpty { removeLast() }
        }
    }
}
