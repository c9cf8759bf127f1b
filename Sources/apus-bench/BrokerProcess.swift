// A broker that `apus-bench suite` starts for one run on a free port and stops with SIGTERM:
// the `apus` binary, or Mosquitto with a generated configuration comparable to Apus's defaults.

import Foundation
@preconcurrency import Glibc

final class BrokerProcess {
    enum Kind: String, Sendable { case apus, mosquitto }

    /// TLS for a run: the server's certificate and key both brokers listen with (clients trust `cafile`).
    struct TLSFiles: Sendable {
        var cert: String
        var key: String
    }

    let kind: Kind
    let port: UInt16
    let process: Process
    /// The broker's stdout and stderr, for the error message when it does not start.
    let logPath: String
    var pid: Int32 { process.processIdentifier }

    /// Mosquitto's configuration for a run, set as close to Apus's defaults as Mosquitto allows:
    /// Nagle off (Apus disables it too), no connection limit, the same queue and inflight limits,
    /// no persistence file, and no log line per connection (Apus logs none at warning level).
    static func mosquittoConfig(port: UInt16, tls: TLSFiles? = nil) -> String {
        """
        listener \(port) 127.0.0.1
        \(tls.map { "certfile \($0.cert)\nkeyfile \($0.key)\n" } ?? "")allow_anonymous true
        max_connections -1
        set_tcp_nodelay true
        max_queued_messages 1000
        max_inflight_messages 20
        persistence false
        connection_messages false
        log_dest stderr
        log_type error
        log_type warning

        """
    }

    /// Apus's command line for a run (its defaults otherwise: one shard per CPU).
    static func apusArguments(port: UInt16) -> [String] { ["--port", String(port), "--log-level", "warning"] }

    /// Apus's configuration file for a TLS run: one TLS listener (the same keys as Mosquitto's).
    static func apusTLSConfig(port: UInt16, tls: TLSFiles) -> String {
        "listener \(port) 127.0.0.1\ncertfile \(tls.cert)\nkeyfile \(tls.key)\n"
    }

    /// Starts a broker on a free port and waits (up to 10 s) until it accepts connections.
    static func start(_ kind: Kind, apusBinary: String, mosquittoBinary: String, tls: TLSFiles? = nil) throws -> BrokerProcess {
        let port = try freePort()
        let process = Process()
        let stem = "\(NSTemporaryDirectory())/apus-bench-\(getpid())-\(kind.rawValue)-\(port)"
        switch kind {
        case .apus:
            process.executableURL = URL(fileURLWithPath: apusBinary)
            if let tls {
                try apusTLSConfig(port: port, tls: tls).write(toFile: stem + ".conf", atomically: true, encoding: .utf8)
                process.arguments = ["--config", stem + ".conf", "--log-level", "warning"]
            } else {
                process.arguments = apusArguments(port: port)
            }
        case .mosquitto:
            try mosquittoConfig(port: port, tls: tls).write(toFile: stem + ".conf", atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: mosquittoBinary)
            process.arguments = ["-c", stem + ".conf"]
        }
        _ = FileManager.default.createFile(atPath: stem + ".log", contents: nil)
        let log = FileHandle(forWritingAtPath: stem + ".log")
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let broker = BrokerProcess(kind: kind, port: port, process: process, logPath: stem + ".log")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if !process.isRunning { break }
            if let fd = try? BenchSocket.connect(host: "127.0.0.1", port: port) { close(fd); return broker }
            usleep(50_000)
        }
        broker.stop()
        let output = (try? String(contentsOfFile: broker.logPath, encoding: .utf8)) ?? ""
        throw BenchError("\(kind.rawValue) did not start on port \(port): \(output.suffix(500))")
    }

    private init(kind: Kind, port: UInt16, process: Process, logPath: String) {
        self.kind = kind; self.port = port; self.process = process; self.logPath = logPath
    }

    /// SIGTERM, then SIGKILL after 10 s.
    func stop() {
        if process.isRunning { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: logPath)
        try? FileManager.default.removeItem(atPath: logPath.replacingOccurrences(of: ".log", with: ".conf"))
    }

    /// A TCP port nobody listens on now (bound to port 0, then released).
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 ? getsockname(fd, $0, &length) : -1 }
        }
        guard rc == 0 else { throw BenchError("bind: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// The path of executable `name`: as given when it has a slash, else found on PATH or in the sbin directories.
    static func locate(_ name: String) -> String {
        if name.contains("/") { return name }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for dir in path + ["/usr/sbin", "/usr/local/sbin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return name
    }
}
