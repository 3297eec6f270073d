/* mlx_math.c - MLX's CPU float32 sin, cos and exp (see mlx_math.h). Each line is
 * one rounding of MLX's: fmaf where it fuses, a plain operation where it
 * does not (CMakeLists.txt builds this file with -ffp-contract=off, so the
 * compiler fuses nothing on its own, even where FMA is baseline). */
#include "kernels/mlx_math.h"

#include <math.h>
#include <stdint.h>

static float reduce_and_eval(float in, int sine) {
    int negative = in < 0;
    float x = fabsf(in);
    /* j = round x * 4/pi up to even; y = j as float */
    uint32_t j = (uint32_t)(x * 1.27323954473516f);
    j = (j + 1) & ~1u;
    float y = (float)j;
    int second_poly = (j & 2) != 0;
    /* x - j * pi/4 in three parts */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    int sin_negative = negative ^ ((j & 4) != 0);
    int cos_positive = ((j - 2) & 4) != 0;
    float z = x * x;
    /* cosine polynomial (y1) and sine polynomial (y2) on [-pi/4, pi/4] */
    float y1 = fmaf(z, 2.443315711809948e-5f, -1.388731625493765e-3f);
    float y2 = fmaf(z, -1.9515295891e-4f, 8.3321608736e-3f);
    y1 = fmaf(y1, z, 4.166664568298827e-2f);
    y2 = fmaf(y2, z, -1.6666654611e-1f);
    y1 = y1 * z;
    y2 = y2 * z;
    y1 = y1 * z;
    y2 = fmaf(x, y2, x);
    y1 = fmaf(z, -0.5f, y1);
    y1 = y1 + 1.0f;
    if (sine) {
        float s = second_poly ? y1 : y2;
        return sin_negative ? -s : s;
    }
    float c = second_poly ? y2 : y1;
    return cos_positive ? c : -c;
}

float gm_mlx_sinf(float x) {
    if (fabsf(x) > 8388608.0f) return sinf(x);
    return reduce_and_eval(x, 1);
}

float gm_mlx_cosf(float x) {
    if (fabsf(x) > 8388608.0f) return cosf(x);
    return reduce_and_eval(x, 0);
}

float gm_mlx_expf(float x0) {
    if (x0 != x0) return x0;
    if (x0 > 88.0f) return INFINITY;
    if (x0 < -88.0f) return 0.0f;
    float x = x0 * 1.442695f; /* log2(e) */
    /* MLX adds the 0.5 in double. In float the sum rounds differently only
     * for x = 0.5 - 2^-25, which no x0 * 1.442695f produces (checked over
     * every float), so the float sum is MLX's and vectorizes (gated_avx2.c). */
    float ipart = floorf(x + 0.5f), fpart = x - ipart;
    float p = 1.535336188319500e-4f;
    p = fmaf(p, fpart, 1.339887440266574e-3f);
    p = fmaf(p, fpart, 9.618437357674640e-3f);
    p = fmaf(p, fpart, 5.550332471162809e-2f);
    p = fmaf(p, fpart, 2.402264791363012e-1f);
    p = fmaf(p, fpart, 6.931472028550421e-1f);
    p = fmaf(p, fpart, 1.000000000000000f);
    union {
        uint32_t u;
        float f;
    } two = {(uint32_t)((int)ipart + 127) << 23};
    return two.f * p;
}
