/* read_probe.h - how fast this machine reads memory: the denominator of a
 * decode step's bandwidth roofline (weight bytes a token / bytes a second),
 * measured rather than taken from a data sheet. */
#ifndef GM_READ_PROBE_H
#define GM_READ_PROBE_H

#include <stddef.h>

/* GB/s of the best of `passes` streaming reads of a `bytes` buffer (far
 * larger than the last-level cache) by `threads` pool threads, each its
 * own contiguous stretch as the mat-vec reads its rows. 0 when the buffer
 * cannot be allocated. */
double gm_read_probe_gbps(size_t bytes, int threads, int passes);

#endif
