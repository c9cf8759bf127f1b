// See CApusTLS.h.
#include "CApusTLS.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void set_error(char *error, size_t size, const char *what) {
    char detail[256] = "";
    unsigned long code = ERR_get_error();
    if (code != 0) ERR_error_string_n(code, detail, sizeof detail);
    ERR_clear_error();
    snprintf(error, size, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

SSL_CTX *apus_tls_server_context(const apus_tls_server_settings *s, char *error, size_t error_size) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { set_error(error, error_size, "SSL_CTX_new"); return NULL; }
    // No renegotiation, no compression; a FIN without close_notify ends the stream, not an error.
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF
                                 | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (!SSL_CTX_set_min_proto_version(ctx, s->min_version ? s->min_version : TLS1_2_VERSION)) {
        set_error(error, error_size, "tls_version"); goto fail;
    }
    if (s->certfile && SSL_CTX_use_certificate_chain_file(ctx, s->certfile) != 1) {
        char what[512]; snprintf(what, sizeof what, "certfile %s", s->certfile); set_error(error, error_size, what); goto fail;
    }
    if (s->keyfile && SSL_CTX_use_PrivateKey_file(ctx, s->keyfile, SSL_FILETYPE_PEM) != 1) {
        char what[512]; snprintf(what, sizeof what, "keyfile %s", s->keyfile); set_error(error, error_size, what); goto fail;
    }
    if (s->certfile && s->keyfile && SSL_CTX_check_private_key(ctx) != 1) {
        set_error(error, error_size, "keyfile does not match certfile"); goto fail;
    }
    if ((s->cafile || s->capath) && SSL_CTX_load_verify_locations(ctx, s->cafile, s->capath) != 1) {
        char what[1100]; snprintf(what, sizeof what, "cafile %s / capath %s", s->cafile ? s->cafile : "-", s->capath ? s->capath : "-");
        set_error(error, error_size, what); goto fail;
    }
    if (s->ciphers && SSL_CTX_set_cipher_list(ctx, s->ciphers) != 1) { set_error(error, error_size, "ciphers"); goto fail; }
    if (s->ciphersuites && SSL_CTX_set_ciphersuites(ctx, s->ciphersuites) != 1) { set_error(error, error_size, "ciphers_tls1.3"); goto fail; }
    if (s->crlfile) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (!lookup || X509_load_crl_file(lookup, s->crlfile, X509_FILETYPE_PEM) < 1) {
            char what[512]; snprintf(what, sizeof what, "crlfile %s", s->crlfile); set_error(error, error_size, what); goto fail;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    if (s->require_certificate) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    } else if (s->cafile || s->capath) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    // TLS 1.3 sends session tickets after the handshake; one is enough for a broker's clients.
    SSL_CTX_set_num_tickets(ctx, 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *apus_tls_client_context(const char *cafile, const char *certfile, const char *keyfile, int min_version, int max_version,
                                 char *error, size_t error_size) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { set_error(error, error_size, "SSL_CTX_new"); return NULL; }
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (min_version) SSL_CTX_set_min_proto_version(ctx, min_version);
    if (max_version) SSL_CTX_set_max_proto_version(ctx, max_version);
    if (cafile) {
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) { set_error(error, error_size, "cafile"); goto fail; }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (certfile && SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) { set_error(error, error_size, "certfile"); goto fail; }
    if (keyfile && SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) { set_error(error, error_size, "keyfile"); goto fail; }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int io_write(BIO *bio, const char *data, int length) {
    apus_tls_io *io = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (!io->sink) { BIO_set_retry_write(bio); return -1; }
    io->sink(io->sink_context, data, (size_t)length);
    return length;
}

static int io_read(BIO *bio, char *out, int length) {
    apus_tls_io *io = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (io->input_left == 0 || length <= 0) { BIO_set_retry_read(bio); return -1; }
    size_t n = io->input_left < (size_t)length ? io->input_left : (size_t)length;
    memcpy(out, io->input, n);
    io->input += n;
    io->input_left -= n;
    return (int)n;
}

static long io_ctrl(BIO *bio, int command, long number, void *pointer) {
    (void)bio; (void)number; (void)pointer;
    switch (command) {
    case BIO_CTRL_FLUSH: return 1;  // every write already reached the sink
    default: return 0;
    }
}

static int io_create(BIO *bio) { BIO_set_init(bio, 1); return 1; }
static int io_destroy(BIO *bio) { BIO_set_data(bio, NULL); return 1; }

static BIO_METHOD *io_method;
static pthread_once_t io_method_once = PTHREAD_ONCE_INIT;

static void make_io_method(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "apus ring I/O");
    if (!m) return;
    BIO_meth_set_write(m, io_write);
    BIO_meth_set_read(m, io_read);
    BIO_meth_set_ctrl(m, io_ctrl);
    BIO_meth_set_create(m, io_create);
    BIO_meth_set_destroy(m, io_destroy);
    io_method = m;
}

SSL *apus_tls_new(SSL_CTX *context, int server, apus_tls_io *io) {
    pthread_once(&io_method_once, make_io_method);
    if (!io_method) return NULL;
    SSL *ssl = SSL_new(context);
    if (!ssl) return NULL;
    BIO *bio = BIO_new(io_method);
    if (!bio) { SSL_free(ssl); return NULL; }
    BIO_set_data(bio, io);
    SSL_set_bio(ssl, bio, bio);  // one BIO both ways: one reference taken
    if (server) SSL_set_accept_state(ssl); else SSL_set_connect_state(ssl);
    return ssl;
}

int apus_tls_peer_identity(SSL *ssl, int subject, char *out, size_t size) {
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return 0;
    int length = -1;
    X509_NAME *name = X509_get_subject_name(cert);
    if (subject) {
        BIO *bio = BIO_new(BIO_s_mem());
        if (bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
            int n = BIO_read(bio, out, (int)(size - 1));
            if (n >= 0) { out[n] = 0; length = n; }
        }
        BIO_free(bio);
    } else {
        int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
        if (index >= 0) {
            ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
            int n = ASN1_STRING_length(data);
            if (n >= (int)size) n = (int)size - 1;
            memcpy(out, ASN1_STRING_get0_data(data), (size_t)n);
            out[n] = 0;
            length = n;
        }
    }
    X509_free(cert);
    return length;
}

void apus_tls_error(char *out, size_t size) {
    unsigned long code = ERR_get_error();
    if (code == 0) { if (size) out[0] = 0; return; }
    ERR_error_string_n(code, out, size);
    ERR_clear_error();
}

const char *apus_tls_verify_error(SSL *ssl) {
    long result = SSL_get_verify_result(ssl);
    return result == X509_V_OK ? "" : X509_verify_cert_error_string(result);
}
