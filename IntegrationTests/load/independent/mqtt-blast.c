// mqtt-blast: an independent MQTT 3.1.1 load tool (C, epoll, one thread), written from the
// spec and sharing no code with apus-bench, to check apus-bench's numbers against (issue 21).
//
//   mqtt-blast [-h HOST] [-p PORT] [--pairs N | --fan-out S] [-q 0|1] [-s BYTES]
//              [--window W | --rate R] [--warmup S] [--duration S] [--broker-pid PID]
//              [--cpu N] [--label L]
//   mqtt-blast --storm N [--batch B] [-h HOST] [-p PORT] [--broker-pid PID]
//   mqtt-blast --subscriptions CLIENTS [--filters F] [--pubs P] [--window W] [--duration S] ...
//
// pairs: publisher i -> subscriber i on blast/PID/i; fan-out: one publisher on blast/PID/0 ->
// S subscribers. Closed loop: at most W messages of a publisher not yet received everywhere;
// paced: R messages/s per publisher. Every payload starts with a sequence number and the send
// time (CLOCK_MONOTONIC); each subscriber checks the sequence (lost, duplicated) and records
// send->receive latency. Prints one JSON object: msg/s over the measured interval (after the
// warm-up), bytes/s, loss, latency percentiles, its own CPU seconds and the broker's (/proc).
// --storm: N clients connect (non-blocking, at most B at a time), each sending CONNECT with its
// TCP handshake done and DISCONNECT at its CONNACK, then closing: connects/s and connect latency.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int is_sub;
    int index;  // publisher index, or subscriber index
    uint8_t *out;
    size_t out_len, out_cap, out_off;
    uint8_t *in;
    size_t in_len, in_cap;
    int want_write;
    uint64_t next_seq;  // subscriber: the next sequence number expected
    uint64_t received, lost, dup;
    uint16_t next_pid;
} conn_t;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

// Latency: 1 µs buckets below 100 ms, then 1 ms buckets up to 100 s.
#define FINE 100000
#define COARSE 100000
static uint64_t fine[FINE], coarse[COARSE], lat_count, lat_max;
static void record_latency(uint64_t us) {
    if (us < FINE) fine[us]++;
    else if (us / 1000 < COARSE) coarse[us / 1000]++;
    else coarse[COARSE - 1]++;
    lat_count++;
    if (us > lat_max) lat_max = us;
}
static double percentile(double p) {
    if (lat_count == 0) return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)lat_count);
    if (want >= lat_count) want = lat_count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < FINE; i++) { seen += fine[i]; if (seen > want) return i; }
    for (int i = 0; i < COARSE; i++) { seen += coarse[i]; if (seen > want) return (double)i * 1000; }
    return (double)lat_max;
}

static void reserve(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 65536;
    while (c < need) c *= 2;
    *buf = realloc(*buf, c);
    if (!*buf) die("realloc");
    *cap = c;
}

static size_t put_varint(uint8_t *p, size_t v) {
    size_t n = 0;
    do { uint8_t b = v % 128; v /= 128; if (v) b |= 128; p[n++] = b; } while (v);
    return n;
}

// Whether a whole packet starts at `buf` (`avail` bytes there): then its fixed header's length
// (type byte and remaining length) goes to *header and its remaining length to *body.
static int whole_packet(const uint8_t *buf, size_t avail, size_t *header, size_t *body) {
    size_t len = 0, mul = 1, h = 1;
    for (;;) {
        if (h >= avail || h > 4) return 0;
        uint8_t b = buf[h++];
        len += (b & 127) * mul; mul *= 128;
        if (!(b & 128)) break;
    }
    if (avail - h < len) return 0;
    *header = h; *body = len;
    return 1;
}

static void blocking_write(int fd, const uint8_t *p, size_t n) {
    while (n) { ssize_t w = write(fd, p, n); if (w <= 0) die("write"); p += w; n -= (size_t)w; }
}
// Reads one whole packet (blocking); returns its type nibble.
static int blocking_packet(int fd) {
    uint8_t h;
    if (read(fd, &h, 1) != 1) die("read");
    size_t len = 0, mul = 1;
    for (;;) { uint8_t b; if (read(fd, &b, 1) != 1) die("read"); len += (b & 127) * mul; mul *= 128; if (!(b & 128)) break; }
    uint8_t skip[256];
    while (len) { ssize_t r = read(fd, skip, len < sizeof skip ? len : sizeof skip); if (r <= 0) die("read"); len -= (size_t)r; }
    return h >> 4;
}

static int open_client(const char *host, int port, const char *id) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t p[128];
    size_t idl = strlen(id), body = 10 + 2 + idl, n = 0;
    p[n++] = 0x10;
    n += put_varint(p + n, body);
    memcpy(p + n, "\x00\x04MQTT\x04\x02\x02\x58", 10); n += 10;  // 3.1.1, clean session, keep alive 600 s
    p[n++] = (uint8_t)(idl >> 8); p[n++] = (uint8_t)idl;
    memcpy(p + n, id, idl); n += idl;
    blocking_write(fd, p, n);
    if (blocking_packet(fd) != 2) { fprintf(stderr, "no CONNACK\n"); exit(2); }
    return fd;
}

static void subscribe(int fd, const char *topic, int qos) {
    uint8_t p[256];
    size_t tl = strlen(topic), n = 0;
    p[n++] = 0x82;
    n += put_varint(p + n, 2 + 2 + tl + 1);
    p[n++] = 0; p[n++] = 1;
    p[n++] = (uint8_t)(tl >> 8); p[n++] = (uint8_t)tl;
    memcpy(p + n, topic, tl); n += tl;
    p[n++] = (uint8_t)qos;
    blocking_write(fd, p, n);
    if (blocking_packet(fd) != 9) { fprintf(stderr, "no SUBACK\n"); exit(2); }
}

static double cpu_seconds_self(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}
static double cpu_seconds_pid(int pid) {
    if (pid <= 0) return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

// --storm: connects per second with at most `batch` attempts in flight.
static int storm(const char *host, int port, int total, int batch, int broker_pid) {
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    uint64_t *started = calloc((size_t)total, sizeof *started);
    int *state = calloc((size_t)total, sizeof *state);  // 0 connecting, 1 CONNECT sent
    int next = 0, done = 0, failed = 0, inflight = 0;
    double self0 = cpu_seconds_self(), broker0 = cpu_seconds_pid(broker_pid);
    uint64_t t0 = now_ns(), last = t0;
    struct epoll_event events[256];
    while (done + failed < total) {
        while (inflight < batch && next < total) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fd < 0) die("socket");
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            started[next] = now_ns();
            if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
            struct epoll_event e = {.events = EPOLLOUT, .data.u64 = (uint64_t)next << 32 | (uint32_t)fd};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            next++; inflight++;
        }
        int ready = epoll_wait(ep, events, 256, 1000);
        for (int i = 0; i < ready; i++) {
            int fd = (int)(uint32_t)events[i].data.u64, k = (int)(events[i].data.u64 >> 32);
            if (events[i].events & (EPOLLERR | EPOLLHUP)) { failed++; inflight--; close(fd); continue; }
            if (state[k] == 0) {
                char id[32];
                int idl = snprintf(id, sizeof id, "storm-%d", k);
                uint8_t p[64];
                size_t n = 0;
                p[n++] = 0x10; p[n++] = (uint8_t)(12 + idl);
                memcpy(p + n, "\x00\x04MQTT\x04\x02\x00\x3c", 10); n += 10;
                p[n++] = 0; p[n++] = (uint8_t)idl;
                memcpy(p + n, id, (size_t)idl); n += (size_t)idl;
                if (write(fd, p, n) != (ssize_t)n) { failed++; inflight--; close(fd); continue; }
                state[k] = 1;
                struct epoll_event e = {.events = EPOLLIN, .data.u64 = events[i].data.u64};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
            } else {
                uint8_t ack[4];
                ssize_t r = read(fd, ack, 4);
                if (r != 4 || ack[0] != 0x20 || ack[3] != 0) { failed++; inflight--; close(fd); continue; }
                last = now_ns();
                record_latency((last - started[k]) / 1000);
                static const uint8_t disconnect[2] = {0xE0, 0};
                if (write(fd, disconnect, 2) != 2) {}
                close(fd);
                done++; inflight--;
            }
        }
    }
    double secs = (double)(last - t0) / 1e9, self_cpu = cpu_seconds_self() - self0, broker_cpu = cpu_seconds_pid(broker_pid) - broker0;
    printf("{\"tool\":\"mqtt-blast\",\"scenario\":\"connect-storm\",\"connections\":%d,\"batch\":%d,\"connected\":%d,\"failed\":%d,"
           "\"connectsPerSecond\":%.0f,\"latencyMicroseconds\":{\"p50\":%.0f,\"p99\":%.0f,\"max\":%llu},"
           "\"toolCPUSecondsPerMillion\":%.1f,\"brokerCPUSecondsPerMillion\":%.1f}\n",
           total, batch, done, failed, done / secs, percentile(50), percentile(99), (unsigned long long)lat_max,
           self_cpu / (done / 1e6), broker_cpu / (done / 1e6));
    return failed ? 1 : 0;
}

static long rss_kib(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    fclose(f);
    return v;
}

// Reads what is there from a non-blocking socket and counts PUBLISH / PUBACK / SUBACK packets.
typedef struct { uint8_t *buf; size_t len, cap; uint64_t publishes, pubacks, subacks; } reader_t;
static void drain(int fd, reader_t *r) {
    for (;;) {
        reserve(&r->buf, &r->cap, r->len + 262144);
        ssize_t got = read(fd, r->buf + r->len, r->cap - r->len);
        if (got < 0 && errno == EAGAIN) return;
        if (got <= 0) { fprintf(stderr, "connection closed by the broker\n"); exit(2); }
        r->len += (size_t)got;
        size_t off = 0;
        size_t h, len;
        while (whole_packet(r->buf + off, r->len - off, &h, &len)) {
            uint8_t type = r->buf[off] >> 4;
            if (type == 3) r->publishes++;
            else if (type == 4) r->pubacks++;
            else if (type == 9) r->subacks++;
            off += h + len;
        }
        memmove(r->buf, r->buf + off, r->len - off);
        r->len -= off;
    }
}

// --subscriptions: SUBS clients subscribe FILTERS filters each (1M in all by default) over the
// 100,000 topics t/A/B/C (A < 10, B < 100, C < 100): per client 99 % exact topics, spread so that
// every topic has about as many, and 1 % t/A/B/+ filters. Then PUBS publishers publish QoS 1
// (at most WINDOW unacknowledged each) to the topics in a shuffled order, each topic once per
// round of 100,000, for DURATION seconds: nothing a match cache could reuse. Reports the
// subscribe rate, the broker's memory per subscription, publishes matched per second and
// deliveries per second.
#define EXACT_TOPIC(k, f) ((((long)(k) * exact + (f)) * 7919L) % TOPICS)
#define WILDCARD(k, f) ((((long)(k) * (filters - exact) + ((f) - exact)) * 7L) % 1000)
static int subscriptions(const char *host, int port, int subs, int filters, int pubs, int window,
                         double duration, int broker_pid, const char *label) {
    enum { TOPICS = 100000 };
    int *fds = calloc((size_t)subs, sizeof(int));
    reader_t *rd = calloc((size_t)(subs + pubs), sizeof(reader_t));
    char id[64];
    long rss0 = rss_kib(broker_pid);
    for (int k = 0; k < subs; k++) {
        snprintf(id, sizeof id, "subs-%d-%d", getpid(), k);
        fds[k] = open_client(host, port, id);
        fcntl(fds[k], F_SETFL, fcntl(fds[k], F_GETFL) | O_NONBLOCK);
    }
    // Every client's SUBSCRIBE packets (100 filters each), written as fast as the broker reads.
    int exact = filters - filters / 100, per_packet = 100;
    // Filter f of client k: exact topics scattered over all topics (a multiplier prime to
    // 100,000 makes it a permutation), wildcards t/A/B/+ scattered over the 1,000 (A, B) the same
    // way. Each topic's fan-out counts clients, not subscriptions: a client whose exact filter and
    // wildcard both match gets one copy [MQTT-3.3.5-1].
    uint8_t *matched = calloc((size_t)TOPICS * (size_t)subs / 8 + 1, 1);
    uint32_t *fanout = calloc(TOPICS, sizeof(uint32_t));
#define MATCH(t, k) do { size_t bit = (size_t)(t) * (size_t)subs + (size_t)(k); \
        if (!(matched[bit / 8] & (1 << (bit % 8)))) { matched[bit / 8] |= (uint8_t)(1 << (bit % 8)); fanout[t]++; } } while (0)
    for (int k = 0; k < subs; k++) {
        for (int f = 0; f < exact; f++) MATCH(EXACT_TOPIC(k, f), k);
        for (int f = exact; f < filters; f++) {
            long w = WILDCARD(k, f);
            for (int c = 0; c < 100; c++) MATCH(w * 100 + c, k);
        }
    }
    free(matched);
    uint64_t t0 = now_ns();
    uint8_t *pkt = malloc(1 << 16);
    int *next_filter = calloc((size_t)subs, sizeof(int));
    uint64_t expected_subacks = 0, got_subacks = 0;
    size_t *pending_off = calloc((size_t)subs, sizeof(size_t)), *pending_len = calloc((size_t)subs, sizeof(size_t));
    uint8_t **pending = calloc((size_t)subs, sizeof(uint8_t *));
    for (int k = 0; k < subs; k++) expected_subacks += (uint64_t)((filters + per_packet - 1) / per_packet);
    while (got_subacks < expected_subacks) {
        for (int k = 0; k < subs; k++) {
            if (pending_off[k] == pending_len[k] && next_filter[k] < filters) {  // the next packet
                size_t n = 0, body = 2;
                char topic[64];
                uint8_t *b = pkt + 5;
                b[0] = (uint8_t)((next_filter[k] / per_packet + 1) >> 8); b[1] = (uint8_t)(next_filter[k] / per_packet + 1);
                for (int j = 0; j < per_packet && next_filter[k] < filters; j++, next_filter[k]++) {
                    int f = next_filter[k], tl;
                    if (f < exact) {
                        long t = EXACT_TOPIC(k, f);
                        tl = snprintf(topic, sizeof topic, "t/%ld/%ld/%ld", t / 10000, t / 100 % 100, t % 100);
                    } else {
                        long w = WILDCARD(k, f);
                        tl = snprintf(topic, sizeof topic, "t/%ld/%ld/+", w / 100, w % 100);
                    }
                    b[body++] = (uint8_t)(tl >> 8); b[body++] = (uint8_t)tl;
                    memcpy(b + body, topic, (size_t)tl); body += (size_t)tl;
                    b[body++] = 0;
                }
                uint8_t head[5];
                head[n++] = 0x82;
                n += put_varint(head + n, body);
                free(pending[k]);
                pending[k] = malloc(n + body);
                memcpy(pending[k], head, n);
                memcpy(pending[k] + n, b, body);
                pending_len[k] = n + body; pending_off[k] = 0;
            }
            while (pending_off[k] < pending_len[k]) {
                ssize_t w = write(fds[k], pending[k] + pending_off[k], pending_len[k] - pending_off[k]);
                if (w <= 0) break;
                pending_off[k] += (size_t)w;
            }
            uint64_t before = rd[k].subacks;
            drain(fds[k], &rd[k]);
            got_subacks += rd[k].subacks - before;
        }
    }
    double subscribe_seconds = (double)(now_ns() - t0) / 1e9;
    usleep(300000);  // the shards apply routes from each other: let them settle before reading RSS
    long rss1 = rss_kib(broker_pid);
    uint64_t total_subs = (uint64_t)subs * (uint64_t)filters;

    // Publishers: QoS 1, topics in a shuffled order (a permutation per publisher).
    int *pfd = calloc((size_t)pubs, sizeof(int));
    uint32_t *perm = malloc(TOPICS * sizeof(uint32_t));
    for (int i = 0; i < TOPICS; i++) perm[i] = (uint32_t)i;
    uint64_t seed = 88172645463325252ull;
    for (int i = TOPICS - 1; i > 0; i--) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        int j = (int)(seed % (uint64_t)(i + 1));
        uint32_t x = perm[i]; perm[i] = perm[j]; perm[j] = x;
    }
    uint64_t *psent = calloc((size_t)pubs, sizeof(uint64_t));
    for (int p = 0; p < pubs; p++) {
        snprintf(id, sizeof id, "subs-%d-pub-%d", getpid(), p);
        pfd[p] = open_client(host, port, id);
        fcntl(pfd[p], F_SETFL, fcntl(pfd[p], F_GETFL) | O_NONBLOCK);
    }
    uint8_t out[1 << 16];
    uint64_t expected = 0;  // deliveries the publishes sent should make
    double self0 = cpu_seconds_self(), broker0 = cpu_seconds_pid(broker_pid);
    uint64_t start = now_ns(), end = start + (uint64_t)(duration * 1e9), deliveries0 = 0;
    for (int k = 0; k < subs; k++) deliveries0 += rd[k].publishes;
    // Every connection in one epoll set: the tool sleeps when it has nothing to do (it shares the
    // CPUs with the broker).
    int ep = epoll_create1(0);
    for (int i = 0; i < subs + pubs; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, i < subs ? fds[i] : pfd[i - subs], &e);
    }
    struct epoll_event events[256];
    while (now_ns() < end) {
        int ready = epoll_wait(ep, events, 256, 1);
        for (int e = 0; e < ready; e++) {
            int i = (int)events[e].data.u32;
            drain(i < subs ? fds[i] : pfd[i - subs], &rd[i]);
        }
        for (int p = 0; p < pubs; p++) {
            reader_t *r = &rd[subs + p];
            size_t n = 0;
            while ((int64_t)(psent[p] - r->pubacks) < window && n < sizeof out - 64) {
                uint64_t i = psent[p]++;
                uint32_t t = perm[(i * (uint64_t)pubs + (uint64_t)p) % TOPICS];
                expected += fanout[t];
                char topic[32];
                int tl = snprintf(topic, sizeof topic, "t/%u/%u/%u", t / 10000, t / 100 % 100, t % 100);
                size_t body = 2 + (size_t)tl + 2 + 16;
                out[n++] = 0x32;
                n += put_varint(out + n, body);
                out[n++] = 0; out[n++] = (uint8_t)tl;
                memcpy(out + n, topic, (size_t)tl); n += (size_t)tl;
                uint16_t pid = (uint16_t)(i % 65535 + 1);
                out[n++] = (uint8_t)(pid >> 8); out[n++] = (uint8_t)pid;
                memset(out + n, 'p', 16); n += 16;
            }
            for (size_t off = 0; off < n;) {  // small: a blocking-style retry loop is fine here
                ssize_t w = write(pfd[p], out + off, n - off);
                if (w > 0) off += (size_t)w;
                else if (errno == EAGAIN) { drain(pfd[p], r); usleep(50); }
                else die("write");
            }
        }
    }
    double secs = (double)(now_ns() - start) / 1e9;
    uint64_t acked = 0, deliveries = 0;
    for (int p = 0; p < pubs; p++) acked += rd[subs + p].pubacks;
    for (int k = 0; k < subs; k++) deliveries += rd[k].publishes;
    deliveries -= deliveries0;
    // Deliveries still on their way when the clock stopped: wait for them (up to 5 s) to tell
    // them from messages dropped.
    uint64_t wait_end = now_ns() + 5000000000ull, arrived = deliveries;
    while (now_ns() < wait_end) {
        uint64_t total = 0;
        for (int k = 0; k < subs; k++) { drain(fds[k], &rd[k]); total += rd[k].publishes; }
        arrived = total - deliveries0;
        if (arrived >= expected) break;
        usleep(1000);
    }
    double self_cpu = cpu_seconds_self() - self0, broker_cpu = cpu_seconds_pid(broker_pid) - broker0;
    printf("{\"tool\":\"mqtt-blast\",\"label\":\"%s\",\"scenario\":\"subscriptions\",\"subscribers\":%d,\"filtersPerSubscriber\":%d,"
           "\"subscriptions\":%llu,\"topics\":%d,\"subscriptionsPerSecond\":%.0f,\"brokerRSSBeforeKiB\":%ld,\"brokerRSSAfterKiB\":%ld,"
           "\"bytesPerSubscription\":%.1f,\"publishers\":%d,\"window\":%d,\"publishesPerSecond\":%.0f,\"deliveriesPerSecond\":%.0f,"
           "\"deliveriesExpected\":%llu,\"deliveriesArrived\":%llu,\"brokerCPUSecondsPerMillionPublishes\":%.2f,\"toolCPUSecondsPerMillionPublishes\":%.2f}\n",
           label, subs, filters, (unsigned long long)total_subs, TOPICS, (double)total_subs / subscribe_seconds, rss0, rss1,
           (double)(rss1 - rss0) * 1024 / (double)total_subs, pubs, window, (double)acked / secs, (double)deliveries / secs,
           (unsigned long long)expected, (unsigned long long)arrived, broker_cpu / ((double)acked / 1e6), self_cpu / ((double)acked / 1e6));
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *label = "broker";
    int port = 1883, pairs = 10, fanout = 0, qos = 0, size = 64, window = 500, broker_pid = 0, cpu = -1;
    double rate = 0, warmup = 1, duration = 5;
    int storm_total = 0, batch = 100, sub_clients = 0, filters = 10000, pubs_n = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "-h")) host = v, i++;
        else if (!strcmp(a, "-p")) port = atoi(v), i++;
        else if (!strcmp(a, "--pairs")) pairs = atoi(v), i++;
        else if (!strcmp(a, "--fan-out")) fanout = atoi(v), i++;
        else if (!strcmp(a, "-q")) qos = atoi(v), i++;
        else if (!strcmp(a, "-s")) size = atoi(v), i++;
        else if (!strcmp(a, "--window")) window = atoi(v), i++;
        else if (!strcmp(a, "--rate")) rate = atof(v), i++;
        else if (!strcmp(a, "--warmup")) warmup = atof(v), i++;
        else if (!strcmp(a, "--duration")) duration = atof(v), i++;
        else if (!strcmp(a, "--broker-pid")) broker_pid = atoi(v), i++;
        else if (!strcmp(a, "--cpu")) cpu = atoi(v), i++;
        else if (!strcmp(a, "--label")) label = v, i++;
        else if (!strcmp(a, "--storm")) storm_total = atoi(v), i++;
        else if (!strcmp(a, "--batch")) batch = atoi(v), i++;
        else if (!strcmp(a, "--subscriptions")) sub_clients = atoi(v), i++;
        else if (!strcmp(a, "--filters")) filters = atoi(v), i++;
        else if (!strcmp(a, "--pubs")) pubs_n = atoi(v), i++;
        else { fprintf(stderr, "unknown argument %s (see the header of mqtt-blast.c)\n", a); return 2; }
    }
    if (qos > 1) { fprintf(stderr, "QoS 0 or 1\n"); return 2; }
    if (storm_total > 0) return storm(host, port, storm_total, batch, broker_pid);
    if (sub_clients > 0) return subscriptions(host, port, sub_clients, filters, pubs_n, window, duration, broker_pid, label);
    if (size < 16) size = 16;
    if (cpu >= 0) { cpu_set_t set; CPU_ZERO(&set); CPU_SET(cpu, &set); sched_setaffinity(0, sizeof set, &set); }
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);

    if (pairs < 1 || fanout < 0) { fprintf(stderr, "--pairs >= 1\n"); return 2; }
    int pubs = fanout ? 1 : pairs, subs = fanout ? fanout : pairs, n = pubs + subs;
    conn_t *c = calloc((size_t)n, sizeof *c);
    char id[64], topic[64];
    int tag = getpid();
    for (int s = 0; s < subs; s++) {  // subscribers first, so nothing published is missed
        conn_t *k = &c[pubs + s];
        snprintf(id, sizeof id, "blast-%d-sub-%d", tag, s);
        k->fd = open_client(host, port, id);
        snprintf(topic, sizeof topic, "blast/%d/%d", tag, fanout ? 0 : s);
        subscribe(k->fd, topic, qos);
        k->is_sub = 1; k->index = s;
    }
    for (int p = 0; p < pubs; p++) {
        snprintf(id, sizeof id, "blast-%d-pub-%d", tag, p);
        c[p].fd = open_client(host, port, id);
        c[p].index = p;
        c[p].next_pid = 1;
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        fcntl(c[i].fd, F_SETFL, fcntl(c[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &e);
    }

    uint64_t *sent = calloc((size_t)pubs, sizeof *sent);
    char (*topics)[64] = calloc((size_t)pubs, 64);
    for (int p = 0; p < pubs; p++) snprintf(topics[p], 64, "blast/%d/%d", tag, p);
    uint64_t start = now_ns();
    uint64_t measure_start = start + (uint64_t)(warmup * 1e9), measure_end = measure_start + (uint64_t)(duration * 1e9);
    uint64_t drain_end = measure_end + 5000000000ull, in_window = 0, bytes_in_window = 0;
    double self0 = 0, broker0 = 0;
    int measuring = 0;
    struct epoll_event events[256];
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= measure_start) { measuring = 1; self0 = cpu_seconds_self(); broker0 = cpu_seconds_pid(broker_pid); }
        if (now >= measure_end) {
            int done = 1;
            for (int s = 0; s < subs && done; s++) if (c[pubs + s].next_seq < sent[fanout ? 0 : s]) done = 0;
            if (done || now >= drain_end) break;
        }
        // Produce: closed loop (window) or paced (rate).
        if (now < measure_end) {
            for (int p = 0; p < pubs; p++) {
                int64_t allowed;
                if (rate > 0) {
                    // Publisher p's messages are due at p/pubs of a period after the others':
                    // the load is spread evenly, not sent in bursts of every publisher at once.
                    double offset = (double)p / pubs / rate * 1e9, elapsed = (double)(now - start);
                    uint64_t due = elapsed < offset ? 0 : (uint64_t)((elapsed - offset) / 1e9 * rate) + 1;
                    allowed = due > sent[p] ? (int64_t)(due - sent[p]) : 0;
                    if (allowed > 1000) allowed = 1000;
                } else {
                    uint64_t slowest = UINT64_MAX;
                    if (fanout) { for (int s = 0; s < subs; s++) if (c[pubs + s].next_seq < slowest) slowest = c[pubs + s].next_seq; }
                    else slowest = c[pubs + p].next_seq;
                    allowed = window - (int64_t)(sent[p] - slowest);
                }
                if (allowed <= 0) continue;
                conn_t *k = &c[p];
                size_t tl = strlen(topics[p]), body = 2 + tl + (qos ? 2 : 0) + (size_t)size;
                reserve(&k->out, &k->out_cap, k->out_len + (size_t)allowed * (body + 5));
                for (int64_t m = 0; m < allowed; m++) {
                    uint8_t *o = k->out + k->out_len;
                    size_t q = 0;
                    o[q++] = qos ? 0x32 : 0x30;
                    q += put_varint(o + q, body);
                    o[q++] = (uint8_t)(tl >> 8); o[q++] = (uint8_t)tl;
                    memcpy(o + q, topics[p], tl); q += tl;
                    if (qos) { o[q++] = (uint8_t)(k->next_pid >> 8); o[q++] = (uint8_t)k->next_pid; k->next_pid = k->next_pid == 65535 ? 1 : k->next_pid + 1; }
                    uint64_t seq = sent[p]++, t = now_ns();
                    memcpy(o + q, &seq, 8); memcpy(o + q + 8, &t, 8);
                    memset(o + q + 16, 'a', (size_t)size - 16);
                    q += (size_t)size;
                    k->out_len += q;
                }
            }
        }
        // Flush every connection with something to write.
        for (int i = 0; i < n; i++) {
            conn_t *k = &c[i];
            while (k->out_off < k->out_len) {
                ssize_t w = write(k->fd, k->out + k->out_off, k->out_len - k->out_off);
                if (w < 0) { if (errno == EAGAIN) break; die("write"); }
                k->out_off += (size_t)w;
            }
            if (k->out_off == k->out_len) k->out_off = k->out_len = 0;
            int want = k->out_off < k->out_len;
            if (want != k->want_write) {
                struct epoll_event e = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &e);
                k->want_write = want;
            }
        }
        // Closed loop: wait up to 1 ms for input. Paced: sleep until the next message is due
        // (every publisher is due at the same instants), never spin: this tool shares the CPUs.
        struct timespec wait = {.tv_sec = 0, .tv_nsec = 1000000};
        if (rate > 0) {
            uint64_t t = now_ns(), elapsed = t - start;
            double step = 1e9 / rate / pubs;  // the publishers' staggered instants
            uint64_t next_due = (uint64_t)((double)((uint64_t)((double)elapsed / step) + 1) * step);
            uint64_t left = next_due > elapsed ? next_due - elapsed : 0;
            wait.tv_nsec = (long)(left < 1000000 ? left : 1000000);
        }
        int ready = epoll_pwait2(ep, events, 256, &wait, NULL);
        if (ready < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < ready; e++) {
            conn_t *k = &c[events[e].data.u32];
            if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                reserve(&k->in, &k->in_cap, k->in_len + 262144);
                ssize_t r = read(k->fd, k->in + k->in_len, k->in_cap - k->in_len);
                if (r < 0) { if (errno == EAGAIN) break; die("read"); }
                if (r == 0) { fprintf(stderr, "connection closed by the broker\n"); exit(2); }
                k->in_len += (size_t)r;
                uint64_t t = now_ns();
                size_t off = 0;
                size_t h, len;
                while (whole_packet(k->in + off, k->in_len - off, &h, &len)) {
                    uint8_t type = k->in[off] >> 4, pq = (k->in[off] >> 1) & 3;
                    const uint8_t *b = k->in + off + h;
                    if (type == 3 && k->is_sub) {
                        size_t tl = (size_t)b[0] << 8 | b[1], q = 2 + tl;
                        uint16_t pid = 0;
                        if (pq) { pid = (uint16_t)(b[q] << 8 | b[q + 1]); q += 2; }
                        uint64_t seq, sent_at;
                        memcpy(&seq, b + q, 8); memcpy(&sent_at, b + q + 8, 8);
                        if (seq >= k->next_seq) { k->lost += seq - k->next_seq; k->next_seq = seq + 1; k->received++; }
                        else k->dup++;
                        if (t >= measure_start && t < measure_end) { in_window++; bytes_in_window += len - q; }
                        if (sent_at >= measure_start && sent_at < measure_end) record_latency((t - sent_at) / 1000);
                        if (pq == 1) {
                            reserve(&k->out, &k->out_cap, k->out_len + 4);
                            uint8_t *o = k->out + k->out_len;
                            o[0] = 0x40; o[1] = 2; o[2] = (uint8_t)(pid >> 8); o[3] = (uint8_t)pid;
                            k->out_len += 4;
                        }
                    }
                    off += h + len;
                }
                memmove(k->in, k->in + off, k->in_len - off);
                k->in_len -= off;
                if ((size_t)r < 65536) break;
            }
        }
    }
    double self_cpu = cpu_seconds_self() - self0, broker_cpu = cpu_seconds_pid(broker_pid) - broker0;
    uint64_t total_sent = 0, received = 0, lost = 0, dup = 0;
    for (int p = 0; p < pubs; p++) total_sent += sent[p];
    for (int s = 0; s < subs; s++) {
        conn_t *k = &c[pubs + s];
        uint64_t expected = sent[fanout ? 0 : s];
        received += k->received; dup += k->dup;
        lost += k->lost + (expected > k->next_seq ? expected - k->next_seq : 0);
    }
    double mps = (double)in_window / duration;
    printf("{\"tool\":\"mqtt-blast\",\"label\":\"%s\",\"scenario\":\"%s\",\"publishers\":%d,\"subscribers\":%d,"
           "\"qos\":%d,\"size\":%d,\"window\":%d,\"rate\":%.0f,\"duration\":%.1f,"
           "\"messagesPerSecond\":%.0f,\"bytesPerSecond\":%.0f,\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"duplicated\":%llu,"
           "\"latencyMicroseconds\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"p99.9\":%.0f,\"max\":%llu},"
           "\"toolCPUSecondsPerMillion\":%.3f,\"brokerCPUSecondsPerMillion\":%.3f,\"brokerCPUSecondsPerGB\":%.3f}\n",
           label, fanout ? "fan-out" : "pairs", pubs, subs, qos, size, window, rate, duration, mps,
           (double)bytes_in_window / duration, (unsigned long long)total_sent, (unsigned long long)received,
           (unsigned long long)lost, (unsigned long long)dup, percentile(50), percentile(90), percentile(99),
           percentile(99.9), (unsigned long long)lat_max, in_window ? self_cpu / ((double)in_window / 1e6) : 0,
           in_window ? broker_cpu / ((double)in_window / 1e6) : 0,
           bytes_in_window ? broker_cpu / ((double)bytes_in_window / 1e9) : 0);
    return 0;
}
