/* attention_avx2.c - AVX2+FMA helpers of the attention kernel (x86-64):
 * the exponential of a score row (a libm expf per score costs more than
 * the multiply-adds around it at small D; this does 8 lanes in ~15
 * instructions) and the direct products of the few-query-row (decode)
 * path, which read k and v rows in place, converting 8 at a time. Each
 * function carries its own target attribute, so the file builds without
 * -mavx2 and is only used after a CPU check. */
#include "kernels/attention_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* exp(x) for x <= 0 as 2^k * e^r with k = round(x / ln2) and
 * |r| <= ln2/2: ln2 is split in a high part exact in float and a low part,
 * so r carries no cancellation error, and e^r is its Taylor series to r^7
 * (truncation below 1e-8 relative on that interval). Inputs below -86
 * are clamped there and give ~4e-38 instead of the true (smaller) value,
 * which no sum of probabilities can tell apart from 0. */
AVX2_INLINE __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-86.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(k), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

AVX2_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_FN static float exp_row(float *s, int n, float mx) {
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (j < n) { /* the tail through a zero-padded copy: one code path */
        float t[8];
        int m = n - j;
        for (int i = 0; i < 8; i++) t[i] = i < m ? s[j + i] - mx : -100.0f;
        __m256 e = exp8(_mm256_loadu_ps(t));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                 _mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))));
        _mm256_storeu_ps(t, e);
        for (int i = 0; i < m; i++) s[j + i] = t[i];
        acc = _mm256_add_ps(acc, e);
    }
    return hsum(acc);
}

/* Eight consecutive elements of a row (element stride 1) as float32. */
AVX2_INLINE __m256 load8(const void *base, int64_t i, gm_fdtype t) {
    if (t == GM_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    if (t == GM_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)base + i);
}

/* Up to 4 query rows per pass over a key row: 4 independent FMA chains,
 * one k load shared by all of them. */
AVX2_INLINE void scores_body(const float *Q, int ldq, const att_rows *k, int nk, int D, float *S,
                             int lds, const int NR, gm_fdtype t) {
    for (int j = 0; j < nk; j++) {
        int64_t row = k->off + j * k->sj;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        for (int d = 0; d < D; d += 8) {
            __m256 kv = load8(k->base, row + d, t);
            #pragma GCC unroll 4
            for (int r = 0; r < NR; r++)
                acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(Q + (int64_t)r * ldq + d), kv, acc[r]);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) S[(int64_t)r * lds + j] = hsum(acc[r]);
    }
}

#define SCORES_T(NR, T)                                                                     \
    AVX2_FN static void scores_##NR##_##T(const float *Q, int ldq, const att_rows *k, int nk, \
                                          int D, float *S, int lds) {                      \
        scores_body(Q, ldq, k, nk, D, S, lds, NR, T);                                      \
    }
#define SCORES(NR) SCORES_T(NR, GM_F32) SCORES_T(NR, GM_F16) SCORES_T(NR, GM_BF16)
SCORES(1)
SCORES(2)
SCORES(3)
SCORES(4)

typedef void (*scores_fn)(const float *, int, const att_rows *, int, int, float *, int);
static const scores_fn scores_table[3][4] = {
    {scores_1_GM_F32, scores_2_GM_F32, scores_3_GM_F32, scores_4_GM_F32},
    {scores_1_GM_F16, scores_2_GM_F16, scores_3_GM_F16, scores_4_GM_F16},
    {scores_1_GM_BF16, scores_2_GM_BF16, scores_3_GM_BF16, scores_4_GM_BF16},
};

static void scores(const float *Q, int R, int ldq, const att_rows *k, int nk, int D, float *S,
                   int lds) {
    if (k->sd != 1 || D % 8) {
        att_ops_scalar.scores(Q, R, ldq, k, nk, D, S, lds);
        return;
    }
    for (int r0 = 0; r0 < R; r0 += 4) {
        int nr = R - r0 < 4 ? R - r0 : 4;
        scores_table[k->t][nr - 1](Q + (int64_t)r0 * ldq, ldq, k, nk, D, S + (int64_t)r0 * lds,
                                   lds);
    }
}

/* Up to 4 query rows x 8 * W columns of the output in registers over all
 * keys of the block: per key W v loads, one broadcast per row. W is 4
 * (32 columns, 12 accumulators) for up to 3 rows, else 2: a pass reads
 * half a float32 row of 64 instead of a quarter. */
AVX2_INLINE void accum_body(const float *P, int ldp, const att_rows *v, int nk, int d0, float *O,
                            int ldo, const int NR, const int W, gm_fdtype t) {
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int w = 0; w < W; w++) acc[r][w] = _mm256_loadu_ps(O + (int64_t)r * ldo + d0 + 8 * w);
    for (int j = 0; j < nk; j++) {
        int64_t row = v->off + j * v->sj + d0;
        __m256 vv[4];
        #pragma GCC unroll 4
        for (int w = 0; w < W; w++) vv[w] = load8(v->base, row + 8 * w, t);
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m256 p = _mm256_broadcast_ss(P + (int64_t)r * ldp + j);
            #pragma GCC unroll 4
            for (int w = 0; w < W; w++) acc[r][w] = _mm256_fmadd_ps(p, vv[w], acc[r][w]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int w = 0; w < W; w++) _mm256_storeu_ps(O + (int64_t)r * ldo + d0 + 8 * w, acc[r][w]);
}

#define ACCUM_T(NR, W, T)                                                                     \
    AVX2_FN static void accum_##NR##_##W##_##T(const float *P, int ldp, const att_rows *v,    \
                                               int nk, int d0, float *O, int ldo) {           \
        accum_body(P, ldp, v, nk, d0, O, ldo, NR, W, T);                                      \
    }
#define ACCUM(NR, W) ACCUM_T(NR, W, GM_F32) ACCUM_T(NR, W, GM_F16) ACCUM_T(NR, W, GM_BF16)
ACCUM(1, 2)
ACCUM(2, 2)
ACCUM(3, 2)
ACCUM(4, 2)
ACCUM(1, 4)
ACCUM(2, 4)
ACCUM(3, 4)

typedef void (*accum_fn)(const float *, int, const att_rows *, int, int, float *, int);
/* [dtype][rows - 1]: 16 columns a pass, and for up to 3 rows 32 */
static const accum_fn accum16_table[3][4] = {
    {accum_1_2_GM_F32, accum_2_2_GM_F32, accum_3_2_GM_F32, accum_4_2_GM_F32},
    {accum_1_2_GM_F16, accum_2_2_GM_F16, accum_3_2_GM_F16, accum_4_2_GM_F16},
    {accum_1_2_GM_BF16, accum_2_2_GM_BF16, accum_3_2_GM_BF16, accum_4_2_GM_BF16},
};
static const accum_fn accum32_table[3][3] = {
    {accum_1_4_GM_F32, accum_2_4_GM_F32, accum_3_4_GM_F32},
    {accum_1_4_GM_F16, accum_2_4_GM_F16, accum_3_4_GM_F16},
    {accum_1_4_GM_BF16, accum_2_4_GM_BF16, accum_3_4_GM_BF16},
};

static void accum(const float *P, int R, int ldp, const att_rows *v, int nk, int D, float *O,
                  int ldo) {
    if (v->sd != 1 || D % 16) {
        att_ops_scalar.accum(P, R, ldp, v, nk, D, O, ldo);
        return;
    }
    for (int r0 = 0; r0 < R; r0 += 4) {
        int nr = R - r0 < 4 ? R - r0 : 4;
        for (int d0 = 0; d0 < D;) {
            int wide = nr <= 3 && D - d0 >= 32;
            (wide ? accum32_table[v->t][nr - 1] : accum16_table[v->t][nr - 1])(
                P + (int64_t)r0 * ldp, ldp, v, nk, d0, O + (int64_t)r0 * ldo, ldo);
            d0 += wide ? 32 : 16;
        }
    }
}

const att_ops att_ops_avx2 = {exp_row, scores, accum};
#endif
