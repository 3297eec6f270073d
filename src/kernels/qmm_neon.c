/* qmm_neon.c - NEON backend of the quantized matmul (arm64, where NEON is
 * always present): the same work as the AVX2 backend, four lanes wide. */
#include "kernels/qmm_impl.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define NEON_INLINE static inline __attribute__((always_inline))
#define MV_ROWS 4

/* 8 bytes of 4-bit weights as the permuted run of 16: low nibbles give
 * positions 0..7, high nibbles 8..15. */
NEON_INLINE void unpack4(const uint8_t *p, float32x4_t v[4]) {
    uint8x8_t b = vld1_u8(p);
    uint16x8_t lo = vmovl_u8(vand_u8(b, vdup_n_u8(15)));
    uint16x8_t hi = vmovl_u8(vshr_n_u8(b, 4));
    v[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    v[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)));
    v[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
    v[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi)));
}

/* The matrix-vector variant (QMM_MV4 in qmm_impl.h): low nibbles, then
 * whole bytes. */
NEON_INLINE void unpack4_mv(const uint8_t *p, float32x4_t v[4]) {
    uint8x8_t b = vld1_u8(p);
    uint16x8_t lo = vmovl_u8(vand_u8(b, vdup_n_u8(15)));
    uint16x8_t whole = vmovl_u8(b);
    v[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    v[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)));
    v[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(whole)));
    v[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(whole)));
}

NEON_INLINE void unpack8(const uint8_t *p, float32x4_t v[4]) {
    uint8x16_t b = vld1q_u8(p);
    uint16x8_t lo = vmovl_u8(vget_low_u8(b));
    uint16x8_t hi = vmovl_u8(vget_high_u8(b));
    v[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    v[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)));
    v[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
    v[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi)));
}

/* 16 weights of 2, 3, 5 or 6 bits, elements u..u+15 of the stream at p,
 * one at a time: simple, and only these rarer widths take it. */
NEON_INLINE void unpack_bits16(const uint8_t *p, int u, int bits, float32x4_t v[4]) {
    float f[16];
    for (int i = 0; i < 16; i++) f[i] = (float)qmm_qbits(p, u + i, bits);
    for (int i = 0; i < 4; i++) v[i] = vld1q_f32(f + 4 * i);
}

/* Elements u..u+15 of the group at p (4-bit: as qmm_perm4 orders them). */
NEON_INLINE void unpack16(const uint8_t *p, int u, int bits, float32x4_t v[4]) {
    if (bits == 4)
        unpack4(p + u / 2, v);
    else if (bits == 8)
        unpack8(p + u, v);
    else
        unpack_bits16(p, u, bits, v);
}

/* One weight row against x rows m0..m0+MR-1; scale per group dot product,
 * bias times the group's x sum (as in the AVX2 backend). */
NEON_INLINE void mv_row(const gm_qmm_ctx *c, int n, int m0, const int MR) {
    const gm_qmm_args *a = c->a;
    const int K = a->K, G = c->groups, gs = a->group_size, bits = a->bits;
    const uint8_t *wb = (const uint8_t *)(a->w + (size_t)n * c->wrow);
    float32x4_t yacc[MV_ROWS];
    float bacc[MV_ROWS];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        yacc[r] = vdupq_n_f32(0.0f);
        bacc[r] = 0.0f;
    }
    for (int g = 0; g < G; g++) {
        float s = qmm_load(a->scales, (size_t)n * G + g, a->sb_dtype);
        float b = qmm_load(a->biases, (size_t)n * G + g, a->sb_dtype);
        const uint8_t *p = wb + (size_t)g * gs * bits / 8;
        float32x4_t d[MV_ROWS][2];
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) d[r][0] = d[r][1] = vdupq_n_f32(0.0f);
        for (int u = 0; u < gs; u += 16) {
            float32x4_t w[4];
            if (bits == 4)
                unpack4_mv(p + u / 2, w);
            else
                unpack16(p, u, bits, w);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++) {
                const float *x = c->xp + (size_t)(m0 + r) * K + (size_t)g * gs + u;
                d[r][0] = vfmaq_f32(d[r][0], w[0], vld1q_f32(x));
                d[r][1] = vfmaq_f32(d[r][1], w[1], vld1q_f32(x + 4));
                d[r][0] = vfmaq_f32(d[r][0], w[2], vld1q_f32(x + 8));
                d[r][1] = vfmaq_f32(d[r][1], w[3], vld1q_f32(x + 12));
            }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            yacc[r] = vfmaq_n_f32(yacc[r], vaddq_f32(d[r][0], d[r][1]), s);
            bacc[r] += b * c->xsum[(size_t)(m0 + r) * c->xsum_stride + g];
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        qmm_store(a->y, (size_t)(m0 + r) * a->N + n, vaddvq_f32(yacc[r]) + bacc[r], a->y_dtype);
}

static void mv(const gm_qmm_ctx *c, int n0, int n1) {
    int M = c->a->M;
    for (int n = n0; n < n1; n++)
        for (int m0 = 0; m0 < M; m0 += MV_ROWS) {
            switch (M - m0 < MV_ROWS ? M - m0 : MV_ROWS) {
            case 1: mv_row(c, n, m0, 1); break;
            case 2: mv_row(c, n, m0, 2); break;
            case 3: mv_row(c, n, m0, 3); break;
            default: mv_row(c, n, m0, 4); break;
            }
        }
}

static void dequant(const gm_qmm_ctx *c, int n0, int nr, int k0, int kc, float *dst) {
    const gm_qmm_args *a = c->a;
    int gs = a->group_size, G = c->groups;
    for (int i = 0; i < nr; i++) {
        int n = n0 + i;
        const uint8_t *wb = (const uint8_t *)(a->w + (size_t)n * c->wrow);
        float *d = dst + (size_t)i * kc;
        for (int k = k0; k < k0 + kc; k += gs) {
            size_t gi = (size_t)n * G + (size_t)(k / gs);
            float32x4_t s = vdupq_n_f32(qmm_load(a->scales, gi, a->sb_dtype));
            float32x4_t b = vdupq_n_f32(qmm_load(a->biases, gi, a->sb_dtype));
            const uint8_t *p = wb + (size_t)k * a->bits / 8;
            for (int u = 0; u < gs; u += 16, d += 16) {
                float32x4_t w[4];
                unpack16(p, u, a->bits, w);
                for (int v = 0; v < 4; v++) vst1q_f32(d + 4 * v, vfmaq_f32(b, w[v], s));
            }
        }
    }
}

/* NR weight rows x NV*4 x rows; at most 6 x 4 = 24 accumulators of 32. */
NEON_INLINE void micro_body(const float *wt, int ldw, const float *xp, int kc, float *acc,
                            int ldc, int first, const int NR, const int NV) {
    float32x4_t cc[QMM_NR][4];
    #pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            cc[i][v] = first ? vdupq_n_f32(0.0f) : vld1q_f32(acc + (size_t)i * ldc + 4 * v);
    const int W = NV * 4;
    for (int k = 0; k < kc; k++) {
        float32x4_t x[4];
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) x[v] = vld1q_f32(xp + (size_t)k * W + 4 * v);
        #pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            float w = wt[(size_t)i * ldw + k];
            #pragma GCC unroll 8
            for (int v = 0; v < NV; v++) cc[i][v] = vfmaq_n_f32(cc[i][v], x[v], w);
        }
    }
    #pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) vst1q_f32(acc + (size_t)i * ldc + 4 * v, cc[i][v]);
}

NEON_INLINE void micro_nv(const float *wt, int ldw, const float *xp, int kc, float *acc, int ldc,
                          int nr, int first, const int NV) {
    switch (nr) {
    case 1: micro_body(wt, ldw, xp, kc, acc, ldc, first, 1, NV); break;
    case 2: micro_body(wt, ldw, xp, kc, acc, ldc, first, 2, NV); break;
    case 3: micro_body(wt, ldw, xp, kc, acc, ldc, first, 3, NV); break;
    case 4: micro_body(wt, ldw, xp, kc, acc, ldc, first, 4, NV); break;
    case 5: micro_body(wt, ldw, xp, kc, acc, ldc, first, 5, NV); break;
    default: micro_body(wt, ldw, xp, kc, acc, ldc, first, 6, NV); break;
    }
}

static void micro(const float *wt, int ldw, const float *xp, int width, int kc, float *acc,
                  int ldc, int nr, int first) {
    if (width > 8)
        micro_nv(wt, ldw, xp, kc, acc, ldc, nr, first, 4);
    else
        micro_nv(wt, ldw, xp, kc, acc, ldc, nr, first, 2);
}

const gm_qmm_backend gm_qmm_neon = {"neon", mv, dequant, micro, NULL, 0, NULL, NULL};

#endif
