// What OpenSSL keeps allocated for one idle server connection, by call site: a server and a
// client SSL (the server with Apus's context options, TLS 1.3, one session ticket) talk through
// memory BIOs; the third connection's server-side allocations still live after the handshake, a
// round trip and SSL_free_buffers are printed (the first ones also fill OpenSSL's global caches).
// The memory BIOs' own allocations are listed (Apus has one BIO of its own instead).
//
//     gcc -O1 -o openssl-allocations openssl-allocations.c -lssl -lcrypto
//     ./openssl-allocations server.crt server.key ca.crt
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { void *pointer; size_t size; const char *file; int line; int server; } record;
static record records[200000];
static int count;
static int server_side;

static void forget(void *p) {
    for (int i = count - 1; i >= 0; i--) if (records[i].pointer == p) { records[i].pointer = NULL; return; }
}
static void *logged_malloc(size_t n, const char *file, int line) {
    void *p = malloc(n);
    if (count < 200000) records[count++] = (record){p, n, file, line, server_side};
    return p;
}
static void *logged_realloc(void *p, size_t n, const char *file, int line) {
    if (p) forget(p);
    void *q = realloc(p, n);
    if (count < 200000) records[count++] = (record){q, n, file, line, server_side};
    return q;
}
static void logged_free(void *p, const char *file, int line) { (void)file; (void)line; if (p) { forget(p); free(p); } }

static void pump(BIO *from, BIO *to) {
    char buffer[65536];
    int n;
    while ((n = BIO_read(from, buffer, sizeof buffer)) > 0) BIO_write(to, buffer, n);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s server.crt server.key ca.crt\n", argv[0]); return 2; }
    CRYPTO_set_mem_functions(logged_malloc, logged_realloc, logged_free);
    SSL_CTX *server_context = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_options(server_context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF
                                            | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(server_context, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_use_certificate_chain_file(server_context, argv[1]);
    SSL_CTX_use_PrivateKey_file(server_context, argv[2], SSL_FILETYPE_PEM);
    SSL_CTX_set_num_tickets(server_context, 1);
    SSL_CTX *client_context = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(client_context, argv[3], NULL);
    SSL_CTX_set_verify(client_context, SSL_VERIFY_PEER, NULL);
    int start = 0;
    SSL *server = NULL;
    for (int round = 0; round < 3; round++) {
        start = count;
        server_side = 1;
        server = SSL_new(server_context);
        BIO *server_in = BIO_new(BIO_s_mem()), *server_out = BIO_new(BIO_s_mem());
        SSL_set_bio(server, server_in, server_out);
        SSL_set_accept_state(server);
        server_side = 0;
        SSL *client = SSL_new(client_context);
        BIO *client_in = BIO_new(BIO_s_mem()), *client_out = BIO_new(BIO_s_mem());
        SSL_set_bio(client, client_in, client_out);
        SSL_set_connect_state(client);
        for (int i = 0; i < 10; i++) {
            server_side = 0; SSL_do_handshake(client); pump(client_out, server_in);
            server_side = 1; SSL_do_handshake(server); pump(server_out, client_in);
        }
        char buffer[100];
        server_side = 0; SSL_write(client, "hello", 5); pump(client_out, server_in);
        server_side = 1; SSL_read(server, buffer, sizeof buffer); SSL_write(server, "x", 1); pump(server_out, client_in);
        server_side = 0; SSL_read(client, buffer, sizeof buffer);
        server_side = 1; SSL_free_buffers(server);
    }
    printf("one idle server connection (%s, %s), OpenSSL %s; live allocations after the handshake:\n",
           SSL_get_version(server), SSL_get_cipher(server), OpenSSL_version(OPENSSL_VERSION));
    size_t total = 0, bio = 0;
    int n = 0;
    for (int i = start; i < count; i++) {
        if (!records[i].pointer || !records[i].server) continue;
        printf("%6zu %s:%d\n", records[i].size, records[i].file, records[i].line);
        total += records[i].size;
        n++;
        if (strstr(records[i].file, "bss_mem.c") || strstr(records[i].file, "buffer.c")) bio += records[i].size;
    }
    printf("%d allocations, %zu bytes (of which %zu the memory BIOs' buffers)\n", n, total, bio);
    return 0;
}
