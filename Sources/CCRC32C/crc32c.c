// The CRC-32C instruction, eight bytes at a time. Compiled for SSE 4.2 in this function only;
// callers ask apus_crc32c_hardware() first, so the binary still runs on processors without it.
#include "CCRC32C.h"
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int apus_crc32c_hardware(void) { return __builtin_cpu_supports("sse4.2") ? 1 : 0; }

__attribute__((target("sse4.2")))
uint32_t apus_crc32c_update(uint32_t state, const void *bytes, size_t count) {
    const uint8_t *p = bytes;
    uint64_t c = state;
    while (count >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        count -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (count > 0) {
        c32 = _mm_crc32_u8(c32, *p++);
        count--;
    }
    return c32;
}
#else
int apus_crc32c_hardware(void) { return 0; }
uint32_t apus_crc32c_update(uint32_t state, const void *bytes, size_t count) { (void)bytes; (void)count; return state; }
#endif
