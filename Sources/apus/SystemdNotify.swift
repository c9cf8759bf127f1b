// systemd's notify protocol, spoken directly (no libsystemd): a datagram to $NOTIFY_SOCKET with
// `READY=1` once every shard serves, `WATCHDOG=1` every half WATCHDOG_USEC while every shard's
// loop ticks, `STOPPING=1` on shutdown (sd_notify(3); deploy/systemd/apus.service).

@preconcurrency import Glibc

struct SystemdNotifier {
    /// The socket address from NOTIFY_SOCKET (a path, or `@name` for the abstract namespace).
    private let address: [UInt8]?
    /// Half the watchdog period systemd asks for (WATCHDOG_USEC, for this process: WATCHDOG_PID).
    let watchdogInterval: Double?

    init(environment: (String) -> String? = { getenv($0).map { String(cString: $0) } }) {
        if let path = environment("NOTIFY_SOCKET"), !path.isEmpty, path.utf8.count < 108,
           path.hasPrefix("/") || path.hasPrefix("@") {
            address = Array(path.utf8)
        } else {
            address = nil
        }
        if let usec = environment("WATCHDOG_USEC").flatMap({ UInt64($0) }), usec > 0,
           environment("WATCHDOG_PID").flatMap({ Int32($0) }).map({ $0 == getpid() }) ?? true {
            watchdogInterval = Double(usec) / 2e6
        } else {
            watchdogInterval = nil
        }
    }

    var isActive: Bool { address != nil }

    /// Sends one state message; errors are ignored (systemd may be gone; nothing to do about it).
    func notify(_ state: String) {
        guard let address else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sun.sun_path) { path in
            for (i, byte) in address.enumerated() { path[i] = byte }
            if address.first == UInt8(ascii: "@") { path[0] = 0 }  // abstract namespace
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count + (address.first == UInt8(ascii: "@") ? 0 : 1))
        var message = Array(state.utf8)
        _ = withUnsafePointer(to: &sun) { sp in
            sp.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                sendto(fd, &message, message.count, Int32(MSG_NOSIGNAL), sa, length)
            }
        }
    }
}
