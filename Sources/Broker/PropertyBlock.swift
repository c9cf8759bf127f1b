// Walking a validated v5 property block (as the decoder left it) to find or drop one property
// without building a Properties value: used for Topic Alias and Message Expiry Interval.

import Codec

enum PropertyBlock {
    /// Calls `body(id, start, valueStart, end)` for each property; false if the block is malformed.
    @discardableResult
    static func forEach(_ raw: UnsafeRawBufferPointer, _ body: (PropertyID, Int, Int, Int) -> Void) -> Bool {
        var i = 0
        while i < raw.count {
            let start = i
            guard let property = PropertyID(rawValue: raw[i]) else { return false }  // PUBLISH ids fit one byte
            i += 1
            let valueStart = i
            switch property.wireType {
            case .byte: i += 1
            case .twoByteInteger: i += 2
            case .fourByteInteger: i += 4
            case .variableByteInteger:
                while i < raw.count && raw[i] & 0x80 != 0 { i += 1 }
                i += 1
            case .utf8String, .binaryData:
                guard i + 2 <= raw.count else { return false }
                i += 2 + (Int(raw[i]) << 8 | Int(raw[i + 1]))
            case .utf8StringPair:
                for _ in 0..<2 {
                    guard i + 2 <= raw.count else { return false }
                    i += 2 + (Int(raw[i]) << 8 | Int(raw[i + 1]))
                }
            }
            guard i <= raw.count else { return false }
            body(property, start, valueStart, i)
        }
        return true
    }

    /// The offset of the 4-byte Message Expiry Interval value, and the value, if present.
    static func messageExpiry(_ raw: UnsafeRawBufferPointer) -> (offset: Int, seconds: UInt32)? {
        var found: (Int, UInt32)? = nil
        forEach(raw) { id, _, value, _ in
            if id == .messageExpiryInterval {
                found = (value, UInt32(raw[value]) << 24 | UInt32(raw[value + 1]) << 16 | UInt32(raw[value + 2]) << 8 | UInt32(raw[value + 3]))
            }
        }
        return found
    }

    /// Stores `seconds` big-endian at `offset`.
    static func writeUInt32(_ seconds: UInt32, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: UInt8(seconds >> 24), as: UInt8.self)
        (pointer + 1).storeBytes(of: UInt8((seconds >> 16) & 0xFF), as: UInt8.self)
        (pointer + 2).storeBytes(of: UInt8((seconds >> 8) & 0xFF), as: UInt8.self)
        (pointer + 3).storeBytes(of: UInt8(seconds & 0xFF), as: UInt8.self)
    }
}
