/* unicode_data.h - the generated canonical normalization tables (see
 * tools/make_unicode_tables.py); used by nfc.c. */
#ifndef GM_UNICODE_DATA_H
#define GM_UNICODE_DATA_H

#include <stdint.h>

typedef struct { uint32_t lo, hi; uint8_t ccc; } gm_ccc_range;
typedef struct { uint32_t cp; uint16_t off; uint8_t len; } gm_decomp_entry;
typedef struct { uint32_t first, second, composite; } gm_comp_entry;

extern const char gm_unicode_version[];
/* Non-zero canonical combining classes, sorted ranges. */
extern const gm_ccc_range gm_ccc_ranges[];
extern const unsigned gm_n_ccc_ranges;
/* Full canonical decompositions (already recursive and reordered), sorted
 * by code point; the sequences live in gm_decomp_seq. Hangul excluded. */
extern const gm_decomp_entry gm_decomp_index[];
extern const unsigned gm_n_decomp;
extern const uint32_t gm_decomp_seq[];
/* Primary composites, sorted by (first, second). Hangul excluded. */
extern const gm_comp_entry gm_comp_pairs[];
extern const unsigned gm_n_comp;

#endif
