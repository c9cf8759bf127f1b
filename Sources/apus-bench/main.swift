// apus-bench: the bundled MQTT load generator. `run` (the default) drives one scenario against
// any broker; `suite` runs a suite file against Apus (and Mosquitto) it starts itself; `compare`
// diffs two reports and gates on regressions.

import ArgumentParser

struct ApusBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-bench",
        abstract: "MQTT load generator on io_uring: pub/sub scenarios, idle connections, connect storms; suites and report comparison.",
        discussion: """
            apus-bench pairs -p 1883 --pairs 10 -q 1 --duration 5
                one scenario (`run` is the default subcommand)
            apus-bench suite IntegrationTests/load/standard.json --against mosquitto --out R.json
                a suite against Apus and Mosquitto, started here
            apus-bench compare reports/baseline.json R.json
                a Markdown table per scenario; exit 1 on a regression

            `apus-bench run --help`, `apus-bench suite --help` and
            `apus-bench compare --help` list every flag.
            """,
        subcommands: [Run.self, Suite.self, Compare.self],
        defaultSubcommand: Run.self,
        helpNames: [.long])
}

ApusBench.main()
