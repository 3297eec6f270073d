/* qmm_avx512.c - AVX-512 BF16 matrix-vector kernel for 4- and 8-bit
 * weights (x86-64 with avx512bw + avx512_bf16: Zen 4, Sapphire Rapids).
 *
 * The float kernel (qmm_avx2.c) spends an unpack, a conversion and an FMA
 * per 8 weights; on Zen 4 that is compute-bound at ~half the memory
 * bandwidth. Here 64 bytes of weights become bfloat16 values with one
 * table lookup (vpermw) per 32 of them, and vdpbf16ps multiplies 32 pairs
 * per instruction. Weights 0..15 (and 16*(0..15)) are exact in bfloat16.
 * x is split once per call (qmm.c) into 1-3 bfloat16 terms whose sum is
 * x exactly (truncation keeps 8 significant bits per term: bfloat16 x
 * needs one, float16 two, float32 three), and bf16 products are exact in
 * float32, so the sums are float32 sums of exact products like the float
 * kernel's; only x values below 2^-126 (whose terms the instruction reads
 * as zero) are lost. Other bit widths and the tiled path use qmm_avx2.c. */
#include "kernels/qmm_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define V512_TARGET "avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c"
#define V512_FN __attribute__((target(V512_TARGET)))
#define V512_INLINE static inline __attribute__((always_inline, target(V512_TARGET)))
#define MV_ROWS 4 /* rows of x sharing one pass over the weights */
/* With one term of x the loop waits on memory (one thread streamed at
 * 14-16 GB/s where it computes at ~21 from cache): weights are prefetched
 * 8 KB ahead into L2, 6-20% more GB/s per decode step's mat-vecs on the
 * Qwen2.5-0.5B shape than 4 KB into L1 (bench_qmm --step, alternating).
 * With two or three terms it is compute-bound and the L2 lead measured
 * slightly worse on SmolLM2's shapes, so those keep 4 KB into L1. */
#define QMM_PREFETCH_L2 8192
#define QMM_PREFETCH_L1 4096

/* Up to 4 consecutive scales as float32 (n of them; the rest zero), never
 * reading past the n-th. */
V512_INLINE __m128 load_scales(const void *p, size_t i, int n, gm_fdtype t) {
    __mmask8 m = (__mmask8)((1u << n) - 1);
    if (t == GM_F32) return _mm_maskz_loadu_ps(m, (const float *)p + i);
    __m128i h = _mm_maskz_loadu_epi16(m, (const uint16_t *)p + i);
    if (t == GM_F16) return _mm_cvtph_ps(h);
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16));
}

/* 16 consecutive biases (n of them) as float32. */
V512_INLINE __m512 load_biases(const void *p, size_t i, int n, gm_fdtype t) {
    __mmask16 m = (__mmask16)((1u << n) - 1);
    if (t == GM_F32) return _mm512_maskz_loadu_ps(m, (const float *)p + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i);
    if (t == GM_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* One 64-byte run of a weight row as four vectors of 32 bfloat16 weights.
 * Word j of the run holds bytes 2j and 2j+1; vpermw reads the low 5 bits of
 * each word as the table index (the tables repeat after 16), so shifting
 * the word by 0, 4, 8 and 12 selects its four nibbles. 4-bit: nibbles are
 * elements 4j..4j+3 of the run. 8-bit: the low and high nibbles of
 * elements 2j and 2j+1, the high ones looked up as 16*nibble. */
V512_INLINE void unpack_run(__m512i w, __m512i lo_tab, __m512i hi_tab, const int BITS,
                            __m512bh p[4]) {
    __m512i hi = BITS == 8 ? hi_tab : lo_tab;
    p[0] = (__m512bh)_mm512_permutexvar_epi16(w, lo_tab);
    p[1] = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 4), hi);
    p[2] = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 8), lo_tab);
    p[3] = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 12), hi);
}

/* NN weight rows from n against x rows m0..m0+MR-1, T terms of x. A run
 * is 64 bytes: E = 128 (4-bit) or 64 (8-bit) elements, lane i of a dot
 * product covering E/16 consecutive ones, so a run holds E/GS groups (or
 * part of one) and the scales are spread over the lanes to match. */
V512_INLINE void mv_rows(const gm_qmm_ctx *c, int n, int m0, __m512i lo_tab, __m512i hi_tab,
                         const int NN, const int MR, const int BITS, const int GS, const int T) {
    const gm_qmm_args *a = c->a;
    const int K = a->K, G = c->groups;
    const int E = BITS == 4 ? 128 : 64;
    const int runs = (K + E - 1) / E;
    const int per_run = E >= GS ? E / GS : 1; /* groups starting in a run */
    const __m512i lane_group = _mm512_srli_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        __builtin_ctz(16 / per_run));
    __m512 yacc[2][MV_ROWS];
    #pragma GCC unroll 8
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) yacc[j][r] = _mm512_setzero_ps();
    const uint8_t *wrow[2];
    #pragma GCC unroll 2
    for (int j = 0; j < NN; j++) wrow[j] = (const uint8_t *)(a->w + (size_t)(n + j) * c->wrow);
    const size_t xstride = c->xb_stride;
    const uint16_t *xb = c->xb + (size_t)m0 * xstride;
    const int row_bytes = K * BITS / 8, full_runs = row_bytes / 64;
    const __mmask64 tail_mask = (((__mmask64)1 << (row_bytes % 64)) - 1);

    for (int q = 0; q < runs; q++) {
        int g0 = q * E / GS;
        int ng = G - g0 < per_run ? G - g0 : per_run;
        __mmask64 wm = q < full_runs ? ~(__mmask64)0 : tail_mask;
        __m512 d[2][MV_ROWS][2];
        __m512 sc[2];
        #pragma GCC unroll 2
        for (int j = 0; j < NN; j++) {
            if (T == 1)
                _mm_prefetch((const char *)wrow[j] + (size_t)q * 64 + QMM_PREFETCH_L2, _MM_HINT_T1);
            else
                _mm_prefetch((const char *)wrow[j] + (size_t)q * 64 + QMM_PREFETCH_L1, _MM_HINT_T0);
            __m512i w = _mm512_maskz_loadu_epi8(wm, wrow[j] + (size_t)q * 64);
            __m512bh p[4];
            unpack_run(w, lo_tab, hi_tab, BITS, p);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++) {
                d[j][r][0] = d[j][r][1] = _mm512_setzero_ps();
                const uint16_t *xr = xb + (size_t)r * xstride + (size_t)q * (BITS == 4 ? 128 : 64);
                #pragma GCC unroll 4
                for (int t = 0; t < T; t++)
                    #pragma GCC unroll 4
                    for (int s = 0; s < 4; s++) {
                        int stream = BITS == 4 ? s : s >> 1;
                        __m512bh xv = (__m512bh)_mm512_loadu_si512(
                            xr + (size_t)t * runs * (BITS == 4 ? 128 : 64) + stream * 32);
                        d[j][r][s & 1] = _mm512_dpbf16_ps(d[j][r][s & 1], p[s], xv);
                    }
            }
            size_t gi = (size_t)(n + j) * G + g0;
            if (per_run == 1)
                sc[j] = _mm512_set1_ps(qmm_load(a->scales, gi, a->sb_dtype));
            else
                sc[j] = _mm512_permutexvar_ps(
                    lane_group, _mm512_castps128_ps512(load_scales(a->scales, gi, ng, a->sb_dtype)));
        }
        #pragma GCC unroll 2
        for (int j = 0; j < NN; j++)
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++)
                yacc[j][r] = _mm512_fmadd_ps(_mm512_add_ps(d[j][r][0], d[j][r][1]), sc[j], yacc[j][r]);
    }
    /* Biases times the group sums of x. */
    for (int g = 0; g < G; g += 16) {
        int nb = G - g < 16 ? G - g : 16;
        #pragma GCC unroll 2
        for (int j = 0; j < NN; j++) {
            __m512 bv = load_biases(a->biases, (size_t)(n + j) * G + g, nb, a->sb_dtype);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++)
                yacc[j][r] = _mm512_fmadd_ps(
                    bv, _mm512_loadu_ps(c->xsum + (size_t)(m0 + r) * c->xsum_stride + g), yacc[j][r]);
        }
    }
    #pragma GCC unroll 2
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
            qmm_store(a->y, (size_t)(m0 + r) * a->N + n + j, _mm512_reduce_add_ps(yacc[j][r]),
                      a->y_dtype);
}

/* Pairs of weight rows while x has at most 2 rows, single rows with up to
 * MV_ROWS x rows otherwise (as the float kernel). */
V512_INLINE void mv_body(const gm_qmm_ctx *c, int n0, int n1, const int BITS, const int GS,
                         const int T) {
    uint16_t tl[32], th[32]; /* bfloat16 of 0..15 and of 16*(0..15), twice */
    for (int i = 0; i < 32; i++) {
        tl[i] = gm_f32_to_bf16((float)(i & 15));
        th[i] = gm_f32_to_bf16((float)(16 * (i & 15)));
    }
    const __m512i lo = _mm512_loadu_si512(tl), hi = _mm512_loadu_si512(th);
    int M = c->a->M;
    int n = n0;
    if (M <= 2) {
        for (; n + 2 <= n1; n += 2) {
            if (M == 1)
                mv_rows(c, n, 0, lo, hi, 2, 1, BITS, GS, T);
            else
                mv_rows(c, n, 0, lo, hi, 2, 2, BITS, GS, T);
        }
    }
    for (; n < n1; n++) {
        for (int m0 = 0; m0 < M; m0 += MV_ROWS) {
            switch (M - m0 < MV_ROWS ? M - m0 : MV_ROWS) {
            case 1: mv_rows(c, n, m0, lo, hi, 1, 1, BITS, GS, T); break;
            case 2: mv_rows(c, n, m0, lo, hi, 1, 2, BITS, GS, T); break;
            case 3: mv_rows(c, n, m0, lo, hi, 1, 3, BITS, GS, T); break;
            default: mv_rows(c, n, m0, lo, hi, 1, 4, BITS, GS, T); break;
            }
        }
    }
}

#define MV_VARIANT(B, S, T)                                                     \
    V512_FN static void mv_##B##_##S##_##T(const gm_qmm_ctx *c, int n0, int n1) { \
        mv_body(c, n0, n1, B, S, T);                                            \
    }
#define MV_VARIANTS(B, T) MV_VARIANT(B, 32, T) MV_VARIANT(B, 64, T) MV_VARIANT(B, 128, T)
MV_VARIANTS(4, 1)
MV_VARIANTS(4, 2)
MV_VARIANTS(4, 3)
MV_VARIANTS(8, 1)
MV_VARIANTS(8, 2)
MV_VARIANTS(8, 3)

typedef void (*mv_fn)(const gm_qmm_ctx *, int, int);
#define MV_ROW(B, T) {mv_##B##_32_##T, mv_##B##_64_##T, mv_##B##_128_##T}
static const mv_fn mv_table[2][3][3] = {
    {MV_ROW(4, 1), MV_ROW(4, 2), MV_ROW(4, 3)},
    {MV_ROW(8, 1), MV_ROW(8, 2), MV_ROW(8, 3)},
};

static void mv(const gm_qmm_ctx *c, int n0, int n1) {
    if (!c->xb) { /* widths without a bfloat16 layout */
        gm_qmm_avx2.matvec(c, n0, n1);
        return;
    }
    int gs = c->a->group_size;
    mv_table[c->a->bits == 8][c->xterms - 1][gs == 32 ? 0 : gs == 64 ? 1 : 2](c, n0, n1);
}

static void dequant(const gm_qmm_ctx *c, int n0, int nr, int k0, int kc, float *dst) {
    gm_qmm_avx2.dequant(c, n0, nr, k0, kc, dst);
}

static void micro(const float *wt, int ldw, const float *xp, int width, int kc, float *acc, int ldc,
                  int nr, int first) {
    gm_qmm_avx2.micro(wt, ldw, xp, width, kc, acc, ldc, nr, first);
}

static void store(const gm_qmm_ctx *c, const float *acc, int n0, int nrows) {
    gm_qmm_avx2.store(c, acc, n0, nrows);
}

const gm_qmm_backend gm_qmm_avx512 = {"avx512", mv, dequant, micro, store, 1};

#endif
