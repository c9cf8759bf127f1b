// tcp-pump: what loopback TCP itself carries on this machine (issue 21's ceiling for large
// payloads). N connections over 127.0.0.1; one thread writes CHUNK-byte blocks into each as fast
// as the socket takes them, another reads them all (each thread one epoll loop, as a broker's
// shard and a load generator's engine are). --relay adds the broker's shape without MQTT: a
// relay thread reads each connection and writes what it read to a second connection, so every
// byte crosses loopback twice, as through a broker.
//
//   tcp-pump [--conns N] [--chunk BYTES] [--seconds S] [--relay]
//
// Prints one JSON object: bytes/s delivered to the reader, and CPU seconds per GB of all threads.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int conns = 4, relay = 0;
static size_t chunk = 262144;
static double seconds = 5;
static volatile int stop;
static uint64_t delivered;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

// A connected pair of loopback TCP sockets: [0] writes, [1] reads.
static void tcp_pair(int fds[2]) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len)) { perror("listen"); exit(2); }
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fds[0], (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(2); }
    fds[1] = accept(l, NULL, NULL);
    close(l);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
}

typedef struct { int *in; int *out; unsigned n; int mode; } job_t;  // mode 0 write, 1 read, 2 relay

static void *run(void *arg) {
    job_t *j = arg;
    char *buf = malloc(chunk);
    memset(buf, 'a', chunk);
    int ep = epoll_create1(0);
    for (unsigned i = 0; i < j->n; i++) {
        struct epoll_event e = {.events = j->mode == 0 ? EPOLLOUT : EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, j->mode == 0 ? j->out[i] : j->in[i], &e);
        if (j->mode == 2) {  // the downstream socket, watched only while a write waits for room
            struct epoll_event o = {.events = 0, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, j->out[i], &o);
        }
    }
    // relay: what was read and not yet written, per connection
    char **pend = calloc((size_t)j->n, sizeof *pend);
    size_t *plen = calloc((size_t)j->n, sizeof *plen), *poff = calloc((size_t)j->n, sizeof *poff);
    for (unsigned i = 0; j->mode == 2 && i < j->n; i++) pend[i] = malloc(chunk);
    struct epoll_event ev[64];
    while (!stop) {
        int r = epoll_wait(ep, ev, 64, 10);
        for (int e = 0; e < r; e++) {
            int i = (int)ev[e].data.u32;
            if (j->mode == 0) {
                while (write(j->out[i], buf, chunk) > 0) {}
            } else if (j->mode == 1) {
                ssize_t got;
                while ((got = read(j->in[i], buf, chunk)) > 0) __atomic_fetch_add(&delivered, (uint64_t)got, __ATOMIC_RELAXED);
            } else {
                for (;;) {
                    if (poff[i] < plen[i]) {
                        ssize_t w = write(j->out[i], pend[i] + poff[i], plen[i] - poff[i]);
                        if (w <= 0) {  // the downstream socket is full: stop reading until it has room
                            struct epoll_event in = {.events = 0, .data.u32 = (uint32_t)i}, out = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
                            epoll_ctl(ep, EPOLL_CTL_MOD, j->in[i], &in);
                            epoll_ctl(ep, EPOLL_CTL_MOD, j->out[i], &out);
                            break;
                        }
                        poff[i] += (size_t)w;
                        if (poff[i] == plen[i] && (ev[e].events & EPOLLOUT)) {
                            struct epoll_event in = {.events = EPOLLIN, .data.u32 = (uint32_t)i}, out = {.events = 0, .data.u32 = (uint32_t)i};
                            epoll_ctl(ep, EPOLL_CTL_MOD, j->in[i], &in);
                            epoll_ctl(ep, EPOLL_CTL_MOD, j->out[i], &out);
                            ev[e].events = EPOLLIN;
                        }
                        continue;
                    }
                    ssize_t got = read(j->in[i], pend[i], chunk);
                    if (got <= 0) break;
                    plen[i] = (size_t)got;
                    poff[i] = 0;
                }
            }
        }
    }
    return NULL;
}

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--conns") && i + 1 < argc) conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--relay")) relay = 1;
        else { fprintf(stderr, "usage: tcp-pump [--conns N] [--chunk BYTES] [--seconds S] [--relay]\n"); return 2; }
    }
    int *w = calloc((size_t)conns, sizeof(int)), *r = calloc((size_t)conns, sizeof(int));
    int *ri = calloc((size_t)conns, sizeof(int)), *ro = calloc((size_t)conns, sizeof(int));
    for (int i = 0; i < conns; i++) {
        int a[2];
        tcp_pair(a);
        w[i] = a[0]; ri[i] = a[1];
        if (relay) { int b[2]; tcp_pair(b); ro[i] = b[0]; r[i] = b[1]; } else r[i] = a[1];
    }
    job_t writer = {.out = w, .n = (unsigned)conns, .mode = 0}, reader = {.in = r, .n = (unsigned)conns, .mode = 1},
          mid = {.in = ri, .out = ro, .n = (unsigned)conns, .mode = 2};
    pthread_t t[3];
    double c0 = cpu();
    pthread_create(&t[0], NULL, run, &writer);
    pthread_create(&t[1], NULL, run, &reader);
    if (relay) pthread_create(&t[2], NULL, run, &mid);
    usleep(500000);  // warm-up
    uint64_t d0 = __atomic_load_n(&delivered, __ATOMIC_RELAXED), t0 = now_ns();
    double cw = cpu();
    usleep((useconds_t)(seconds * 1e6));
    uint64_t d1 = __atomic_load_n(&delivered, __ATOMIC_RELAXED), t1 = now_ns();
    double cc = cpu() - cw;
    stop = 1;
    // The threads see `stop` within an epoll timeout: joined before printing, so the process
    // never exits under a thread still writing (a crash there lost the buffered output).
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    if (relay) pthread_join(t[2], NULL);
    (void)c0;
    double bps = (double)(d1 - d0) / ((double)(t1 - t0) / 1e9);
    printf("{\"tool\":\"tcp-pump\",\"connections\":%d,\"chunk\":%zu,\"relay\":%s,\"bytesPerSecond\":%.0f,\"cpuSecondsPerGB\":%.3f}\n",
           conns, chunk, relay ? "true" : "false", bps, cc / ((double)(d1 - d0) / 1e9));
    return 0;
}
