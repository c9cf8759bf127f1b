// Per-listener settings, as mosquitto's `struct mosquitto__listener`: where a listener binds,
// which protocol its connections speak, and the transport under it. Every MQTT listener is opened
// on every shard (SO_REUSEPORT); the HTTP listener on shard 0 only. TLS and WebSocket settings
// are read from the keys that follow a `listener` line (certfile, keyfile, cafile, …,
// `protocol websockets`, websockets_*).

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
    /// TLS is on when these have a certfile and a keyfile.
    public var tls = TLSSettings()
    /// MQTT over WebSocket (`protocol websockets`), over TLS too when `tls` is on (wss).
    public var webSocket = WebSocketSettings()

    public init(host: String, port: UInt16, protocol: ListenerProtocol = .mqtt) {
        self.host = host
        self.port = port
        self.protocolName = `protocol`
    }

    /// The transport of the listener's connections.
    public var transport: Transport { Transport(tls: tls.isEnabled, webSocket: webSocket.isEnabled) }

    /// `host:port`, for logs.
    public var address: String { "\(host):\(port)" }
}
