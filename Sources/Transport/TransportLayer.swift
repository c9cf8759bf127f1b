// The layers between a socket and the protocol on it (MQTT, HTTP): plain TCP, TLS, WebSocket,
// stackable (WebSocket over TLS: wss). Every layer is sans-IO, as the MQTT core
// is: bytes from the peer in → plaintext for the protocol and bytes for the peer out; plaintext
// from the protocol in → bytes for the peer out. The runtime owns the socket, moves the bytes and
// reports what a layer holds to the core, so the slow-consumer limits see everything queued for
// a client, encrypted or not.
//
// Layers are concrete types held in the `Transport` enum and dispatched by a switch, never as
// existentials: the plain case is the data path of most connections and stays free.

import ApusBase

/// What a layer says after input: go on, or the peer ended the layer (a TLS close_notify, a
/// WebSocket close frame) or broke it (the reason is logged and the connection closed).
public enum TransportStatus: Sendable, Equatable {
    case open
    case closed
    case failed(String)
}

/// One sans-IO layer between the socket and the protocol above.
public protocol TransportLayer {
    /// Bytes that arrived from the peer: what they carry for the protocol above is appended to
    /// `plaintext`; bytes the layer must answer with on its own (a handshake, a pong) to `wire`.
    mutating func received(_ bytes: UnsafeRawBufferPointer, plaintext: inout ByteBuffer, wire: inout ByteBuffer) -> TransportStatus

    /// The protocol's bytes for the peer: consumed from `plaintext`, appended to `wire` as the
    /// layer frames or encrypts them. A layer still in its handshake may keep them (`heldBytes`).
    mutating func send(_ plaintext: inout ByteBuffer, wire: inout ByteBuffer)

    /// Bytes the layer holds for the peer outside `wire` (counted against the client's limits).
    var heldBytes: Int { get }

    /// Whether the layer has finished its handshake: before, the protocol above gets no input.
    var isEstablished: Bool { get }
}

/// The transport of one connection, chosen by its listener.
public enum Transport: Sendable, Equatable {
    /// TCP only: the protocol's bytes are the socket's bytes. The runtime hands the provided
    /// receive buffer straight to the protocol and swaps the core's queue into the socket's send
    /// buffer (`PlainTransport` is the same, with copies, for tests and the generic path).
    case plain
    /// TLS (OpenSSL through a BIO over the layer's memory, the `TLS` module's `TLSSession`): what the socket carries
    /// is records; the protocol sees their plaintext.
    case tls
    /// MQTT over WebSocket (RFC 6455, the `WebSocket` module's `WebSocketSession`): an HTTP
    /// upgrade, then binary frames that carry the MQTT bytes (`protocol websockets`).
    case webSocket
    /// WebSocket over TLS (wss): records carry the upgrade and the frames.
    case secureWebSocket
    /// A bridge to another broker (the `Bridge` module's `BridgeSession`): an outbound connection
    /// whose socket carries the remote broker's MQTT, while the core sees the bridge as a client.
    case bridge

    public init(tls: Bool, webSocket: Bool) {
        switch (tls, webSocket) {
        case (false, false): self = .plain
        case (true, false): self = .tls
        case (false, true): self = .webSocket
        case (true, true): self = .secureWebSocket
        }
    }

    public var usesTLS: Bool { self == .tls || self == .secureWebSocket }
    public var usesWebSocket: Bool { self == .webSocket || self == .secureWebSocket }

    /// The scheme clients use (logs, the start-up line).
    public var name: String {
        switch self {
        case .plain: "tcp"
        case .tls: "tls"
        case .webSocket: "ws"
        case .secureWebSocket: "wss"
        case .bridge: "bridge"
        }
    }
}

/// A listener's WebSocket settings (`protocol websockets` and the `websockets_*` keys).
public struct WebSocketSettings: Sendable, Equatable {
    /// The listener speaks MQTT over WebSocket (`protocol websockets`).
    public var isEnabled = false
    /// The one request path accepted (`websockets_path`, e.g. EMQX's `/mqtt`); nil: any path, as
    /// mosquitto. Another path is answered 404.
    public var path: String? = nil
    /// Origins a browser's upgrade may come from (`websockets_origin`, repeatable); empty: any.
    /// A request without Origin (not a browser) is accepted.
    public var origins: [String] = []
    /// The upgrade request's size limit (request line and headers; `websockets_headers_size`);
    /// larger is answered 431.
    public var headersSize = 4096
    /// The largest message (one frame, or a fragmented message's frames together) a client may
    /// send (`websockets_max_frame_size`); nil: no limit (the payload is streamed to the MQTT
    /// decoder, which bounds each packet by max_packet_size). Larger: close 1009.
    public var maxFrameSize: Int? = nil
    /// Log the first address of the upgrade's X-Forwarded-For as the peer's
    /// (`websockets_x_forwarded_for`; for a listener behind a proxy you trust).
    public var trustForwardedFor = false

    public init() {}

    /// What is wrong with the settings taken together, if anything.
    public var problem: String? {
        if !isEnabled && (path != nil || !origins.isEmpty || maxFrameSize != nil || trustForwardedFor) {
            return "websockets_* settings on a listener without protocol websockets"
        }
        if let path, !path.hasPrefix("/") { return "websockets_path must start with /" }
        return nil
    }
}

/// A listener's TLS settings: mosquitto's per-listener keys. TLS is on for a listener that has a
/// `certfile` and a `keyfile`, as in mosquitto.
public struct TLSSettings: Sendable, Equatable {
    /// The lowest protocol version accepted (`tls_version`: tlsv1.1, tlsv1.2, tlsv1.3).
    public enum Version: String, Sendable, Equatable, CaseIterable {
        case tls11 = "tlsv1.1"
        case tls12 = "tlsv1.2"
        case tls13 = "tlsv1.3"
    }

    public var certfile: String?
    public var keyfile: String?
    public var cafile: String?
    public var capath: String?
    public var crlfile: String?
    /// The TLS 1.2 cipher list (OpenSSL's syntax) and the TLS 1.3 suites.
    public var ciphers: String?
    public var ciphersTLS13: String?
    /// Clients must present a certificate that `cafile`/`capath` verify.
    public var requireCertificate = false
    /// The client certificate's subject CN becomes the user name (no password is checked).
    public var useIdentityAsUsername = false
    /// The client certificate's whole subject (RFC 2253) becomes the user name.
    public var useSubjectAsUsername = false
    public var minimumVersion: Version = .tls12

    public init() {}

    /// Whether the listener speaks TLS.
    public var isEnabled: Bool { certfile != nil && keyfile != nil }

    /// What is wrong with the settings taken together, if anything.
    public var problem: String? {
        if (certfile == nil) != (keyfile == nil) { return "certfile and keyfile go together" }
        if !isEnabled && (cafile != nil || capath != nil || requireCertificate || crlfile != nil) {
            return "TLS settings without certfile and keyfile"
        }
        if requireCertificate && cafile == nil && capath == nil { return "require_certificate needs cafile or capath" }
        if (useIdentityAsUsername || useSubjectAsUsername) && !requireCertificate {
            return "use_identity_as_username and use_subject_as_username need require_certificate true"
        }
        return nil
    }
}
