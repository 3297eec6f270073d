/* half.h - portable float16/bfloat16 <-> float32 conversions for the CPU
 * kernels (round to nearest even, like MLX), usable from any backend. */
#ifndef GM_HALF_H
#define GM_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t gm_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float gm_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Moving exponent+mantissa up by 13 bits leaves a float whose exponent is
 * biased by 15 instead of 127; multiplying by 2^112 rebias it and also
 * normalizes half subnormals exactly. Inf/NaN need the exponent forced. */
static inline float gm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    float f = gm_bits_f32(em << 13) * 0x1p112f;
    uint32_t u = gm_f32_bits(f);
    if (em >= 0x7c00u) u = 0x7f800000u | (em << 13);
    return gm_bits_f32(u | sign);
}

static inline uint16_t gm_f32_to_f16(float f) {
    uint32_t u = gm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf stays inf, NaN stays quiet NaN */
        return sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u);
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return sign | 0x7c00u;
    if (a < 0x38800000u) {
        /* Result is subnormal (or zero): adding 0.5 makes the FPU round the
         * mantissa to the half-subnormal grid (2^-24) with ties to even. */
        float r = gm_bits_f32(a) + 0.5f;
        return sign | (uint16_t)(gm_f32_bits(r) - 0x3f000000u);
    }
    /* Normal: rebias the exponent, round the 13 dropped bits to even. */
    uint32_t odd = (a >> 13) & 1u;
    a += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
    return sign | (uint16_t)(a >> 13);
}

static inline float gm_bf16_to_f32(uint16_t h) { return gm_bits_f32((uint32_t)h << 16); }

static inline uint16_t gm_f32_to_bf16(float f) {
    uint32_t u = gm_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#endif
