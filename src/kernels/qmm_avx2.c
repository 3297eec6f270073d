/* qmm_avx2.c - AVX2+FMA backend of the quantized matmul (x86-64). Each
 * function carries its own target attribute, so the file builds without
 * -mavx2 and the driver only calls it after checking the CPU. */
#include "kernels/qmm_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define MV_ROWS 4 /* rows of x sharing one pass over the weights */
/* Bytes ahead in a weight row to prefetch: measured on Zen 4, a row-pair
 * stream from DRAM runs ~30% faster single-threaded with 4 KB of lead. */
#define QMM_PREFETCH 4096

AVX2_INLINE float load1(const void *p, size_t i, gm_fdtype t) {
    if (t == GM_F16) return _cvtsh_ss(((const uint16_t *)p)[i]);
    return qmm_load(p, i, t);
}

/* Eight consecutive scales (or biases) as float32; at a row's end the
 * missing ones read as zero. */
AVX2_INLINE void load8(const void *p, size_t i, int n, gm_fdtype t, float *out) {
    if (n == 8) {
        if (t == GM_F16) {
            __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
            _mm256_storeu_ps(out, _mm256_cvtph_ps(h));
            return;
        }
        if (t == GM_BF16) {
            __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
            __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            _mm256_storeu_ps(out, _mm256_castsi256_ps(u));
            return;
        }
        _mm256_storeu_ps(out, _mm256_loadu_ps((const float *)p + i));
        return;
    }
    for (int j = 0; j < 8; j++) out[j] = j < n ? load1(p, i + j, t) : 0.0f;
}

/* 8 bytes of 4-bit weights: the low nibbles (x positions 0..7 of the
 * permuted run of 16) and the high ones (positions 8..15). */
AVX2_INLINE void unpack4(const uint8_t *p, __m256 *lo, __m256 *hi) {
    __m256i d = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *lo = _mm256_cvtepi32_ps(_mm256_and_si256(d, _mm256_set1_epi32(15)));
    *hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(d, 4));
}

/* The matrix-vector variant (QMM_MV4 in qmm_impl.h): low nibbles and
 * whole bytes. */
AVX2_INLINE void unpack4_mv(const uint8_t *p, __m256 *lo, __m256 *whole) {
    __m256i d = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *lo = _mm256_cvtepi32_ps(_mm256_and_si256(d, _mm256_set1_epi32(15)));
    *whole = _mm256_cvtepi32_ps(d);
}

/* 8 weights of 2, 3, 5 or 6 bits from the next BITS bytes of the bit
 * stream: each lane gathers the two bytes holding its element (shuffle),
 * shifts it down (per-lane shift) and masks it. Reads exactly BITS bytes. */
AVX2_INLINE __m256 unpack_bits8(const uint8_t *p, const int BITS) {
    /* Whole loads put together in a register: a partial copy into a
     * stack word would stall on store forwarding when read back. */
    uint64_t v;
    if (BITS >= 4) {
        uint32_t lo4;
        memcpy(&lo4, p, 4);
        uint64_t hi = 0;
        if (BITS == 5) hi = p[4];
        if (BITS == 6) {
            uint16_t h2;
            memcpy(&h2, p + 4, 2);
            hi = h2;
        }
        v = lo4 | hi << 32;
    } else {
        uint16_t lo2;
        memcpy(&lo2, p, 2);
        v = lo2 | (BITS == 3 ? (uint64_t)p[2] << 16 : 0);
    }
#define QB_J(i) (((i) * BITS) >> 3)
#define QB_IDX(i) (int)((unsigned)QB_J(i) | (unsigned)(QB_J(i) + 1) << 8 | 0x80800000u)
    const __m256i idx = _mm256_setr_epi32(QB_IDX(0), QB_IDX(1), QB_IDX(2), QB_IDX(3), QB_IDX(4),
                                          QB_IDX(5), QB_IDX(6), QB_IDX(7));
    const __m256i sh = _mm256_setr_epi32(0, BITS & 7, (2 * BITS) & 7, (3 * BITS) & 7,
                                         (4 * BITS) & 7, (5 * BITS) & 7, (6 * BITS) & 7,
                                         (7 * BITS) & 7);
#undef QB_IDX
#undef QB_J
    __m256i d = _mm256_shuffle_epi8(_mm256_set1_epi64x((long long)v), idx);
    d = _mm256_and_si256(_mm256_srlv_epi32(d, sh), _mm256_set1_epi32((1 << BITS) - 1));
    return _mm256_cvtepi32_ps(d);
}

/* 16 weights of any width into x positions 0..7 (lo) and 8..15 (hi); p is
 * the start of the group, u the run's first element within it. 4-bit runs
 * come as low nibbles then high ones (qmm_perm4), in the form `mv` asks
 * for (QMM_MV4) or plain. */
AVX2_INLINE void unpack16(const uint8_t *p, int u, const int BITS, const int mv, __m256 *lo,
                          __m256 *hi);

AVX2_INLINE void unpack8(const uint8_t *p, __m256 *lo, __m256 *hi) {
    *lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
    *hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8))));
}

AVX2_INLINE void unpack16(const uint8_t *p, int u, const int BITS, const int mv, __m256 *lo,
                          __m256 *hi) {
    if (BITS == 4) {
        if (mv)
            unpack4_mv(p + u / 2, lo, hi);
        else
            unpack4(p + u / 2, lo, hi);
    } else if (BITS == 8) {
        unpack8(p + u, lo, hi);
    } else {
        *lo = unpack_bits8(p + (size_t)u * BITS / 8, BITS);
        *hi = unpack_bits8(p + (size_t)(u + 8) * BITS / 8, BITS);
    }
}

AVX2_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* NN weight rows from n against x rows m0..m0+MR-1. The group scale is
 * applied to a whole group's dot product and the bias to the group's x sum,
 * so the inner loop is unpack + FMA only. Two weight rows at once give the
 * out-of-order core two independent chains and share the x loads. */
AVX2_INLINE void mv_rows(const gm_qmm_ctx *c, int n, int m0, const int NN, const int MR,
                         const int BITS, const int GS) {
    const gm_qmm_args *a = c->a;
    const int K = a->K, G = c->groups;
    const float *x = c->xp + (size_t)m0 * K;
    const float *xs = c->xsum + (size_t)m0 * c->xsum_stride;
    __m256 yacc[2][MV_ROWS];
    #pragma GCC unroll 8
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) yacc[j][r] = _mm256_setzero_ps();
    for (int g0 = 0; g0 < G; g0 += 8) {
        int ng = G - g0 < 8 ? G - g0 : 8;
        float sf[2][8];
        #pragma GCC unroll 8
        for (int j = 0; j < NN; j++) {
            float bf[8];
            size_t gi = (size_t)(n + j) * G + g0;
            load8(a->scales, gi, ng, a->sb_dtype, sf[j]);
            load8(a->biases, gi, ng, a->sb_dtype, bf);
            /* Biases times group sums, lane by lane (the tail is zero-padded);
             * the lanes are summed with the rest at the end. */
            __m256 bv = _mm256_loadu_ps(bf);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++)
                yacc[j][r] = _mm256_fmadd_ps(
                    bv, _mm256_loadu_ps(xs + (size_t)r * c->xsum_stride + g0), yacc[j][r]);
        }
        for (int gi = 0; gi < ng; gi++) {
            int g = g0 + gi;
            const float *xg = x + (size_t)g * GS;
            #pragma GCC unroll 8
            for (int j = 0; j < NN; j++)
                _mm_prefetch((const char *)(a->w + (size_t)(n + j) * c->wrow) +
                                 (size_t)g * (GS * BITS / 8) + QMM_PREFETCH,
                             _MM_HINT_T0);
            __m256 d0[2][MV_ROWS], d1[2][MV_ROWS];
            #pragma GCC unroll 8
            for (int j = 0; j < NN; j++)
                #pragma GCC unroll 8
                for (int r = 0; r < MR; r++) d0[j][r] = d1[j][r] = _mm256_setzero_ps();
            #pragma GCC unroll 8
            for (int u = 0; u < GS; u += 16) {
                #pragma GCC unroll 8
                for (int j = 0; j < NN; j++) {
                    const uint8_t *p = (const uint8_t *)(a->w + (size_t)(n + j) * c->wrow) +
                                       (size_t)g * (GS * BITS / 8);
                    __m256 lo, hi;
                    unpack16(p, u, BITS, 1, &lo, &hi);
                    #pragma GCC unroll 8
                    for (int r = 0; r < MR; r++) {
                        const float *xr = xg + (size_t)r * K + u;
                        d0[j][r] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xr), d0[j][r]);
                        d1[j][r] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xr + 8), d1[j][r]);
                    }
                }
            }
            #pragma GCC unroll 8
            for (int j = 0; j < NN; j++) {
                __m256 sc = _mm256_broadcast_ss(&sf[j][gi]);
                #pragma GCC unroll 8
                for (int r = 0; r < MR; r++)
                    yacc[j][r] = _mm256_fmadd_ps(sc, _mm256_add_ps(d0[j][r], d1[j][r]), yacc[j][r]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
            qmm_store(a->y, (size_t)(m0 + r) * a->N + n + j, hsum(yacc[j][r]), a->y_dtype);
}

/* Pairs of weight rows while x has at most 2 rows (registers allow it),
 * single rows with up to MV_ROWS x rows otherwise. */
AVX2_INLINE void mv_body(const gm_qmm_ctx *c, int n0, int n1, const int BITS, const int GS) {
    int M = c->a->M;
    int n = n0;
    if (M <= 2) {
        for (; n + 2 <= n1; n += 2) {
            if (M == 1)
                mv_rows(c, n, 0, 2, 1, BITS, GS);
            else
                mv_rows(c, n, 0, 2, 2, BITS, GS);
        }
    }
    for (; n < n1; n++) {
        for (int m0 = 0; m0 < M; m0 += MV_ROWS) {
            switch (M - m0 < MV_ROWS ? M - m0 : MV_ROWS) {
            case 1: mv_rows(c, n, m0, 1, 1, BITS, GS); break;
            case 2: mv_rows(c, n, m0, 1, 2, BITS, GS); break;
            case 3: mv_rows(c, n, m0, 1, 3, BITS, GS); break;
            default: mv_rows(c, n, m0, 1, 4, BITS, GS); break;
            }
        }
    }
}

#define MV_VARIANT(B, S) \
    AVX2_FN static void mv_##B##_##S(const gm_qmm_ctx *c, int n0, int n1) { mv_body(c, n0, n1, B, S); }
#define MV_VARIANTS(B) MV_VARIANT(B, 32) MV_VARIANT(B, 64) MV_VARIANT(B, 128)
MV_VARIANTS(2)
MV_VARIANTS(3)
MV_VARIANTS(4)
MV_VARIANTS(5)
MV_VARIANTS(6)
MV_VARIANTS(8)

typedef void (*mv_fn)(const gm_qmm_ctx *, int, int);
static const mv_fn mv_table[9][3] = {
    [2] = {mv_2_32, mv_2_64, mv_2_128}, [3] = {mv_3_32, mv_3_64, mv_3_128},
    [4] = {mv_4_32, mv_4_64, mv_4_128}, [5] = {mv_5_32, mv_5_64, mv_5_128},
    [6] = {mv_6_32, mv_6_64, mv_6_128}, [8] = {mv_8_32, mv_8_64, mv_8_128},
};

static void mv(const gm_qmm_ctx *c, int n0, int n1) {
    int gs = c->a->group_size;
    mv_table[c->a->bits][gs == 32 ? 0 : gs == 64 ? 1 : 2](c, n0, n1);
}

AVX2_INLINE void dequant_body(const gm_qmm_ctx *c, int n0, int nr, int k0, int kc, float *dst,
                              const int BITS) {
    const gm_qmm_args *a = c->a;
    int gs = a->group_size, G = c->groups;
    for (int i = 0; i < nr; i++) {
        int n = n0 + i;
        const uint8_t *wb = (const uint8_t *)(a->w + (size_t)n * c->wrow);
        float *d = dst + (size_t)i * kc;
        for (int k = k0; k < k0 + kc; k += gs) {
            size_t gi = (size_t)n * G + (size_t)(k / gs);
            __m256 s = _mm256_set1_ps(load1(a->scales, gi, a->sb_dtype));
            __m256 b = _mm256_set1_ps(load1(a->biases, gi, a->sb_dtype));
            const uint8_t *p = wb + (size_t)k * BITS / 8;
            for (int u = 0; u < gs; u += 16, d += 16) {
                __m256 lo, hi;
                unpack16(p, u, BITS, 0, &lo, &hi);
                _mm256_storeu_ps(d, _mm256_fmadd_ps(lo, s, b));
                _mm256_storeu_ps(d + 8, _mm256_fmadd_ps(hi, s, b));
            }
        }
    }
}

AVX2_FN static void dequant(const gm_qmm_ctx *c, int n0, int nr, int k0, int kc, float *dst) {
    switch (c->a->bits) {
    case 2: dequant_body(c, n0, nr, k0, kc, dst, 2); break;
    case 3: dequant_body(c, n0, nr, k0, kc, dst, 3); break;
    case 4: dequant_body(c, n0, nr, k0, kc, dst, 4); break;
    case 5: dequant_body(c, n0, nr, k0, kc, dst, 5); break;
    case 6: dequant_body(c, n0, nr, k0, kc, dst, 6); break;
    default: dequant_body(c, n0, nr, k0, kc, dst, 8); break;
    }
}

/* NR weight rows x NV*8 x rows: 12 accumulators at most, one broadcast per
 * weight row per k and NV loads of x. */
AVX2_INLINE void micro_body(const float *wt, int ldw, const float *xp, int kc, float *acc,
                            int ldc, int first, const int NR, const int NV) {
    __m256 cc[QMM_NR][2];
    #pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            cc[i][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + (size_t)i * ldc + 8 * v);
    const int W = NV * 8;
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 x0 = _mm256_loadu_ps(xp + (size_t)k * W);
        __m256 x1 = NV == 2 ? _mm256_loadu_ps(xp + (size_t)k * W + 8) : x0;
        #pragma GCC unroll 8
        for (int i = 0; i < NR; i++) {
            __m256 w = _mm256_broadcast_ss(wt + (size_t)i * ldw + k);
            cc[i][0] = _mm256_fmadd_ps(w, x0, cc[i][0]);
            if (NV == 2) cc[i][1] = _mm256_fmadd_ps(w, x1, cc[i][1]);
        }
    }
    #pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(acc + (size_t)i * ldc + 8 * v, cc[i][v]);
}

#define MICRO_VARIANT(R, V)                                                                   \
    AVX2_FN static void micro_##R##_##V(const float *wt, int ldw, const float *xp, int kc,   \
                                        float *acc, int ldc, int first) {                     \
        micro_body(wt, ldw, xp, kc, acc, ldc, first, R, V);                                   \
    }
MICRO_VARIANT(1, 1)
MICRO_VARIANT(2, 1)
MICRO_VARIANT(3, 1)
MICRO_VARIANT(4, 1)
MICRO_VARIANT(5, 1)
MICRO_VARIANT(6, 1)
MICRO_VARIANT(1, 2)
MICRO_VARIANT(2, 2)
MICRO_VARIANT(3, 2)
MICRO_VARIANT(4, 2)
MICRO_VARIANT(5, 2)
MICRO_VARIANT(6, 2)

typedef void (*micro_fn)(const float *, int, const float *, int, float *, int, int);
static const micro_fn micro_table[2][QMM_NR] = {
    {micro_1_1, micro_2_1, micro_3_1, micro_4_1, micro_5_1, micro_6_1},
    {micro_1_2, micro_2_2, micro_3_2, micro_4_2, micro_5_2, micro_6_2},
};

static void micro(const float *wt, int ldw, const float *xp, int width, int kc, float *acc,
                  int ldc, int nr, int first) {
    micro_table[width > 8][nr - 1](wt, ldw, xp, kc, acc, ldc, first);
}

/* Eight floats to bfloat16, round to nearest even, NaN kept quiet (as
 * gm_f32_to_bf16). */
AVX2_INLINE __m128i to_bf16x8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, qnan, isnan);
    __m256i p = _mm256_packus_epi32(r, r); /* r0-3 r0-3 | r4-7 r4-7 */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0xd8));
}

AVX2_INLINE void store8(void *y, size_t i, __m256 v, gm_fdtype t) {
    if (t == GM_F16)
        _mm_storeu_si128((__m128i *)((uint16_t *)y + i),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    else if (t == GM_BF16)
        _mm_storeu_si128((__m128i *)((uint16_t *)y + i), to_bf16x8(v));
    else
        _mm256_storeu_ps((float *)y + i, v);
}

AVX2_INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xee);
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xee);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

/* The tiled path's sums are [n][m]; y is [m][n]: 8x8 blocks are
 * transposed in registers so both sides are read and written in runs. */
AVX2_FN static void store(const gm_qmm_ctx *c, const float *acc, int n0, int nrows) {
    const gm_qmm_args *a = c->a;
    const int M = a->M, N = a->N, ldc = c->mpad;
    int i0 = 0;
    for (; i0 + 8 <= nrows; i0 += 8) {
        int m0 = 0;
        for (; m0 + 8 <= M; m0 += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(acc + (size_t)(i0 + k) * ldc + m0);
            transpose8(r);
            for (int k = 0; k < 8; k++) store8(a->y, (size_t)(m0 + k) * N + n0 + i0, r[k], a->y_dtype);
        }
        for (; m0 < M; m0++)
            for (int k = 0; k < 8; k++)
                qmm_store(a->y, (size_t)m0 * N + n0 + i0 + k, acc[(size_t)(i0 + k) * ldc + m0],
                          a->y_dtype);
    }
    for (; i0 < nrows; i0++)
        for (int m = 0; m < M; m++)
            qmm_store(a->y, (size_t)m * N + n0 + i0, acc[(size_t)i0 * ldc + m], a->y_dtype);
}

const gm_qmm_backend gm_qmm_avx2 = {"avx2", mv, dequant, micro, store, 0, NULL, NULL};

#endif
