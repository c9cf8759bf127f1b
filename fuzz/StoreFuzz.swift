// libFuzzer target for the store's recovery (retained messages and sessions) and the Mosquitto
// import's reader: any bytes, as a segment file (and, half the time,
// behind a valid segment start so the salted records are reached), must be recovered without a
// crash, and what the scan reports must lie inside the file: records, skipped stretches and the
// valid end in order and in bounds. A damaged or hostile store file never stops the broker.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStore(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The same bytes as a Mosquitto persistence file (the import's reader): an error or a result.
    _ = try? bytes.withUnsafeBytes { try MosquittoDB.read($0, now: 1_700_000_000_000_000_000) }
    if size >= 4, bytes[0] & 1 == 0 {
        // A real segment start first (salt: the input's first four bytes), then the rest as its records.
        let salt = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        var head = ByteBuffer()
        SegmentStart(shard: 0, shardCount: 1, segment: 1, wallTime: 0, salt: salt).append(sequence: 1, into: &head)
        bytes = head.readableArray() + bytes.dropFirst(4)
        head.deallocate()
    }
    bytes.withUnsafeBytes { raw in
        var image = RetainedImage()
        var sessions = SessionImage()
        let result = LogRecovery.recover([SegmentFile(number: 1, bytes: raw)], into: &image, sessions: &sessions)
        guard result.validEnd <= raw.count else { fatalError("valid end past the file") }
        var last = -1
        for range in result.skipped {
            guard range.lowerBound > last, range.upperBound <= raw.count else { fatalError("skipped stretch out of order or bounds") }
            last = range.upperBound - 1
        }
        let salt = LogRecord.record(in: raw, at: 0).flatMap(SegmentStart.init)?.salt ?? 0
        var end = 0
        let scan = LogRecord.scan(raw, salt: salt) { record in
            guard record.offset >= end, record.offset + record.size <= raw.count else { fatalError("record out of order or bounds") }
            end = record.offset + record.size
            _ = RetainedRecord(record)
            _ = SegmentStart(record)
            _ = SessionRecord(record)
        }
        guard scan.validEnd == end else { fatalError("valid end is not the last record's end") }
        _ = image.messages
        _ = SessionImage.merge([sessions, sessions])
    }
    return 0
}
