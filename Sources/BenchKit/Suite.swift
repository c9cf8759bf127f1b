// Load suites (IntegrationTests/load/*.json): which scenarios to run, how long and how many rounds; and how
// the rounds of one scenario against one broker become the single entry of a suite report.

/// A suite file.
///
/// ```json
/// {"name": "ci", "rounds": 2, "aggregate": "best", "warmup": 1, "duration": 3,
///  "scenarios": [{"scenario": "pairs", "args": ["--pairs", "10", "-q", "1"]},
///                {"scenario": "idle", "args": ["-c", "1000"], "duration": 2}]}
/// ```
public struct SuiteSpec: Codable, Sendable, Equatable {
    /// One scenario: apus-bench's scenario name and its flags (no host, port, duration or output).
    public struct Entry: Codable, Sendable, Equatable {
        public var scenario: String
        public var args: [String]
        /// Overrides the suite's warm-up / duration for this scenario (seconds).
        public var warmup: Double?
        public var duration: Double?
        public init(scenario: String, args: [String], warmup: Double? = nil, duration: Double? = nil) {
            self.scenario = scenario; self.args = args; self.warmup = warmup; self.duration = duration
        }
    }

    public var name: String
    public var description: String?
    public var rounds: Int
    /// "median" (the default) or "best" (the highest rate: noise on a shared machine only slows).
    public var aggregate: String?
    public var warmup: Double
    public var duration: Double
    public var scenarios: [Entry]

    public init(name: String, rounds: Int, aggregate: String? = nil, warmup: Double, duration: Double, scenarios: [Entry]) {
        self.name = name; self.rounds = rounds; self.aggregate = aggregate
        self.warmup = warmup; self.duration = duration; self.scenarios = scenarios
    }

    public var aggregation: RoundAggregation { aggregate == "best" ? .best : .median }
}

/// How a suite picks one entry from a scenario's rounds.
public enum RoundAggregation: String, Sendable {
    /// The round with the median headline rate (the lower of the two middle ones for an even count).
    case median
    /// The round with the highest headline rate.
    case best

    /// One entry for the rounds of one scenario against one broker: the chosen round's figures,
    /// every round's headline rate in `rounds`, and the worst loss, duplicates and all errors of
    /// any round, so that a bad round is never hidden by the choice.
    public func combine(_ runs: [BenchReport]) -> BenchReport {
        precondition(!runs.isEmpty)
        let ranked = runs.enumerated().sorted { $0.element.headlineRate < $1.element.headlineRate }
        let chosen = self == .best ? ranked.count - 1 : (ranked.count - 1) / 2
        var r = ranked[chosen].element
        r.rounds = runs.map(\.headlineRate)
        r.aggregate = "\(rawValue) of \(runs.count)"
        r.lost = runs.map(\.lost).max() ?? 0
        r.duplicates = runs.map(\.duplicates).max() ?? 0
        r.errors = []
        for (i, run) in runs.enumerated() { r.errors += run.errors.map { "round \(i + 1): \($0)" } }
        return r
    }
}
