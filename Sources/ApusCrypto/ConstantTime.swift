// Comparison of secrets (password hashes, SCRAM proofs) whose running time does not depend on
// where the first differing byte is.

/// Whether `a` and `b` hold the same bytes, looking at every byte whatever their contents.
/// Arrays of different lengths compare unequal at once: lengths are not secret here.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count {
        difference |= a[i] ^ b[i]
    }
    return difference == 0
}
