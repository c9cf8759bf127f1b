// Implementation of the CApusSys shims (GNU extensions Swift cannot see).
#define _GNU_SOURCE
#include <stdio.h>
#include <dlfcn.h>
#include "CApusSys.h"
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <time.h>

int apus_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}


int apus_available_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int apus_allowed_cpu(int index) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return index;
    int n = CPU_COUNT(&set);
    if (n <= 0) return index;
    int want = index % n;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set) && want-- == 0) return cpu;
    }
    return index;
}

void apus_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }

uint64_t apus_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t apus_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef int (*apus_mallctl_fn)(const char *, void *, size_t *, void *, size_t);

int apus_allocator_purge_thread(void) {
    // The same value from every thread: a race on the first look-up is harmless.
    static apus_mallctl_fn mallctl_fn = NULL;
    static int looked_up = 0;
    if (!looked_up) {
        mallctl_fn = (apus_mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
        looked_up = 1;
    }
    if (!mallctl_fn) return -1;
    unsigned arena = 0;
    size_t size = sizeof arena;
    if (mallctl_fn("thread.arena", &arena, &size, NULL, 0) != 0) return -1;
    mallctl_fn("thread.tcache.flush", NULL, NULL, NULL, 0);
    char name[64];
    snprintf(name, sizeof name, "arena.%u.purge", arena);
    return mallctl_fn(name, NULL, NULL, NULL, 0) == 0 ? 0 : -1;
}
