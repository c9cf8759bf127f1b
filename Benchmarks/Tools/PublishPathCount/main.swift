// Runs the in-process publish path for a fixed number of messages and prints the wall-clock per
// message: the program count-instructions.sh runs under callgrind, whose instruction counts do
// not depend on what else the machine is doing (the benchmarks' wall-clock does).
//
//     PublishPathCount same|cross|fanout 0|1 [messages]
//
// APUS_MATCH_CACHE_ENTRIES=0 in the environment runs without the match cache (for a before/after).

import Broker
import Codec
import PublishHarness
@preconcurrency import Glibc

let arguments = CommandLine.arguments
guard arguments.count >= 3, let qosValue = UInt8(arguments[2]), let qos = QoS(rawValue: qosValue),
      ["same", "cross", "fanout"].contains(arguments[1]) else {
    print("usage: PublishPathCount same|cross|fanout 0|1 [messages]")
    exit(2)
}
let messages = arguments.count > 3 ? Int(arguments[3]) ?? 1_000_000 : 1_000_000
let subscriberShards: [Int]
switch arguments[1] {
case "same": subscriberShards = [0]
case "cross": subscriberShards = [1]
default: subscriberShards = (0..<16).map { $0 % 2 }
}
var config = BrokerConfig()
if let entries = getenv("APUS_MATCH_CACHE_ENTRIES").flatMap({ Int(String(cString: $0)) }) { config.matchCacheEntries = entries }
let harness = PublishHarness(shards: arguments[1] == "same" ? 1 : 2, config: config)
harness.setUp(publisherShard: 0, subscriberShards: subscriberShards, version: .v3_1_1, qos: qos)
let start = ContinuousClock.now
for _ in 0..<messages { harness.publish() }
let elapsed = ContinuousClock.now - start
let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
print("\(arguments[1]) QoS \(qos.rawValue): \(messages) messages, \(Int(nanoseconds / Double(messages))) ns/message")
