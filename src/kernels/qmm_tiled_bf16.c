/* qmm_tiled_bf16.c - the tiled (prefill) product for bfloat16 or float16 x
 * and 4- or 8-bit weights on AVX-512 BF16 (Zen 4, Sapphire Rapids).
 *
 * The float tiled path (qmm.c, qmm_avx2.c) dequantizes every weight to
 * float32 and spends an FMA per weight and x row: on Zen 4 its micro-kernel
 * was 73% of a bfloat16 Qwen2.5-0.5B-shaped prefill. Here weights stay the
 * integers q they are (exact in bfloat16, as is bfloat16 x), vdpbf16ps
 * multiplies two k's for 16 x rows per instruction, and each group's sums
 * take their scale and bias once: s * sum(q x) + b * sum(x), the form the
 * mat-vec uses. Products are exact and sums float32, like the float path;
 * x values below 2^-126, which the instruction reads as zero, are lost (as
 * in the mat-vec's bfloat16 path). float16 x goes as two bfloat16 terms
 * whose sum is x exactly (its top 8 significant bits, then the other 3;
 * every float16 is a normal bfloat16 magnitude), both against the same
 * weights: twice the products of bfloat16 x, still ~1.4x the float path
 * (a float16 Qwen2.5-0.5B shape's prefill, docs/CPU_KERNELS.md).
 *
 * A byte of 4-bit weights holds two consecutive k (low nibble first), so a
 * table of 256 pairs of bfloat16 turns it into one 32-bit operand, which a
 * broadcast spreads over the 16 lanes of x rows; two 8-bit weights take a
 * table of 256 single values each. A micro-tile is NR weight
 * rows by a panel of 32 x rows (two vectors): 2*NR sums and 2*NR group
 * partials in registers. The results go through the float path's scratch
 * and its transposing store. */
#include "kernels/qmm_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>

#include "kernels/pool.h"

#define TB_TARGET "avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c"
#define TB_FN __attribute__((target(TB_TARGET)))
#define TB_INLINE static inline __attribute__((always_inline, target(TB_TARGET)))
#define TB_NR 6  /* weight rows a micro-tile */
#define TB_MP 32 /* x rows a panel */

/* byte -> bfloat16(low nibble) | bfloat16(high nibble) << 16, and byte ->
 * bfloat16(byte) */
static uint32_t g_pair[256];
static uint16_t g_byte[256];
static void init_tables(void) {
    for (int b = 0; b < 256; b++) {
        g_pair[b] = (uint32_t)gm_f32_to_bf16((float)(b & 15)) | (uint32_t)gm_f32_to_bf16((float)(b >> 4)) << 16;
        g_byte[b] = gm_f32_to_bf16((float)b);
    }
}

/* Weights k = 2p, 2p + 1 of a row as a bfloat16 pair. */
static inline uint32_t weight_pair(const uint8_t *row, int p, int bits) {
    if (bits == 4) return g_pair[row[p]];
    return (uint32_t)g_byte[row[2 * p]] | (uint32_t)g_byte[row[2 * p + 1]] << 16;
}

typedef struct tb_job {
    gm_qmm_ctx c; /* the caller's, with mpad set: what the store reads */
    const gm_qmm_backend *store_be;
    uint32_t *xpair; /* per panel [terms][K/2][TB_MP]: x[m][2p] | x[m][2p+1] << 16 */
    float *xsum;     /* per panel [groups][TB_MP] */
    float *acc;      /* per worker [nc][mpad] */
    int npanels, nc, terms;
} tb_job;

/* A row of K float16 x (K a multiple of 32: of the group size) as two
 * bfloat16 terms whose sum is x exactly, 16 at a time: its float32's top 16
 * bits, then the rest (at most 3 significant bits, exact in bfloat16).
 * Pairs go to hi and lo, TB_MP words apart (the panel's layout); each
 * group's sum of x to sums, TB_MP floats apart. */
TB_INLINE void f16_row_terms(const uint16_t *row, int K, int gs, uint32_t *hi, uint32_t *lo, float *sums) {
    const __m512i top_mask = _mm512_set1_epi32((int)0xffff0000u);
    __m512 group = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + k)));
        const __m512i top = _mm512_and_si512(_mm512_castps_si512(f), top_mask);
        const __m512 rest = _mm512_sub_ps(f, _mm512_castsi512_ps(top));
        /* 16 halves packed are 8 pairs, element 2q low, as one 32-bit word each */
        uint32_t h[8], l[8];
        _mm256_storeu_si256((__m256i *)h, _mm512_cvtepi32_epi16(_mm512_srli_epi32(top, 16)));
        _mm256_storeu_si256((__m256i *)l, _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(rest), 16)));
        for (int q = 0; q < 8; q++) hi[(size_t)(k / 2 + q) * TB_MP] = h[q], lo[(size_t)(k / 2 + q) * TB_MP] = l[q];
        group = _mm512_add_ps(group, f);
        if ((k + 16) % gs == 0) {
            sums[(size_t)(k / gs) * TB_MP] = _mm512_reduce_add_ps(group);
            group = _mm512_setzero_ps();
        }
    }
}

/* Panel p of x: its pairs and group sums, zero past M. */
TB_FN static void pack_x(void *ctx, int p, int worker) {
    (void)worker;
    const tb_job *j = ctx;
    const gm_qmm_args *a = j->c.a;
    const int K = a->K, gs = a->group_size, G = j->c.groups, T = j->terms;
    const size_t term = (size_t)(K / 2) * TB_MP; /* one term's pairs in a panel */
    uint32_t *dst = j->xpair + (size_t)p * T * term;
    float *sum = j->xsum + (size_t)p * G * TB_MP;
    const uint16_t *x = a->x;
    for (int i = 0; i < TB_MP; i++) {
        int m = p * TB_MP + i;
        if (m >= a->M) { /* padding rows */
            for (size_t q = 0; q < (size_t)T * K / 2; q++) dst[q * TB_MP + i] = 0;
            for (int g = 0; g < G; g++) sum[(size_t)g * TB_MP + i] = 0.0f;
            continue;
        }
        const uint16_t *row = x + (size_t)m * K;
        if (T == 2) {
            f16_row_terms(row, K, gs, dst + i, dst + term + i, sum + i);
            continue;
        }
        for (int q = 0; q < K / 2; q++) dst[(size_t)q * TB_MP + i] = (uint32_t)row[2 * q] | (uint32_t)row[2 * q + 1] << 16;
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
            for (int k = 0; k < gs; k++) s += gm_bf16_to_f32(row[g * gs + k]);
            sum[(size_t)g * TB_MP + i] = s;
        }
    }
}

/* acc rows n0..n0+NR-1 (ldc apart), panel columns 0..31 = sum over K of the
 * rows' weights times the panel's x rows (T terms of them). */
TB_INLINE void micro(const tb_job *j, int n0, const uint32_t *xp, const float *xs, float *acc, const int NR,
                     const int BITS, const int T) {
    const gm_qmm_args *a = j->c.a;
    const int K = a->K, gs = a->group_size, G = j->c.groups, ldc = j->c.mpad, row_bytes = K * BITS / 8;
    const uint8_t *w = (const uint8_t *)a->w + (size_t)n0 * row_bytes;
    __m512 sum[TB_NR][2];
    #pragma GCC unroll 6
    for (int i = 0; i < NR; i++) sum[i][0] = sum[i][1] = _mm512_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m512 part[TB_NR][2];
        #pragma GCC unroll 6
        for (int i = 0; i < NR; i++) part[i][0] = part[i][1] = _mm512_setzero_ps();
        const int p0 = g * gs / 2;
        #pragma GCC unroll 2
        for (int p = p0; p < p0 + gs / 2; p++) {
            __m512bh x0[2], x1[2];
            #pragma GCC unroll 2
            for (int t = 0; t < T; t++) {
                const uint32_t *xt = xp + ((size_t)t * (K / 2) + p) * TB_MP;
                x0[t] = (__m512bh)_mm512_loadu_si512(xt);
                x1[t] = (__m512bh)_mm512_loadu_si512(xt + 16);
            }
            #pragma GCC unroll 6
            for (int i = 0; i < NR; i++) {
                const __m512bh q = (__m512bh)_mm512_set1_epi32((int)weight_pair(w + (size_t)i * row_bytes, p, BITS));
                #pragma GCC unroll 2
                for (int t = 0; t < T; t++) {
                    part[i][0] = _mm512_dpbf16_ps(part[i][0], x0[t], q);
                    part[i][1] = _mm512_dpbf16_ps(part[i][1], x1[t], q);
                }
            }
        }
        const __m512 xs0 = _mm512_loadu_ps(xs + (size_t)g * TB_MP), xs1 = _mm512_loadu_ps(xs + (size_t)g * TB_MP + 16);
        #pragma GCC unroll 6
        for (int i = 0; i < NR; i++) {
            const size_t gi = (size_t)(n0 + i) * G + g;
            const __m512 s = _mm512_set1_ps(qmm_load(a->scales, gi, a->sb_dtype));
            const __m512 b = _mm512_set1_ps(qmm_load(a->biases, gi, a->sb_dtype));
            sum[i][0] = _mm512_fmadd_ps(b, xs0, _mm512_fmadd_ps(part[i][0], s, sum[i][0]));
            sum[i][1] = _mm512_fmadd_ps(b, xs1, _mm512_fmadd_ps(part[i][1], s, sum[i][1]));
        }
    }
    #pragma GCC unroll 6
    for (int i = 0; i < NR; i++) {
        _mm512_storeu_ps(acc + (size_t)i * ldc, sum[i][0]);
        _mm512_storeu_ps(acc + (size_t)i * ldc + 16, sum[i][1]);
    }
}

TB_FN static void task(void *ctx, int t, int worker) {
    const tb_job *j = ctx;
    const gm_qmm_args *a = j->c.a;
    const int K = a->K, G = j->c.groups;
    const int n0 = t * j->nc, nrows = a->N - n0 < j->nc ? a->N - n0 : j->nc;
    float *acc = j->acc + (size_t)worker * j->nc * j->c.mpad;
    for (int p = 0; p < j->npanels; p++) {
        const uint32_t *xp = j->xpair + (size_t)p * j->terms * (K / 2) * TB_MP;
        const float *xs = j->xsum + (size_t)p * G * TB_MP;
        for (int i0 = 0; i0 < nrows; i0 += TB_NR) {
            float *out = acc + (size_t)i0 * j->c.mpad + (size_t)p * TB_MP;
            const int nr = nrows - i0 < TB_NR ? nrows - i0 : TB_NR;
            /* NR, BITS and terms as constants, so each micro-tile is unrolled */
#define TB_MICRO_T(NR, T)                                                                  \
    (a->bits == 4 ? micro(j, n0 + i0, xp, xs, out, NR, 4, T) : micro(j, n0 + i0, xp, xs, out, NR, 8, T))
#define TB_MICRO(NR) (j->terms == 1 ? TB_MICRO_T(NR, 1) : TB_MICRO_T(NR, 2))
            switch (nr) {
            case 1: TB_MICRO(1); break;
            case 2: TB_MICRO(2); break;
            case 3: TB_MICRO(3); break;
            case 4: TB_MICRO(4); break;
            case 5: TB_MICRO(5); break;
            default: TB_MICRO(6); break;
            }
#undef TB_MICRO
#undef TB_MICRO_T
        }
    }
    j->store_be->store(&j->c, acc, n0, nrows);
}

TB_FN int gm_qmm_tiled_bf16(const gm_qmm_ctx *c, const gm_qmm_backend *store_be) {
    const gm_qmm_args *a = c->a;
    if ((a->bits != 4 && a->bits != 8) || (a->x_dtype != GM_BF16 && a->x_dtype != GM_F16) || a->K % 2 ||
        !store_be->store)
        return -2;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_tables);
    const int threads = gm_pool_threads();
    tb_job j = {.c = *c, .store_be = store_be, .terms = a->x_dtype == GM_F16 ? 2 : 1};
    j.npanels = (a->M + TB_MP - 1) / TB_MP;
    j.c.mpad = j.npanels * TB_MP;
    /* Rows a task: enough tasks for every thread, a multiple of TB_NR. */
    int want = (a->N + 4 * threads - 1) / (4 * threads);
    j.nc = want < 96 ? (want + TB_NR - 1) / TB_NR * TB_NR : 96;
    size_t xpair_words = (size_t)j.npanels * j.terms * (a->K / 2) * TB_MP;
    size_t xsum_floats = (size_t)j.npanels * c->groups * TB_MP;
    size_t acc_floats = (size_t)threads * j.nc * j.c.mpad;
    char *buf = aligned_alloc(64, ((xpair_words + xsum_floats + acc_floats) * 4 + 63) / 64 * 64);
    if (!buf) return -1;
    j.xpair = (uint32_t *)buf;
    j.xsum = (float *)(j.xpair + xpair_words);
    j.acc = j.xsum + xsum_floats;
    gm_pool_run(pack_x, &j, j.npanels, threads);
    gm_pool_run(task, &j, (a->N + j.nc - 1) / j.nc, threads);
    free(buf);
    return 0;
}

#endif
