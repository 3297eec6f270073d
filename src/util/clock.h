/* clock.h - the monotonic clock every timing in the engine reads (header
 * only: the thread pool is also built alone for the ThreadSanitizer test). */
#ifndef GM_CLOCK_H
#define GM_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double gm_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double gm_now_ms(void) { return gm_now_s() * 1e3; }
static inline double gm_now_us(void) { return gm_now_s() * 1e6; }

#endif
