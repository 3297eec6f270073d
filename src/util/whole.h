/* whole.h - a double from a file (JSON numbers, GGUF metadata) as an int,
 * only when it is a whole number in a range: a C cast of anything else
 * (1e30, 2^63, NaN) is undefined behaviour. */
#ifndef GM_WHOLE_H
#define GM_WHOLE_H

#include <math.h>

/* 1 and *out = d when d is a whole number in lo..hi (within int's range),
 * else 0 and *out untouched. */
static inline int gm_whole_in(double d, double lo, double hi, int *out) {
    if (!(d >= lo && d <= hi && d == floor(d))) return 0;
    *out = (int)d;
    return 1;
}

#endif
