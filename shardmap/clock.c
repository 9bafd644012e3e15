/*
 * clock.c - monotonic time (see common/clock.h).
 */
#include "common/clock.h"

#include <time.h>

uint64_t sr_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t sr_mono_ms(void)
{
	return sr_mono_us() / 1000u;
}
