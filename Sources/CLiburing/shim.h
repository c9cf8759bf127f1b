// Exposes liburing 2.3 to Swift; Swift imports and inlines its static inline helpers.
// The system headers come first, with the default feature macros, so that they resolve to the
// Glibc module; liburing.h defines _GNU_SOURCE/_XOPEN_SOURCE and would otherwise re-include them
// textually with definitions that clash with Glibc's (fd_set).
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <inttypes.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <liburing.h>

/// SO_TIMESTAMPNS / SCM_TIMESTAMPNS as this libc defines them (an expression on some ABIs, which
/// Swift does not import).
static inline int apus_so_timestampns(void) { return SO_TIMESTAMPNS; }
