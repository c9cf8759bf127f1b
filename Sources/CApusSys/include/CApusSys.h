// The few libc calls that Swift's Glibc module hides (GNU extensions): thread affinity,
// the CPUs this process may use, thread names, the monotonic and the realtime clock. Everything
// is prefixed apus_.
#ifndef CAPUSSYS_H
#define CAPUSSYS_H
#include <stdint.h>

/// Pins the calling thread to `cpu`. Returns 0 or an errno value.
int apus_pin_current_thread(int cpu);
/// The number of CPUs this process may run on (sched_getaffinity), at least 1.
int apus_available_cpus(void);
/// The `index`-th CPU (modulo their number) of those this process may run on: what thread
/// `index` pins itself to, so that a CPU set given from outside (taskset, docker --cpuset-cpus,
/// a Kubernetes CPU manager) is honoured instead of CPUs 0..n-1.
int apus_allowed_cpu(int index);
/// Sets the calling thread's name (at most 15 characters are kept).
void apus_set_thread_name(const char *name);
/// Monotonic clock in nanoseconds.
uint64_t apus_monotonic_ns(void);
/// CLOCK_REALTIME in nanoseconds (the clock of the kernel's receive timestamps, SO_TIMESTAMPNS).
uint64_t apus_realtime_ns(void);
/// Gives the calling thread's freed memory back to the kernel, when the process runs on jemalloc
/// (looked up at run time: tests run on the C library's allocator): the thread's cache is flushed
/// and its arena's unused dirty pages purged. jemalloc purges by itself only while it allocates,
/// so a quiet shard would keep what a burst freed. Returns 0, or -1 without jemalloc.
int apus_allocator_purge_thread(void);

#endif
