// OpenSSL 3 (Debian libssl-dev) for the TLS layer: the library's headers, and small functions
// for what Swift cannot call (macros) or what is one step in C and ten in Swift (building a
// context from files, reading a certificate's identity). Everything here is pure memory work:
// the layer's bytes move through a BIO over memory it hands OpenSSL, never a socket.
#ifndef CAPUSTLS_H
#define CAPUSTLS_H
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stddef.h>

/// The settings of one server context (any string may be NULL).
typedef struct apus_tls_server_settings {
    const char *certfile;
    const char *keyfile;
    const char *cafile;
    const char *capath;
    const char *crlfile;
    const char *ciphers;       /* TLS 1.2 and below (SSL_CTX_set_cipher_list) */
    const char *ciphersuites;  /* TLS 1.3 (SSL_CTX_set_ciphersuites) */
    int require_certificate;
    int min_version;           /* TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION */
} apus_tls_server_settings;

/// A server context from `settings`, or NULL with the reason in `error`.
SSL_CTX *apus_tls_server_context(const apus_tls_server_settings *settings, char *error, size_t error_size);

/// A client context (tests, apus-bench): trusts `cafile`, presents `certfile`/`keyfile` when
/// given; NULL with the reason in `error`.
SSL_CTX *apus_tls_client_context(const char *cafile, const char *certfile, const char *keyfile, int min_version, int max_version,
                                 char *error, size_t error_size);

/// Where OpenSSL's output for the peer goes during one call: appended by `sink(context, …)`.
typedef void (*apus_tls_sink)(void *context, const void *bytes, size_t count);

/// A connection's I/O for OpenSSL, set around each call by the layer: the input not yet taken
/// (OpenSSL reads from it; empty reads as "retry") and the sink of its output. No buffer of its
/// own: OpenSSL takes the received bytes where the ring put them and writes its records straight
/// into the connection's send buffer.
typedef struct apus_tls_io {
    const unsigned char *input;
    size_t input_left;
    apus_tls_sink sink;
    void *sink_context;
} apus_tls_io;

/// A connection of `context` over a BIO that reads and writes through `io`, in the accept
/// (server) or connect (client) state; NULL if OpenSSL cannot make one.
SSL *apus_tls_new(SSL_CTX *context, int server, apus_tls_io *io);

/// The verified peer certificate's identity: its subject's CN (`subject` 0) or the whole subject
/// in RFC 2253 form (`subject` 1). Returns its length (0: no certificate, -1: no CN; truncated to
/// `size` - 1 bytes and NUL-terminated).
int apus_tls_peer_identity(SSL *ssl, int subject, char *out, size_t size);

/// The oldest queued OpenSSL error as text ("" if none), the queue cleared.
void apus_tls_error(char *out, size_t size);

/// The result of verifying the peer's certificate, as text (for the log of a failed handshake).
const char *apus_tls_verify_error(SSL *ssl);

#endif
