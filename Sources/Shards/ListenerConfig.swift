// Per-listener settings, as mosquitto's `struct mosquitto__listener`: where a listener binds,
// which protocol its connections speak, and the transport under it. Every MQTT listener is opened
// on every shard (SO_REUSEPORT); the HTTP listener on shard 0 only. TLS and WebSocket settings
// (certificates, paths) will be fields here, read from the keys that follow a `listener` line.

import Transport

/// The protocol the connections of a listener speak.
public enum ListenerProtocol: String, Sendable, Equatable, CaseIterable {
    case mqtt
    /// Metrics, health and the publish API (`http_listener`).
    case http
}

/// One listening address and what its connections speak.
public struct ListenerConfig: Sendable, Equatable {
    public var host: String
    /// 0 picks a free port (the bound one is in `ShardGroup.boundListeners`).
    public var port: UInt16
    public var protocolName: ListenerProtocol
    public var transport: Transport

    public init(host: String, port: UInt16, protocol: ListenerProtocol = .mqtt, transport: Transport = .plain) {
        self.host = host
        self.port = port
        self.protocolName = `protocol`
        self.transport = transport
    }

    /// `host:port`, for logs.
    public var address: String { "\(host):\(port)" }
}
