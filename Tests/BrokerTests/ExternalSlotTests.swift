// Slots of connections the runtime serves itself (the HTTP API): one table with the MQTT clients,
// ignored by the core's timers, counts and input, freed by release and reused by either protocol.

import Codec
import XCTest
@testable import Broker

final class ExternalSlotTests: XCTestCase {
    func testExternalSlotIsIgnoredByTheCoreAndReused() {
        let h = CoreHarness(shards: 1)
        let core = h.cores[0]
        let http = core.acceptExternal()
        XCTAssertEqual(core.phase(of: http), .external)
        let mqtt = h.connect(shard: 0)
        XCTAssertNotEqual(mqtt.id.slot, http.slot, "one id space: an MQTT client never gets the HTTP connection's slot")

        // Bytes on it reach no decoder, and the CONNECT timeout does not close it.
        h.send(CoreHarness.Client(shard: 0, id: http), Packet.connect(Connect(version: .v3_1_1, clientID: "x")))
        XCTAssertEqual(h.output(CoreHarness.Client(shard: 0, id: http)), [])
        h.now += 3_600_000_000_000
        core.tick(now: h.now)
        XCTAssertEqual(core.phase(of: http), .external)
        XCTAssertTrue(h.isClosing(mqtt), "the MQTT client without CONNECT is closed by the same tick")
        core.connectionLost(http)
        XCTAssertEqual(core.phase(of: http), .external, "only release ends it")
        XCTAssertEqual(core.gauges().connectedClients, 0)

        // Released, its slot goes to the next connection with a new generation.
        core.release(http)
        XCTAssertEqual(core.phase(of: http), .free)
        let next = h.connect(shard: 0)
        XCTAssertEqual(next.id.slot, http.slot)
        XCTAssertNotEqual(next.id.generation, http.generation)
        h.send(next, .connect(Connect(version: .v3_1_1, clientID: "after")))
        XCTAssertEqual(h.output(next), [0x20, 0x02, 0x00, 0x00])
        XCTAssertEqual(core.gauges().connectedClients, 1)
    }
}
