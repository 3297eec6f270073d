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
 * as zero) are lost. float32 x that needs three terms goes instead as
 * 8-bit digits of integers through vpdpbusd (mv_rows_i8, below). Other bit
 * widths and the tiled path use qmm_avx2.c. */
#include "kernels/qmm_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define V512_TARGET "avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni,avx2,fma,f16c"
#define V512_FN __attribute__((target(V512_TARGET)))
#define V512_INLINE static inline __attribute__((always_inline, target(V512_TARGET)))
#define MV_ROWS 4 /* rows of x sharing one pass over the weights */
/* With one term of x the loop waits on memory (one thread streamed at
 * 14-16 GB/s where it computes at ~21 from cache): weights are prefetched
 * 8 KB ahead into L2, 6-20% more GB/s per decode step's mat-vecs on the
 * Qwen2.5-0.5B shape than 4 KB into L1 (bench_qmm --step, alternating).
 * With two or three terms it is compute-bound and the L2 lead measured
 * slightly worse on SmolLM2's shapes, so those keep 4 KB into L1. x as
 * digits computes at ~16-18 GB/s a thread and gains from the L2 lead too
 * (Qwen2.5-0.5B shape +10-15%, SmolLM2's even). */
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

/* The scales of the groups in run q's lanes (ng of them from group g0 of
 * row n), each spread over the lanes that cover its elements. */
V512_INLINE __m512 run_scales(const gm_qmm_ctx *c, int n, int g0, int ng, int per_run,
                              __m512i lane_group) {
    const gm_qmm_args *a = c->a;
    size_t gi = (size_t)n * c->groups + g0;
    if (per_run == 1) return _mm512_set1_ps(qmm_load(a->scales, gi, a->sb_dtype));
    return _mm512_permutexvar_ps(lane_group,
                                 _mm512_castps128_ps512(load_scales(a->scales, gi, ng, a->sb_dtype)));
}

/* Adds the biases times the group sums of x to the lanes' sums of weight
 * rows n.. and x rows m0.., and stores their totals. */
V512_INLINE void add_biases_and_store(const gm_qmm_ctx *c, int n, int m0, __m512 (*yacc)[MV_ROWS],
                                      const int NN, const int MR) {
    const gm_qmm_args *a = c->a;
    const int G = c->groups;
    for (int g = 0; g < G; g += 16) {
        int nb = G - g < 16 ? G - g : 16;
        #pragma GCC unroll 4
        for (int j = 0; j < NN; j++) {
            __m512 bv = load_biases(a->biases, (size_t)(n + j) * G + g, nb, a->sb_dtype);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++)
                yacc[j][r] = _mm512_fmadd_ps(
                    bv, _mm512_loadu_ps(c->xsum + (size_t)(m0 + r) * c->xsum_stride + g), yacc[j][r]);
        }
    }
    #pragma GCC unroll 4
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
            qmm_store(a->y, (size_t)(m0 + r) * a->N + n + j, _mm512_reduce_add_ps(yacc[j][r]),
                      a->y_dtype);
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

/* What a pass of NN weight rows over their runs (64 bytes each, E
 * elements) needs, in both mat-vec loops: the rows' starts, how many
 * groups start in a run and which lanes each covers, the last run's mask. */
typedef struct mv_pass {
    const uint8_t *wrow[4];
    int runs, per_run, full_runs;
    __m512i lane_group;
    __mmask64 tail_mask;
} mv_pass;

V512_INLINE mv_pass mv_pass_start(const gm_qmm_ctx *c, int n, const int NN, const int BITS, const int GS) {
    const int E = BITS == 4 ? 128 : 64, row_bytes = c->a->K * BITS / 8;
    mv_pass p;
    #pragma GCC unroll 4
    for (int j = 0; j < NN; j++) p.wrow[j] = (const uint8_t *)(c->a->w + (size_t)(n + j) * c->wrow);
    p.runs = (c->a->K + E - 1) / E;
    p.per_run = E >= GS ? E / GS : 1;
    p.full_runs = row_bytes / 64;
    p.lane_group = _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     __builtin_ctz(16 / p.per_run));
    p.tail_mask = (((__mmask64)1 << (row_bytes % 64)) - 1);
    qmm_prefetch_group_rows(c->a->biases, (size_t)c->groups, qmm_sb_size(c->a), n, NN);
    return p;
}

/* Run q's 64 bytes of weight row j (masked past the row's end) and the
 * scales of the groups in it, spread over the lanes. */
V512_INLINE __m512i mv_pass_run(const gm_qmm_ctx *c, const mv_pass *p, int n, int j, int q, const int BITS,
                                const int GS, __m512 *scales) {
    const int E = BITS == 4 ? 128 : 64, g0 = q * E / GS;
    const int ng = c->groups - g0 < p->per_run ? c->groups - g0 : p->per_run;
    const size_t sb = qmm_sb_size(c->a);
    _mm_prefetch((const char *)c->a->scales + ((size_t)(n + j) * c->groups + g0) * sb + QMM_PREFETCH_SCALES,
                 _MM_HINT_T0);
    *scales = run_scales(c, n + j, g0, ng, p->per_run, p->lane_group);
    return _mm512_maskz_loadu_epi8(q < p->full_runs ? ~(__mmask64)0 : p->tail_mask, p->wrow[j] + (size_t)q * 64);
}

/* NN weight rows from n against x rows m0..m0+MR-1, T terms of x. A run
 * is 64 bytes: E = 128 (4-bit) or 64 (8-bit) elements, lane i of a dot
 * product covering E/16 consecutive ones, so a run holds E/GS groups (or
 * part of one) and the scales are spread over the lanes to match. */
V512_INLINE void mv_rows(const gm_qmm_ctx *c, int n, int m0, __m512i lo_tab, __m512i hi_tab,
                         const int NN, const int MR, const int BITS, const int GS, const int T) {
    const mv_pass ps = mv_pass_start(c, n, NN, BITS, GS);
    __m512 yacc[2][MV_ROWS];
    #pragma GCC unroll 8
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) yacc[j][r] = _mm512_setzero_ps();
    const size_t xstride = c->xb_stride;
    const uint16_t *xb = c->xb + (size_t)m0 * xstride;

    for (int q = 0; q < ps.runs; q++) {
        __m512 d[2][MV_ROWS][2];
        __m512 sc[2];
        #pragma GCC unroll 4
        for (int j = 0; j < NN; j++) {
            if (T == 1)
                _mm_prefetch((const char *)ps.wrow[j] + (size_t)q * 64 + QMM_PREFETCH_L2, _MM_HINT_T1);
            else
                _mm_prefetch((const char *)ps.wrow[j] + (size_t)q * 64 + QMM_PREFETCH_L1, _MM_HINT_T0);
            __m512i w = mv_pass_run(c, &ps, n, j, q, BITS, GS, &sc[j]);
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
                            xr + (size_t)t * ps.runs * (BITS == 4 ? 128 : 64) + stream * 32);
                        d[j][r][s & 1] = _mm512_dpbf16_ps(d[j][r][s & 1], p[s], xv);
                    }
            }
        }
        #pragma GCC unroll 4
        for (int j = 0; j < NN; j++)
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++)
                yacc[j][r] = _mm512_fmadd_ps(_mm512_add_ps(d[j][r][0], d[j][r][1]), sc[j], yacc[j][r]);
    }
    add_biases_and_store(c, n, m0, yacc, NN, MR);
}

/* mv_rows for float32 x as 8-bit digits (qmm_impl.h, xd): vpdpbusd
 * multiplies 64 unsigned bytes by 64 signed ones, so a run costs two
 * instructions a digit (4-bit: low nibbles, high nibbles) where the
 * bfloat16 path spends four products per term plus the table lookups, and
 * 8-bit weights need no unpacking. Nibbles fit either side: the weights
 * take the unsigned side against the signed top digit and the signed side
 * against the unsigned low ones. 8-bit weights only fit the unsigned side,
 * so against the low digits they go as w - 128 (signed) and 128 * sum(d)
 * comes back per lane from xd. The int32 sums are exact: per run a lane
 * adds 8 products (4 for 8-bit) a digit, combined 4-bit as
 * ((s2 << 8) + s1) << 8) + s0, below 8*15*(128*65536 + 255*257) < 2^31;
 * 8-bit as (s2 << 8) + s1 (below 2^26) and s0 added in float32. Each
 * lane's sum is then scaled back by its power of two. */
V512_INLINE void mv_rows_i8(const gm_qmm_ctx *c, int n, int m0, const int NN, const int MR,
                            const int BITS, const int GS) {
    const int E = BITS == 4 ? 128 : 64;
    const mv_pass ps = mv_pass_start(c, n, NN, BITS, GS);
    const int runs = ps.runs;
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    __m512 yacc[4][MV_ROWS];
    #pragma GCC unroll 8
    for (int j = 0; j < NN; j++)
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) yacc[j][r] = _mm512_setzero_ps();
    const int8_t *xd = c->xd + (size_t)m0 * c->xd_stride;
    const float *xscale = c->xd_scale + (size_t)m0 * runs * 16;

    for (int q = 0; q < runs; q++) {
        __m512i wv[4][2];
        __m512 sc[4];
        #pragma GCC unroll 4
        for (int j = 0; j < NN; j++) {
            _mm_prefetch((const char *)ps.wrow[j] + (size_t)q * 64 + QMM_PREFETCH_L2, _MM_HINT_T1);
            __m512i w = mv_pass_run(c, &ps, n, j, q, BITS, GS, &sc[j]);
            if (BITS == 4) {
                wv[j][0] = _mm512_and_si512(w, nibble);
                wv[j][1] = _mm512_and_si512(_mm512_srli_epi16(w, 4), nibble);
            } else {
                wv[j][0] = w;
            }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const int8_t *xr = xd + (size_t)r * c->xd_stride + (size_t)q * QMM_XD_RUN(E, BITS);
            __m512i xv[3][2];
            #pragma GCC unroll 3
            for (int t = 0; t < 3; t++) {
                xv[t][0] = _mm512_loadu_si512(xr + t * E);
                if (BITS == 4) xv[t][1] = _mm512_loadu_si512(xr + t * E + 64);
            }
            const __m512 rs = _mm512_loadu_ps(xscale + ((size_t)r * runs + q) * 16);
            #pragma GCC unroll 4
            for (int j = 0; j < NN; j++) {
                __m512 f;
                if (BITS == 4) {
                    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[j][0], xv[2][0]);
                    s = _mm512_dpbusd_epi32(s, wv[j][1], xv[2][1]);
                    s = _mm512_slli_epi32(s, 8);
                    s = _mm512_dpbusd_epi32(s, xv[1][0], wv[j][0]);
                    s = _mm512_dpbusd_epi32(s, xv[1][1], wv[j][1]);
                    s = _mm512_slli_epi32(s, 8);
                    s = _mm512_dpbusd_epi32(s, xv[0][0], wv[j][0]);
                    s = _mm512_dpbusd_epi32(s, xv[0][1], wv[j][1]);
                    f = _mm512_cvtepi32_ps(s);
                } else {
                    const __m512i w_signed = _mm512_xor_si512(wv[j][0], _mm512_set1_epi8((char)0x80));
                    __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[j][0], xv[2][0]);
                    hi = _mm512_slli_epi32(hi, 8);
                    hi = _mm512_dpbusd_epi32(hi, xv[1][0], w_signed);
                    hi = _mm512_add_epi32(hi, _mm512_loadu_si512(xr + 3 * E));
                    __m512i lo = _mm512_dpbusd_epi32(_mm512_loadu_si512(xr + 3 * E + 64), xv[0][0], w_signed);
                    f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_set1_ps(256.0f),
                                        _mm512_cvtepi32_ps(lo));
                }
                yacc[j][r] = _mm512_fmadd_ps(f, _mm512_mul_ps(sc[j], rs), yacc[j][r]);
            }
        }
    }
    add_biases_and_store(c, n, m0, yacc, NN, MR);
}

/* NN weight rows against x rows m0..m0+MR-1: T bfloat16 terms of x, or
 * with T = 0 its 8-bit digits. */
V512_INLINE void mv_pick(const gm_qmm_ctx *c, int n, int m0, __m512i lo, __m512i hi, const int NN,
                         const int MR, const int BITS, const int GS, const int T) {
    if (T == 0)
        mv_rows_i8(c, n, m0, NN, MR, BITS, GS);
    else
        mv_rows(c, n, m0, lo, hi, NN, MR, BITS, GS, T);
}

/* Pairs of weight rows while x has at most 2 rows, single rows with up to
 * MV_ROWS x rows otherwise (as the float kernel). One row of x as digits
 * goes four weight rows a pass: the digits loop is bound by its
 * instructions, and four rows share each run's x loads (a decode step's
 * mat-vecs +14-23%, twelfth session); bfloat16 x, bound by memory, gained
 * nothing from four. */
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
    if (M == 1 && T == 0)
        for (; n + 4 <= n1; n += 4) mv_rows_i8(c, n, 0, 4, 1, BITS, GS);
    if (M <= 2) {
        for (; n + 2 <= n1; n += 2) {
            if (M == 1)
                mv_pick(c, n, 0, lo, hi, 2, 1, BITS, GS, T);
            else
                mv_pick(c, n, 0, lo, hi, 2, 2, BITS, GS, T);
        }
    }
    for (; n < n1; n++) {
        for (int m0 = 0; m0 < M; m0 += MV_ROWS) {
            switch (M - m0 < MV_ROWS ? M - m0 : MV_ROWS) {
            case 1: mv_pick(c, n, m0, lo, hi, 1, 1, BITS, GS, T); break;
            case 2: mv_pick(c, n, m0, lo, hi, 1, 2, BITS, GS, T); break;
            case 3: mv_pick(c, n, m0, lo, hi, 1, 3, BITS, GS, T); break;
            default: mv_pick(c, n, m0, lo, hi, 1, 4, BITS, GS, T); break;
            }
        }
    }
}

#define MV_VARIANT(B, S, T)                                                     \
    V512_FN static void mv_##B##_##S##_##T(const gm_qmm_ctx *c, int n0, int n1) { \
        mv_body(c, n0, n1, B, S, T);                                            \
    }
#define MV_VARIANTS(B, T) MV_VARIANT(B, 32, T) MV_VARIANT(B, 64, T) MV_VARIANT(B, 128, T)
MV_VARIANTS(4, 0)
MV_VARIANTS(4, 1)
MV_VARIANTS(4, 2)
MV_VARIANTS(4, 3)
MV_VARIANTS(8, 0)
MV_VARIANTS(8, 1)
MV_VARIANTS(8, 2)
MV_VARIANTS(8, 3)

typedef void (*mv_fn)(const gm_qmm_ctx *, int, int);
#define MV_ROW(B, T) {mv_##B##_32_##T, mv_##B##_64_##T, mv_##B##_128_##T}
/* [8-bit][terms of x, 0: digits][group size] */
static const mv_fn mv_table[2][4][3] = {
    {MV_ROW(4, 0), MV_ROW(4, 1), MV_ROW(4, 2), MV_ROW(4, 3)},
    {MV_ROW(8, 0), MV_ROW(8, 1), MV_ROW(8, 2), MV_ROW(8, 3)},
};

static void mv(const gm_qmm_ctx *c, int n0, int n1) {
    if (!c->xb && !c->xd) { /* widths without a bfloat16 or digit layout */
        gm_qmm_avx2.matvec(c, n0, n1);
        return;
    }
    int gs = c->a->group_size;
    int T = c->xd ? 0 : c->xterms;
    mv_table[c->a->bits == 8][T][gs == 32 ? 0 : gs == 64 ? 1 : 2](c, n0, n1);
}

/* x_digits (qmm_impl.h, xd) for this kernel, 16 elements a vector (two
 * lanes of a 4-bit run, four of an 8-bit one): each lane's largest
 * magnitude from the bits of |x| (integer order is float order for them),
 * each element times its lane's power of two (exact) rounded to an integer
 * below 2^23 in magnitude, then its bytes: two unsigned low ones and the
 * signed top one. A lane below 2^-100 is scaled as if at 2^-100 (steps of
 * 2^-123), unless all of x is. 4-bit runs get each vector's even elements'
 * digits first, the odd ones' 64 bytes on; 8-bit runs the sums of their
 * low digits over each lane's 4 bytes, times 128. */
V512_FN static int x_digits(const float *x, int runs, int bits, int8_t *dst, float *lane_scale) {
    const int E = bits == 4 ? 128 : 64, V = E / 16, per = 16 / V; /* lanes a vector */
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i top = _mm512_set1_epi32((1 << 23) - 1), byte = _mm512_set1_epi32(0xff);
    const __m512i lowest = _mm512_set1_epi32(-100), none = _mm512_setzero_si512();
    const __m128i deal = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    __m512i row_max = _mm512_setzero_si512();
    for (int q = 0; q < runs; q++) {
        const float *v = x + (size_t)q * E;
        int8_t *d = dst + (size_t)q * QMM_XD_RUN(E, bits);
        for (int i = 0; i < V; i++) {
            const __m512 xv = _mm512_loadu_ps(v + 16 * i);
            /* the largest magnitude of each group of 16/per elements, in all of them */
            __m512i m = _mm512_and_si512(_mm512_castps_si512(xv), magnitude);
            m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_CDAB));
            m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_BADC));
            if (bits == 4) m = _mm512_max_epu32(m, _mm512_shuffle_i32x4(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
            if (_mm512_cmpge_epu32_mask(m, inf)) return -1; /* inf or nan */
            row_max = _mm512_max_epu32(row_max, m);
            /* magnitudes below 2^e: e = biased exponent - 126, at least -100 */
            const __m512i e = _mm512_max_epi32(_mm512_sub_epi32(_mm512_srli_epi32(m, 23), _mm512_set1_epi32(126)),
                                               lowest);
            const __m512 up = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(150), e), 23));
            const __m512i back = _mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(104)), 23);
            /* one power of two a lane: elements 0 and 8 (4-bit) or 0, 4, 8, 12 */
            const __m512i pick = _mm512_setr_epi32(0, 8, 0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
            const __m512i lanes = _mm512_permutexvar_epi32(
                bits == 4 ? pick : _mm512_alignr_epi32(none, pick, 2), back);
            _mm_mask_storeu_epi32(lane_scale + (size_t)q * 16 + per * i, (__mmask8)((1 << per) - 1),
                                  _mm512_castsi512_si128(lanes));
            /* |x| * 2^(23-e) < 2^23, but may round up to it: clamped */
            __m512i X = _mm512_min_epi32(
                _mm512_cvt_roundps_epi32(_mm512_mul_ps(xv, up), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                top);
            const __m128i b[3] = {_mm512_cvtepi32_epi8(_mm512_and_si512(X, byte)),
                                  _mm512_cvtepi32_epi8(_mm512_and_si512(_mm512_srli_epi32(X, 8), byte)),
                                  _mm512_cvtepi32_epi8(_mm512_srai_epi32(X, 16))};
            for (int t = 0; t < 3; t++) {
                if (bits == 4) {
                    __m128i h = _mm_shuffle_epi8(b[t], deal);
                    _mm_storel_epi64((__m128i *)(d + t * E + 8 * i), h);
                    _mm_storel_epi64((__m128i *)(d + t * E + 64 + 8 * i), _mm_unpackhi_epi64(h, h));
                } else {
                    _mm_storeu_si128((__m128i *)(d + t * E + 16 * i), b[t]);
                }
            }
        }
        if (bits == 8) {
            /* 128 * (d1 and d0 summed over each lane's 4 bytes): ones as signed bytes */
            const __m512i ones = _mm512_set1_epi8(1);
            for (int t = 1; t >= 0; t--) {
                __m512i sum = _mm512_dpbusd_epi32(none, _mm512_loadu_si512(d + t * E), ones);
                _mm512_storeu_si512(d + 3 * E + (1 - t) * 64, _mm512_slli_epi32(sum, 7));
            }
        }
    }
    const uint32_t m = _mm512_reduce_max_epu32(row_max);
    return m && (int)(m >> 23) - 126 < -100 ? -1 : 0;
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

static int tiled(const gm_qmm_ctx *c) { return gm_qmm_tiled_bf16(c, &gm_qmm_avx512); }

const gm_qmm_backend gm_qmm_avx512 = {"avx512", mv, dequant, micro, store, 1, x_digits, tiled};

#endif
