// One OpenSSL context per TLS listener: built from the listener's files, then read-only and
// shared by every shard (OpenSSL's SSL_CTX is safe to use from several threads once set up;
// SSL_new only takes a reference). A SIGHUP builds a new one and the shards take it at their tick;
// connections keep the context they started with. Ciphers are fetched once, when the context is
// made (OpenSSL 3.0 contends on a lock when they are fetched per connection).

import CApusTLS
import Transport

/// Why a context could not be made (the file and OpenSSL's reason).
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// An OpenSSL context (SSL_CTX), immutable once made.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// Whether it is a server's (connections accept) or a client's (connections connect).
    public let isServer: Bool
    /// The listener settings it was made from (servers).
    public let settings: TLSSettings?

    /// A listener's server context; throws with the first problem (a file that does not load, a key
    /// that does not match its certificate, a cipher list OpenSSL does not take).
    public init(server settings: TLSSettings) throws(TLSError) {
        if let problem = settings.problem { throw TLSError(problem) }
        guard settings.isEnabled else { throw TLSError("TLS needs certfile and keyfile") }
        var error = [CChar](repeating: 0, count: 512)
        let version = settings.minimumVersion.openSSLCode
        let made: OpaquePointer? = withOptionalCStrings([settings.certfile, settings.keyfile, settings.cafile, settings.capath,
                                                         settings.crlfile, settings.ciphers, settings.ciphersTLS13]) { c in
            var s = apus_tls_server_settings(certfile: c[0], keyfile: c[1], cafile: c[2], capath: c[3], crlfile: c[4], ciphers: c[5],
                                             ciphersuites: c[6], require_certificate: settings.requireCertificate ? 1 : 0,
                                             min_version: version)
            return apus_tls_server_context(&s, &error, error.count)
        }
        guard let made else { throw TLSError(text(error)) }
        pointer = made
        isServer = true
        self.settings = settings
    }

    /// A client context (tests, the load generator): trusts `cafile`, presents a certificate when
    /// given; `maximumVersion` caps what it offers (tests of refused versions).
    public init(clientTrusting cafile: String?, certfile: String? = nil, keyfile: String? = nil,
                minimumVersion: TLSSettings.Version? = nil, maximumVersion: TLSSettings.Version? = nil) throws(TLSError) {
        func code(_ v: TLSSettings.Version?) -> Int32 { v?.openSSLCode ?? 0 }
        var error = [CChar](repeating: 0, count: 512)
        let made: OpaquePointer? = withOptionalCStrings([cafile, certfile, keyfile]) { c in
            apus_tls_client_context(c[0], c[1], c[2], code(minimumVersion), code(maximumVersion), &error, error.count)
        }
        guard let made else { throw TLSError(text(error)) }
        pointer = made
        isServer = false
        settings = nil
    }

    deinit { SSL_CTX_free(pointer) }
}

/// Calls `body` with C strings for `strings` (NULL for nil), valid during the call.
func withOptionalCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { for c in copies { free(c) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}

/// A NUL-terminated C buffer as a String.
func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension TLSSettings.Version {
    /// OpenSSL's constant for the version (SSL_CTX_set_min_proto_version).
    var openSSLCode: Int32 {
        switch self {
        case .tls11: TLS1_1_VERSION
        case .tls12: TLS1_2_VERSION
        case .tls13: TLS1_3_VERSION
        }
    }
}
