// libFuzzer target for the MQTT decoder: every input goes through the streaming decoder in each
// protocol version (split in two at a point the input chooses) and through PacketDecoder alone.
// Any packet that decodes must re-encode to bytes that decode to the same packet.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size > 0 else { return 0 }
    let cut = Int(input[0]) % size
    for version in [ProtocolVersion.v3_1_1, .v5] {
        var decoder = StreamDecoder(version: version, maxPacketSize: 1 << 16)
        defer { decoder.deallocate() }
        for part in [UnsafeRawBufferPointer(rebasing: input[1..<max(1, cut)]), UnsafeRawBufferPointer(rebasing: input[max(1, cut)...])] {
            decoder.feed(part)
            do {
                while let packet = try decoder.next() { checkRoundTrip(packet, version) }
            } catch {
                _ = error.reasonCode
                break
            }
        }
        if let packet = try? PacketDecoder.decode(frame: input, version: version) { checkRoundTrip(packet, version) }
    }
    return 0
}

/// Re-encodes `packet` and decodes it again; traps if anything differs.
func checkRoundTrip(_ packet: Packet, _ version: ProtocolVersion) {
    let packetVersion: ProtocolVersion
    if case .connect(let c) = packet { packetVersion = c.version } else { packetVersion = version }
    let bytes = packet.encoded(version: packetVersion)
    let again: Packet
    do {
        again = try bytes.withUnsafeBytes { raw throws(DecodeError) -> Packet in
            try PacketDecoder.decode(frame: raw, version: packetVersion)
        }
    } catch {
        fatalError("re-encoded \(packet.type) does not decode: \(error)")
    }
    if case .publish = packet {
        guard again.encoded(version: packetVersion) == bytes else { fatalError("PUBLISH round trip differs") }
    } else if String(describing: again) != String(describing: packet) {
        fatalError("round trip differs: \(packet) vs \(again)")
    }
}
