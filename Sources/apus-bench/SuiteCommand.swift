// `apus-bench suite FILE --out REPORT`: runs every scenario of a suite file against Apus (started
// here, or at --host/--port) and, with --against mosquitto, against a Mosquitto started here too,
// alternating the brokers, a fresh broker per run, for the suite's rounds; writes one suite report
// with an entry per broker and scenario (the median or best round).

import ArgumentParser
import BenchKit
import CApusSys
import Foundation
@preconcurrency import Glibc

struct Suite: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs a suite file (IntegrationTests/load/*.json) against Apus, and Mosquitto with --against mosquitto; writes one report.",
        discussion: """
            Each run starts a fresh broker on a free port (Apus: APUS-BIN --port P
            --log-level warning; Mosquitto: mosquitto -c CONFIG, the config is written
            into the report), runs one scenario with this apus-bench as a child
            process (--broker-pid set, so the broker's CPU and RSS are measured) and
            stops the broker with SIGTERM. Rounds alternate the order of the brokers.
            Each entry of the report is the median round by rate (the best with
            "aggregate": "best" in the suite file); `rounds` lists every round's
            rate; loss, duplicates and errors are the worst of any round. A run that
            fails stays in the report with its error.
            """,
        helpNames: [.long])

    @Argument(help: "Suite file (JSON), e.g. IntegrationTests/load/ci.json.") var file: String
    @Option(name: .long, help: "Write the suite report (JSON) here.") var out: String
    @Option(name: .long, help: "Also run every scenario against this broker, started here: mosquitto.") var against: String?
    @Option(name: .long, help: "The apus binary to start.") var apusBin = ".build/release/apus"
    @Option(name: .long, help: "The mosquitto binary to start.") var mosquittoBin = "mosquitto"
    @Option(name: .customShort("h"), help: ArgumentHelp("Use the Apus already listening at this address (with --port) instead of starting one.", valueName: "host"))
    var host = "127.0.0.1"
    @Option(name: .shortAndLong, help: "Use the Apus already listening on this port instead of starting one.") var port: UInt16?
    @Option(name: .long, help: "With --port: the running broker's PID, for its CPU and RSS.") var brokerPid: Int32?
    @Option(name: .long, help: "Override the suite's number of rounds.") var rounds: Int?
    @Option(name: .long, help: "Hold an exclusive flock on this file during each run (broker start to stop), not in between.")
    var lock: String?
    @Option(name: .long, help: "TLS: the brokers started here listen with this certificate (PEM; with --tls-key), and the clients trust --cafile.")
    var tlsCert: String?
    @Option(name: .long, help: "TLS: the certificate's private key (PEM).") var tlsKey: String?
    @Option(name: .long, help: "TLS: the CA the clients trust (with --tls-cert, or for a running broker's TLS port).") var cafile: String?

    var tls: BrokerProcess.TLSFiles? { tlsCert.map { BrokerProcess.TLSFiles(cert: $0, key: tlsKey ?? "") } }

    struct Target { var label: String; var kind: BrokerProcess.Kind? }

    func run() throws {
        let spec: SuiteSpec
        do { spec = try JSONDecoder().decode(SuiteSpec.self, from: Data(contentsOf: URL(fileURLWithPath: file))) } catch {
            throw ValidationError("cannot read suite \(file): \(error)")
        }
        if let against, against != "mosquitto" { throw ValidationError("--against takes mosquitto") }
        if (tlsCert == nil) != (tlsKey == nil) || (tlsCert != nil && cafile == nil) {
            throw ValidationError("TLS needs --tls-cert, --tls-key and --cafile together")
        }
        BenchSocket.raiseOpenFileLimit()
        var targets = [Target(label: "apus", kind: port == nil ? .apus : nil)]
        if against != nil { targets.append(Target(label: "mosquitto", kind: .mosquitto)) }
        let mosquitto = BrokerProcess.locate(mosquittoBin)
        let roundCount = rounds ?? spec.rounds
        var runs: [String: [[BenchReport]]] = [:]  // label → per scenario → rounds
        for t in targets { runs[t.label] = Array(repeating: [], count: spec.scenarios.count) }
        var failures = 0
        for round in 1...max(1, roundCount) {
            let order = round % 2 == 1 ? targets : targets.reversed()
            for (i, entry) in spec.scenarios.enumerated() {
                for target in order {
                    let report = withLock { measure(entry, spec: spec, target: target, mosquitto: mosquitto) }
                    if !report.errors.isEmpty { failures += 1 }
                    FileHandle.standardOutput.write("round \(round)/\(roundCount) \(report.summary)\n".data(using: .utf8)!)
                    runs[target.label]![i].append(report)
                }
            }
        }
        var results: [BenchReport] = []
        for (i, _) in spec.scenarios.enumerated() {
            let shapeDonor = targets.flatMap { runs[$0.label]![i] }.first { $0.publishers + ($0.connections ?? 0) > 0 }
            for t in targets {
                let filled = runs[t.label]![i].map { r in shapeDonor.map { Suite.fillShape(r, from: $0) } ?? r }
                results.append(spec.aggregation.combine(filled))
            }
        }
        var brokers: [String: String] = [:]
        if let tls {
            brokers["apus"] = port == nil ? "\(apusBin) --config CONFIG --log-level warning (port: a free one per run), CONFIG:\n"
                + BrokerProcess.apusTLSConfig(port: 0, tls: tls).replacingOccurrences(of: "listener 0", with: "listener PORT")
                : "already running at \(host):\(port!) (TLS)"
        } else {
            brokers["apus"] = port == nil ? "\(apusBin) \(BrokerProcess.apusArguments(port: 0).joined(separator: " ")) (port: a free one per run)"
                : "already running at \(host):\(port!)"
        }
        if against != nil {
            brokers["mosquitto"] = "\(Suite.version(of: mosquitto)) (\(mosquitto) -c CONFIG), CONFIG:\n"
                + BrokerProcess.mosquittoConfig(port: 0, tls: tls).replacingOccurrences(of: "listener 0", with: "listener PORT")
        }
        let report = SuiteReport(suite: spec.name, command: CommandLine.arguments.joined(separator: " "),
                                 date: ISO8601DateFormatter().string(from: Date()), machine: Suite.machine(),
                                 rounds: roundCount, aggregate: spec.aggregation.rawValue, brokers: brokers, results: results)
        try BenchReport.encode(report).write(to: URL(fileURLWithPath: out))
        print("\(results.count) results (\(spec.scenarios.count) scenarios × \(targets.count) brokers, \(spec.aggregation.rawValue) of \(roundCount)) written to \(out)"
              + (failures > 0 ? "; \(failures) runs reported errors (kept in the report)" : ""))
    }

    /// One run of `entry` against `target`: start the broker, run apus-bench as a child, stop the broker.
    func measure(_ entry: SuiteSpec.Entry, spec: SuiteSpec, target: Target, mosquitto: String) -> BenchReport {
        var failed = BenchReport(label: target.label, scenario: entry.scenario, command: "")
        var broker: BrokerProcess? = nil
        if let kind = target.kind {
            do { broker = try BrokerProcess.start(kind, apusBinary: apusBin, mosquittoBinary: mosquitto, tls: tls) } catch {
                failed.errors = ["broker did not start: \(error)"]
                return failed
            }
        }
        defer { broker?.stop() }
        let json = "\(NSTemporaryDirectory())/apus-bench-suite-\(getpid())-\(target.label).json"
        try? FileManager.default.removeItem(atPath: json)
        var args = [entry.scenario, "-h", broker == nil ? host : "127.0.0.1", "-p", String(broker?.port ?? port!)] + entry.args
        args += ["--warmup", String(entry.warmup ?? spec.warmup), "--duration", String(entry.duration ?? spec.duration)]
        if let pid = broker?.pid ?? brokerPid { args += ["--broker-pid", String(pid)] }
        if let cafile { args += ["--cafile", cafile] }
        args += ["--label", target.label, "--json", json, "--quiet"]
        failed.command = "apus-bench " + args.joined(separator: " ")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = args
        let errors = Pipe()
        child.standardOutput = FileHandle.nullDevice
        child.standardError = errors
        do { try child.run() } catch {
            failed.errors = ["cannot start apus-bench: \(error)"]
            return failed
        }
        // A run that hangs is killed: its report then says so.
        let limit = (entry.warmup ?? spec.warmup) + (entry.duration ?? spec.duration) + 120
        let pid = child.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + limit) { if child.isRunning { kill(pid, SIGKILL) } }
        let stderrText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        guard let data = FileManager.default.contents(atPath: json), var report = try? BenchReport.load(data).first else {
            failed.errors = ["run failed (exit status \(child.terminationStatus)): \(stderrText.suffix(400))"]
            return failed
        }
        try? FileManager.default.removeItem(atPath: json)
        report.command = failed.command
        if let broker, !broker.process.isRunning { report.errors.append("\(target.label) exited during the run") }
        return report
    }

    /// Runs `body` holding the --lock file, if any.
    func withLock<T>(_ body: () -> T) -> T {
        guard let lock else { return body() }
        let fd = open(lock, O_CREAT | O_RDWR, 0o666)
        if fd >= 0 { flock(fd, LOCK_EX) }
        defer { if fd >= 0 { flock(fd, LOCK_UN); close(fd) } }
        return body()
    }

    /// A failed run's report takes its scenario shape from a run that worked, so it lines up with it.
    static func fillShape(_ r: BenchReport, from donor: BenchReport) -> BenchReport {
        guard r.publishers + (r.connections ?? 0) == 0, r.scenario == donor.scenario else { return r }
        var filled = r
        filled.publishers = donor.publishers; filled.subscribers = donor.subscribers
        filled.qos = donor.qos; filled.size = donor.size; filled.connections = donor.connections
        filled.mqttVersion = donor.mqttVersion; filled.cleanSession = donor.cleanSession
        return filled
    }

    static func version(of mosquitto: String) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mosquitto)
        p.arguments = ["-h"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        guard (try? p.run()) != nil else { return "mosquitto" }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text.split(separator: "\n").first.map(String.init) ?? "mosquitto"
    }

    static func machine() -> String {
        var u = utsname()
        uname(&u)
        func field<T>(_ value: T) -> String { withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        return "\(field(u.sysname)) \(field(u.release)) \(field(u.machine)), \(apus_available_cpus()) CPUs"
    }
}
