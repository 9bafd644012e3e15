/*
 * clock.h - monotonic time for timeouts, waits and latency. Any thread.
 */
#ifndef SR_COMMON_CLOCK_H
#define SR_COMMON_CLOCK_H

#include <stdint.h>

uint64_t sr_mono_ms(void);
uint64_t sr_mono_us(void);

#endif
