/* half_rows.h - rows of float16 to and from float32: F16C eight at a time
 * where the CPU has it (every x86-64 our AVX2 kernels run on), half.h's
 * conversions one at a time elsewhere and for the tail. Same values as
 * half.h's (round to nearest even; NaN stays NaN, its payload may differ). */
#ifndef GM_HALF_ROWS_H
#define GM_HALF_ROWS_H

#include <stdint.h>

void gm_f16_row_to_f32(const uint16_t *h, float *f, int n);
void gm_f32_row_to_f16(const float *f, uint16_t *h, int n);

#endif
