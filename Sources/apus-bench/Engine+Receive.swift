// What an engine does with its input: TLS and WebSocket layers first when the run has them, then
// the MQTT stream split into frames — a subscriber's PUBLISH read in place (sequence, latency,
// acknowledgement), the publishers' acknowledgements counted, anything else decoded in full.

import BenchKit
import CApusSys
import Codec
import ApusBase

extension Engine {
    func received(_ c: Int, _ bytes: UnsafeRawBufferPointer, measureStart: UInt64, measureEnd: UInt64) {
        if conns[c].tls == nil && conns[c].ws == nil { return receivedPlaintext(c, bytes, measureStart: measureStart, measureEnd: measureEnd) }
        if c >= publisherCount { result.subscriberBytes &+= UInt64(bytes.count) }  // what the wire carried
        if let tls = conns[c].tls {
            let status = tls.received(bytes, plaintext: &tlsPlaintext, wire: &conns[c].cipherOut)
            if case .failed(let why) = status, result.error == nil { result.error = "TLS on connection \(c): \(why)" }
            guard conns[c].ws != nil else {
                receivedPlaintext(c, tlsPlaintext.readableView, measureStart: measureStart, measureEnd: measureEnd, counted: true)
                tlsPlaintext.clear()
                return
            }
            receivedFrames(c, tlsPlaintext.readableView, measureStart: measureStart, measureEnd: measureEnd)
            tlsPlaintext.clear()
        } else {
            receivedFrames(c, bytes, measureStart: measureStart, measureEnd: measureEnd)
        }
    }

    /// WebSocket frames from the broker: their payload is the MQTT stream.
    func receivedFrames(_ c: Int, _ bytes: UnsafeRawBufferPointer, measureStart: UInt64, measureEnd: UInt64) {
        guard let ws = conns[c].ws else { return }
        let status = ws.received(bytes, plaintext: &wsPlaintext, wire: &conns[c].wsOut)
        if status != .open, result.error == nil { result.error = "WebSocket on connection \(c): \(status)" }
        receivedPlaintext(c, wsPlaintext.readableView, measureStart: measureStart, measureEnd: measureEnd, counted: true)
        wsPlaintext.clear()
    }

    func receivedPlaintext(_ c: Int, _ bytes: UnsafeRawBufferPointer, measureStart: UInt64, measureEnd: UInt64, counted: Bool = false) {
        if c >= publisherCount && !counted { result.subscriberBytes &+= UInt64(bytes.count) }
        let now = apus_monotonic_ns()
        // The splitter leaves the table while it runs: handling a frame writes the same
        // connection's other fields (acknowledgements into `out`, aliases).
        var frames = conns[c].frames
        conns[c].frames = FrameSplitter()
        do {
            try frames.split(bytes) { frame in
                received(c, frame: frame, now: now, measureStart: measureStart, measureEnd: measureEnd)
            }
        } catch {
            if result.error == nil { result.error = "undecodable input from the broker: \(error)" }
        }
        conns[c].frames = frames
    }

    /// One complete frame from the broker. A subscriber's PUBLISH takes the fast path (no
    /// `Packet`); acknowledgements are counted by type; anything else is decoded in full.
    func received(_ c: Int, frame: UnsafeRawBufferPointer, now: UInt64, measureStart: UInt64, measureEnd: UInt64) {
        let isSubscriber = c >= publisherCount
        let type = frame[0] >> 4
        if isSubscriber, let p = BenchPublish.read(frame: frame, version: config.version) {
            return receivedPublish(c, p, now: now, measureStart: measureStart, measureEnd: measureEnd)
        }
        if !isSubscriber && (type == 4 || type == 7) {  // PUBACK (QoS 1), PUBCOMP (QoS 2)
            acked[c] &+= 1
            return
        }
        let packet: Packet
        do { packet = try PacketDecoder.decode(frame: frame, version: config.version) } catch {
            if result.error == nil { result.error = "undecodable input from the broker: \(error)" }
            return
        }
        switch packet {
        case .pubrec(let ack):  // publisher side of QoS 2
            Packet.pubrel(PublishAck(packetID: ack.packetID)).encode(version: config.version, into: &conns[c].out)
        case .pubrel(let ack):  // subscriber side of QoS 2
            Packet.pubcomp(PublishAck(packetID: ack.packetID)).encode(version: config.version, into: &conns[c].out)
        case .publish(let p) where isSubscriber:
            var alias: UInt16 = 0
            if let a = p.properties.topicAlias { alias = a }
            receivedPublish(c, BenchPublish(qos: p.qos, packetID: p.packetID, topic: p.topic, topicAlias: alias, payload: p.payload),
                            now: now, measureStart: measureStart, measureEnd: measureEnd)
        default:
            break
        }
    }

    func receivedPublish(_ c: Int, _ p: BenchPublish, now: UInt64, measureStart: UInt64, measureEnd: UInt64) {
        guard let header = BenchPayload.read(p.payload) else { return }
        let subscriber = c - publisherCount
        var publisher = p.topic.count > 0 ? Engine.publisherIndex(topic: p.topic) : -1
        if p.topicAlias != 0, Int(p.topicAlias) < conns[c].aliases.count {
            // A v5 broker's topic alias: set with the topic, used alone afterwards.
            if publisher >= 0 { conns[c].aliases[Int(p.topicAlias)] = publisher } else { publisher = conns[c].aliases[Int(p.topicAlias)] }
        }
        guard publisher >= 0, let stream = plan.stream(publisher: publisher, subscriber: subscriber) else {
            if result.error == nil { result.error = "a PUBLISH with an unknown topic alias" }
            return
        }
        trackers[stream].record(header.sequence)
        receivedTotal &+= 1
        lastReceiveAt = now
        if header.measured { _ = result.latency.record((now &- header.sentAt) / 1000) }
        if now >= measureStart && now < measureEnd { result.receivedInWindow += 1 }
        switch p.qos {
        case .atMostOnce: break
        case .atLeastOnce: Packet.puback(PublishAck(packetID: p.packetID)).encode(version: config.version, into: &conns[c].out)
        case .exactlyOnce: Packet.pubrec(PublishAck(packetID: p.packetID)).encode(version: config.version, into: &conns[c].out)
        }
    }
}
