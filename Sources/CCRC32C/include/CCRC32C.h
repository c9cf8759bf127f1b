// CRC-32C with the processor's instruction (SSE 4.2 `crc32`), for the store's records.
#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>

/// 1 if this processor has the CRC-32C instruction (x86-64 with SSE 4.2), else 0.
int apus_crc32c_hardware(void);
/// Runs the CRC register `state` (already inverted, as the software loop keeps it) over `count`
/// bytes; only when apus_crc32c_hardware() says 1.
uint32_t apus_crc32c_update(uint32_t state, const void *bytes, size_t count);

#endif
