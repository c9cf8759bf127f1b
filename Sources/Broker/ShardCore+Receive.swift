// Inbound bytes → packets → handlers, and the protocol-error path that ends a connection.

import Codec

extension ShardCore {
    /// Bytes arrived on a connection at `now`. Everything they cause is queued as outputs.
    public func receive(_ id: ConnectionID, bytes: UnsafeRawBufferPointer, now: UInt64) {
        guard isCurrent(id) else { return }
        let s = Int(id.slot)
        connections[s].lastReceived = now
        currentTime = now
        if connections[s].phase == .connecting {
            // CONNACK is not out yet: keep the input in order until the session is ready.
            connections[s].held.writeBytes(bytes)
            return
        }
        guard connections[s].phase == .awaitingConnect || connections[s].phase == .connected else { return }
        if connections[s].flow & FlowFlag.inputPaused != 0 {
            // Flow control stopped reading this publisher; what was already received waits.
            connections[s].held.writeBytes(bytes)
            return
        }
        let storageBefore = connections[s].decoder.storageCapacity
        connections[s].decoder.feed(bytes)
        decodeLoop(slot: s, now: now)
        accountPartialPackets(id, storageBefore: storageBefore)
    }

    /// What partial packets hold in memory, per shard (partial_packet_memory_limit), after slot
    /// `id`'s decoder had `storageBefore` bytes; most inputs end on a packet boundary and leave
    /// the decoder's storage as it was.
    @inline(__always)
    func accountPartialPackets(_ id: ConnectionID, storageBefore: Int) {
        let s = Int(id.slot)
        let storageAfter = connections[s].decoder.storageCapacity
        if storageAfter != storageBefore && connections[s].generation == id.generation {
            partialPacketBytes += storageAfter - storageBefore
            if partialPacketBytes > config.partialPacketMemoryLimit && config.partialPacketMemoryLimit > 0 {
                cutOffLargestPartialPackets()
            }
        }
    }

    /// Whether `id` is in the middle of a packet that still misses at least `minimum` bytes.
    public func isReceivingLargePacket(_ id: ConnectionID, minimum: Int) -> Bool {
        guard isCurrent(id) else { return false }
        return connections[Int(id.slot)].decoder.partialFrameNeed >= minimum
    }

    /// Whether the rest of a large packet of `id` (at least `minimum` bytes) could be received
    /// straight into its decoder's storage now (`lendReceiveRoom`).
    public func canLendReceiveRoom(_ id: ConnectionID, minimum: Int) -> Bool {
        guard isCurrent(id) else { return false }
        let s = Int(id.slot)
        return connections[s].phase == .connected && connections[s].flow & FlowFlag.inputPaused == 0
            && connections[s].decoder.roomToLend(minimum: minimum) > 0
    }

    /// Lends the room the rest of `id`'s large packet goes into, for a receive straight into it
    /// (no copy out of a receive buffer), and the allocation it is in. The runtime gives it back
    /// with `directReceived`, which says whether the decoder still holds it.
    public func lendReceiveRoom(_ id: ConnectionID, minimum: Int) -> (room: UnsafeMutableRawBufferPointer, allocation: UnsafeMutableRawPointer)? {
        guard canLendReceiveRoom(id, minimum: minimum) else { return nil }
        let s = Int(id.slot)
        guard let room = connections[s].decoder.lendRoom(minimum: minimum) else { return nil }
        return (room, connections[s].decoder.lentAllocation!)
    }

    /// The receive into the room `lendReceiveRoom` lent got `count` bytes (0: it ended without
    /// any); a complete packet is handled at once. False when the decoder no longer holds the
    /// room (the connection was cut off meanwhile): the runtime frees the allocation then.
    public func directReceived(_ id: ConnectionID, count: Int, now: UInt64) -> Bool {
        guard isCurrent(id) else { return false }
        let s = Int(id.slot)
        guard connections[s].decoder.isStorageLent else { return false }
        connections[s].decoder.returnRoom(written: count)
        guard count > 0, connections[s].phase == .connected else { return true }
        connections[s].lastReceived = now
        currentTime = now
        let storageBefore = connections[s].decoder.storageCapacity
        decodeLoop(slot: s, now: now)
        accountPartialPackets(id, storageBefore: storageBefore)
        return true
    }

    /// Decodes and handles the packets of the chunk fed to slot `s`'s decoder.
    @inline(__always)
    func decodeLoop(slot s: Int, now: UInt64) {
        while true {
            if connections[s].phase == .awaitingConnect, let first = connections[s].decoder.nextPacketFirstByte {
                // Decided from the first byte, before the body arrives: the first packet must be
                // CONNECT [MQTT-3.1.0-1], and only AUTH may follow it before CONNACK (section 4.12).
                let expected: UInt8 = connections[s].pendingConnect == nil ? 1 : 15
                if first >> 4 != expected {
                    counters.protocolErrors += 1
                    protocolError(slot: s, reason: .protocolError, decodeError: nil,
                                  why: expected == 1 ? "first packet is not CONNECT" : "expected AUTH")
                    return
                }
            }
            let packet: Packet?
            do {
                packet = try connections[s].decoder.next()
            } catch {
                counters.protocolErrors += 1
                protocolError(slot: s, reason: error.reasonCode, decodeError: error)
                return
            }
            guard let packet else { return }
            packetsReceived &+= 1
            if connections[s].decoder.holdsLargeReturnedFrame {
                // A large packet: its frame is kept while it is handled, and by the sessions a
                // QoS 1/2 message goes to (its payload shared rather than copied for each).
                currentFrame = connections[s].decoder.takeReturnedFrame()
                handle(packet, slot: s, now: now)
                currentFrame = nil
            } else {
                handle(packet, slot: s, now: now)
            }
            if connections[s].phase == .connecting || connections[s].flow & FlowFlag.inputPaused != 0 {
                connections[s].held.writeBytes(connections[s].decoder.detachRemainder())
                return
            }
            // A handler may have ended the session (or a takeover replaced it).
            if connections[s].phase != .awaitingConnect && connections[s].phase != .connected { return }
        }
    }

    /// The shard's partial packets hold more than partial_packet_memory_limit: the connections
    /// holding the most are cut off, largest first, until the rest fits (mosquitto's memory_limit
    /// refuses the next allocation instead, which hurts whoever allocates next, not the offender).
    func cutOffLargestPartialPackets() {
        while partialPacketBytes > config.partialPacketMemoryLimit {
            var largest = -1
            var largestBytes = 0
            for i in connections.indices {
                let phase = connections[i].phase
                guard phase == .awaitingConnect || phase == .connected else { continue }
                let bytes = connections[i].decoder.storageCapacity
                if bytes > largestBytes { largest = i; largestBytes = bytes }
            }
            guard largest >= 0 else {
                partialPacketBytes = 0  // nothing live holds any: the count had drifted
                return
            }
            counters.partialPacketsCutOff += 1
            endSession(slot: largest, publishWill: true, disconnectReason: .quotaExceeded,
                       reasonString: "incomplete packets over the broker's partial_packet_memory_limit")
            releaseDecoder(slot: largest)
        }
    }

    /// Frees a connection's decoder storage and takes it off the partial-packet count.
    func releaseDecoder(slot s: Int) {
        partialPacketBytes -= connections[s].decoder.storageCapacity
        connections[s].decoder.deallocate()
        if partialPacketBytes < 0 { partialPacketBytes = 0 }
    }

    /// Dispatches one decoded packet.
    func handle(_ packet: Packet, slot s: Int, now: UInt64) {
        if connections[s].phase == .awaitingConnect {
            if connections[s].pendingConnect != nil {
                // CONNECT is being authenticated: only AUTH may come before CONNACK (section 4.12).
                guard case .auth(let auth) = packet else {
                    protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "expected AUTH")
                    return
                }
                handleAuth(auth, slot: s)
                return
            }
            guard case .connect(let connect) = packet else {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT.
                protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "first packet is not CONNECT")
                return
            }
            handleConnect(connect, slot: s, now: now)
            return
        }
        switch packet {
        case .publish(let publish):
            handlePublish(publish, slot: s)
        case .puback(let ack):
            handlePubAck(ack, slot: s)
        case .pubrec(let ack):
            handlePubRec(ack, slot: s)
        case .pubrel(let ack):
            let known = connections[s].session.release(ack.packetID)
            if known { storeQoS2(slot: s, packetID: ack.packetID, received: false) }
            if known || connections[s].version != .v5 {
                queueAckAfterStore(.pubcomp(PublishAck(packetID: ack.packetID)), slot: s)
            } else {
                queueAck(.pubcomp(PublishAck(packetID: ack.packetID, reasonCode: .packetIdentifierNotFound,
                                             properties: problemProperties(slot: s, "no QoS 2 message with this Packet Identifier"))), slot: s)
            }
        case .pubcomp(let ack):
            handlePubComp(ack, slot: s)
        case .subscribe(let subscribe):
            handleSubscribe(subscribe, slot: s)
        case .unsubscribe(let unsubscribe):
            handleUnsubscribe(unsubscribe, slot: s)
        case .pingreq:
            connections[s].outbound.writeByte(0xD0)
            connections[s].outbound.writeByte(0x00)
            markFlush(s)
        case .disconnect(let disconnect):
            if connections[s].version == .v5 && ShardCore.serverOnlyDisconnectCodes.contains(disconnect.reasonCode.rawValue) {
                // [MQTT-3.14.2-1]: the sender uses a code it may send; these are the server's
                // (table 3-10), so the client's DISCONNECT is a protocol error and its will goes out.
                protocolError(slot: s, reason: .protocolError, decodeError: nil,
                              why: "DISCONNECT reason code only a server sends")
                return
            }
            if let expiry = disconnect.properties.sessionExpiryInterval {
                // [MQTT-3.14.2-2]: a session that was to end with the connection cannot be extended.
                if connections[s].session.expiry == 0 && expiry != 0 {
                    protocolError(slot: s, reason: .protocolError, decodeError: nil,
                                  why: "Session Expiry Interval 0 cannot be changed at DISCONNECT")
                    return
                }
                connections[s].session.setExpiry(expiry == 0xFFFF_FFFF ? .max : expiry)
            }
            // A normal DISCONNECT discards the will; v5 reason 0x04 asks for it to be sent.
            let sendWill = connections[s].version == .v5 && disconnect.reasonCode == .disconnectWithWill
            endSession(slot: s, publishWill: sendWill, disconnectReason: nil, eventReason: "normal")
        case .connect:
            // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
            protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "second CONNECT")
        case .auth(let auth):
            handleAuth(auth, slot: s)
        case .connack, .suback, .unsuback, .pingresp:
            protocolError(slot: s, reason: .protocolError, decodeError: nil, why: "packet type only a server sends")
        }
    }

    /// DISCONNECT reason codes only a server sends (MQTT 5.0 table 3-10, "Sent by: Server").
    static let serverOnlyDisconnectCodes: Set<UInt8> = [0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
                                                        0xA0, 0xA1, 0xA2]

    /// Appends an acknowledgement packet in the connection's version.
    @inline(__always)
    func queueAck(_ packet: Packet, slot s: Int) {
        packet.encode(version: connections[s].version, into: &connections[s].outbound)
        markFlush(s)
    }

    /// Ends a connection because of a protocol violation: v5 clients get DISCONNECT with `reason`.
    /// The will is published [MQTT-3.1.2-8]. A CONNECT that cannot be decoded gets a CONNACK
    /// refusal where the spec asks for one.
    func protocolError(slot s: Int, reason: ReasonCode, decodeError: DecodeError?, why: String? = nil) {
        if connections[s].phase == .awaitingConnect {
            if decodeError == .unsupportedProtocolVersion {
                // [MQTT-3.1.2-2]: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close. The client's level is unknown
                // here, so the 3.1.1 form (understood by every version) is sent.
                ConnAck(sessionPresent: false, reasonCode: .unsupportedProtocolVersion)
                    .encodePacket(version: .v3_1_1, into: &connections[s].outbound)
                markFlush(s)
            }
            endSession(slot: s, publishWill: false, disconnectReason: nil)
            return
        }
        endSession(slot: s, publishWill: true, disconnectReason: reason, reasonString: why ?? decodeError?.explanation)
    }

    /// v5 properties with `text` as Reason String where this client may get one: on CONNACK and
    /// DISCONNECT always, on other packets unless it set Request Problem Information to 0
    /// [MQTT-3.1.2-29]; never when it could push the packet over the client's Maximum Packet Size
    /// [MQTT-3.1.2-25].
    func problemProperties(slot s: Int, _ text: String, connAckOrDisconnect: Bool = false) -> Properties {
        var properties = Properties()
        guard connections[s].version == .v5,
              connAckOrDisconnect || connections[s].requestProblemInformation,
              text.utf8.count + 32 <= Int(connections[s].clientMaximumPacketSize) else { return properties }
        properties.reasonString = text
        return properties
    }
}

extension ConnAck {
    @inline(__always)
    func encodePacket(version: ProtocolVersion, into buffer: inout ByteBuffer) {
        Packet.connack(self).encode(version: version, into: &buffer)
    }
}
