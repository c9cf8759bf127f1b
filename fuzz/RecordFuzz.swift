// libFuzzer target for the shard contract's codec: any bytes, as a record (the length field set
// to the input's length half the time, so the body is reached), must either be refused or decode
// to a message that re-encodes to the same bytes. A serialised session likewise.

import Codec

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecords(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if size >= 8, bytes[0] & 1 == 0 {
        withUnsafeBytes(of: UInt32(size).littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
    }
    bytes.withUnsafeBytes { raw in
        if let record = try? ShardRecordCodec.decode(raw) {
            var again = ByteBuffer()
            defer { again.deallocate() }
            ShardRecordCodec.encode(record.message, origin: record.origin, into: &again)
            // Reserved bytes are written as 0: compare what the decoder read.
            guard let second = try? ShardRecordCodec.decode(again.readableView) else { fatalError("re-encoded record does not decode") }
            guard second.origin == record.origin, String(describing: kindOf(second.message)) == String(describing: kindOf(record.message)),
                  again.readableBytes == raw.count else { fatalError("record round trip differs") }
        }
        if let session = try? SessionSnapshot(decoding: raw) {
            var again = ByteBuffer()
            defer { again.deallocate() }
            session.encode(into: &again)
            guard let second = try? SessionSnapshot(decoding: again.readableView), second == session else {
                fatalError("session round trip differs")
            }
        }
    }
    return 0
}

func kindOf(_ message: ShardMessage) -> String {
    switch message {
    case .publish: "publish"
    case .replayPublish: "replayPublish"
    case .sharedPublish: "sharedPublish"
    case .routeAdd: "routeAdd"
    case .routeRemove: "routeRemove"
    case .barrier: "barrier"
    case .barrierAck: "barrierAck"
    case .storeBarrier: "storeBarrier"
    case .storeBarrierAck: "storeBarrierAck"
    case .shareCount: "shareCount"
    case .retain: "retain"
    case .throttle: "throttle"
    case .unthrottle: "unthrottle"
    case .client(let m): "client \(m.kind) \(m.clientID) \(m.session.map { "\($0)" } ?? "-")"
    }
}
