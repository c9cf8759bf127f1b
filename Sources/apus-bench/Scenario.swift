// Load scenarios: who publishes to which topic, who subscribes to what, and which subscriber
// stream each message counts towards.

/// The shapes of load apus-bench generates.
enum Scenario: String, CaseIterable, Sendable {
    /// Publisher i → subscriber i on PREFIX/i.
    case pairs
    /// P publishers on PREFIX/i → one subscriber on PREFIX/+.
    case fanIn = "fan-in"
    /// One publisher on PREFIX/0 → S subscribers on PREFIX/0.
    case fanOut = "fan-out"
    /// P publishers on PREFIX/i → a shared group `$share/bench/PREFIX/+` of S subscribers: each
    /// message to exactly one member.
    case shared
}

/// The concrete plan of one engine: its publishers' topics, its subscribers' filters, and how
/// deliveries map to tracked streams.
struct ScenarioPlan: Sendable {
    var scenario: Scenario
    /// Global publisher indexes this engine drives (topic PREFIX/index).
    var publishers: [Int]
    /// Filters of this engine's subscribers.
    var subscriberFilters: [String]

    /// Number of tracked streams: one per publisher, except fan-out: one per subscriber.
    var streamCount: Int { scenario == .fanOut ? subscriberFilters.count : publishers.count }

    /// The stream a message from global publisher `publisher` received by local subscriber
    /// `subscriber` counts towards (nil: not one of ours).
    func stream(publisher: Int, subscriber: Int) -> Int? {
        switch scenario {
        case .fanOut: return subscriber
        case .pairs, .fanIn, .shared: return publishers.firstIndex(of: publisher)
        }
    }

    /// Splits a scenario over `threads` engines (only pairs splits; the others run in one engine).
    static func plans(_ scenario: Scenario, publishers: Int, subscribers: Int, prefix: String, threads: Int) -> [ScenarioPlan] {
        switch scenario {
        case .pairs:
            let n = min(threads, publishers)
            return (0..<n).map { t in
                let range = Array((publishers * t / n)..<(publishers * (t + 1) / n))
                return ScenarioPlan(scenario: .pairs, publishers: range, subscriberFilters: range.map { "\(prefix)/\($0)" })
            }
        case .fanIn:
            return [ScenarioPlan(scenario: .fanIn, publishers: Array(0..<publishers), subscriberFilters: ["\(prefix)/+"])]
        case .fanOut:
            return [ScenarioPlan(scenario: .fanOut, publishers: [0], subscriberFilters: Array(repeating: "\(prefix)/0", count: subscribers))]
        case .shared:
            return [ScenarioPlan(scenario: .shared, publishers: Array(0..<publishers),
                                 subscriberFilters: Array(repeating: "$share/bench/\(prefix)/+", count: subscribers))]
        }
    }
}
