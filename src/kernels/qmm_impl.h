/* qmm_impl.h - what the quantized matmul driver (qmm.c) shares with its
 * per-instruction-set backends (qmm_scalar.c, qmm_avx2.c, qmm_neon.c). */
#ifndef GM_QMM_IMPL_H
#define GM_QMM_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/half.h"
#include "kernels/half_rows.h"
#include "kernels/qmm.h"

/* Tiled kernel geometry: a micro-tile is QMM_NR weight rows times one
 * x panel of QMM_MP rows (the last panel may be QMM_MP/2 wide). K is cut
 * into blocks of QMM_KC, a multiple of every group size. */
#define QMM_NR 6
#define QMM_MP 16
#define QMM_KC 256

/* 4-bit weights: each run of 16 values (8 bytes) is processed as the 8
 * low nibbles, then the 8 high ones, i.e. positions 0,2,..,14,1,3,..,15.
 * x is permuted the same way once per call, so no backend ever shuffles
 * weights. 8-bit weights keep their natural order. */
static inline int qmm_perm4(int p) {
    int base = p & ~15, r = p & 15;
    return base + (r < 8 ? 2 * r : 2 * (r - 8) + 1);
}

/* QMM_MV4: the matrix-vector kernels save the shift that isolates the
 * high nibble. With byte b = lo + 16*hi, lo*xe + hi*xo equals
 * lo*(xe - xo/16) + b*(xo/16), so they convert (b & 15) and b itself and
 * multiply them by x rearranged that way (once per call, in qmm.c). Both
 * products stay the size of the true ones (b/16 <= 16), so nothing
 * cancels; measured ~7% faster on Zen 4. The tiled path dequantizes
 * lo and hi as they are. */

/* Any width: MLX packs a row as one little-endian bit stream, element k
 * at bits [k*bits, (k+1)*bits). For bits <= 8 an element spans at most
 * two bytes; the second is read only when needed (never past the row). */
static inline uint32_t qmm_qbits(const uint8_t *row, int k, int bits) {
    int bit = k * bits, byte = bit >> 3, shift = bit & 7;
    uint32_t v = row[byte];
    if (shift + bits > 8) v |= (uint32_t)row[byte + 1] << 8;
    return (v >> shift) & ((1u << bits) - 1);
}

/* Scales and biases are streams of their own beside the weights: a few
 * bytes of scales a run of weights, a row's biases all at the end of its
 * pass. Left to the hardware prefetcher they missed to DRAM and stalled
 * the mat-vec loop; prefetched (scales this many bytes ahead, a pass's
 * bias rows when it starts), a decode step's mat-vecs went from 18-23 to
 * 28-35 GB/s on SmolLM2 and Qwen2.5-0.5B shapes (Zen 4, two threads,
 * bench_qmm --step; 128 to 512 bytes measured alike). */
#define QMM_PREFETCH_SCALES 256

/* Bytes of one scale or bias. */
static inline size_t qmm_sb_size(const gm_qmm_args *a) { return a->sb_dtype == GM_F32 ? 4 : 2; }

/* Prefetches rows n..n+nn-1 of a per-group array (scales or biases). */
static inline void qmm_prefetch_group_rows(const void *p, size_t groups, size_t elem, int n, int nn) {
    const char *row = (const char *)p + (size_t)n * groups * elem;
    for (size_t o = 0; o < (size_t)nn * groups * elem; o += 64) __builtin_prefetch(row + o, 0, 3);
}

typedef struct gm_qmm_ctx {
    const gm_qmm_args *a;
    int groups;     /* K / group_size */
    size_t wrow;    /* uint32 words per weight row */
    /* matrix-vector path */
    const float *xp;   /* [M][K] float32, in the 4-bit order and QMM_MV4 form */
    const float *xsum; /* [M][xsum_stride]: sum of x over each group, zero-padded */
    int xsum_stride;   /* groups rounded up to 16, so 16 can always be loaded */
    int mv_rows;       /* weight rows per task */
    /* matrix-vector path of a backend with bf16_x, 4- and 8-bit weights:
     * x split into xterms bfloat16 terms (see qmm_avx512.c), per x row
     * xb_stride words: term t, run q (64 weight bytes), stream s, word j
     * at t*runs*E + q*E + s*32 + j holds element q*E + S*j + s (E = 128,
     * S = 4 for 4-bit; E = 64, S = 2 for 8-bit); zero past K. NULL
     * otherwise, and xp is filled instead. */
    const uint16_t *xb;
    int xterms;
    size_t xb_stride;
    /* matrix-vector path of a backend with x_digits, float32 x that needs
     * three bfloat16 terms: x as 24-bit integers X in three base-256 digits
     * X = d0 + 256 d1 + 65536 d2 (d0, d1 unsigned, d2 signed). A run of E
     * elements is 16 lanes of E/16 consecutive ones (the lanes of the
     * kernel's sums); each lane is scaled by the power of two that puts its
     * largest magnitude just below 2^23. Per run QMM_XD_RUN(E, bits) bytes,
     * per x row xd_stride: digit t, half h, byte b at t*E + h*64 + b holds
     * element 2b + h of the run (4-bit: the low nibbles' elements, then the
     * high ones') or b (8-bit, h = 0); 8-bit runs then hold 128 * (sum of
     * d1) and 128 * (sum of d0) over each lane's 4 bytes as two vectors of
     * 16 int32 (qmm_avx512.c). xd_scale + (m * runs + q) * 16 holds run q's
     * 16 lanes' powers of two. NULL otherwise. */
    const int8_t *xd;
    const float *xd_scale;
    size_t xd_stride;
    /* tiled path */
    const float *xpack; /* x panels: panel p at p*K*QMM_MP, laid [K][width] */
    int npanels;
    int nc;             /* weight rows per task (multiple of QMM_NR) */
    int mpad;           /* M rounded up to the panel width */
    float *scratch;     /* per worker: wtile [nc][QMM_KC] then acc [nc][mpad] */
    size_t scratch_floats;
} gm_qmm_ctx;

typedef struct gm_qmm_backend {
    const char *name;
    /* y rows [n0, n1) for every row of x. */
    void (*matvec)(const gm_qmm_ctx *c, int n0, int n1);
    /* Dequantizes weight rows [n0, n0+nr) over k in [k0, k0+kc) into
     * dst[nr][kc] (float32, 4-bit in permuted order). */
    void (*dequant)(const gm_qmm_ctx *c, int n0, int nr, int k0, int kc, float *dst);
    /* acc[i][j] (+)= sum_k wt[i][k] * xp[k][j] for i < nr, j < width;
     * wt rows are ldw apart, acc rows ldc apart; first: overwrite. */
    void (*micro)(const float *wt, int ldw, const float *xp, int width, int kc, float *acc,
                  int ldc, int nr, int first);
    /* Writes acc[i][m] (rows ldc = mpad apart) to y[m][n0 + i] for i < nrows,
     * m < M, in y's dtype; NULL: the driver's scalar loop. */
    void (*store)(const gm_qmm_ctx *c, const float *acc, int n0, int nrows);
    int bf16_x; /* its matvec reads xb for 4- and 8-bit weights */
    /* Writes one row of float32 x (zero-padded to whole runs of E) as xd's
     * digits and run scales, for a matvec that reads xd (float32 x, 4- and
     * 8-bit weights); -1 when x cannot be (a value not finite, or all of
     * them below 2^-100 in magnitude): then it gets bfloat16 terms. NULL
     * for backends without such a matvec. */
    int (*x_digits)(const float *x, int runs, int bits, int8_t *dst, float *lane_scale);
    /* The whole tiled product where the backend has a path of its own for
     * it: 0, -1 out of memory, -2 when it does not take this one (then the
     * dequantizing path above runs). NULL: none. */
    int (*tiled)(const gm_qmm_ctx *c);
} gm_qmm_backend;

/* Bytes of one run of x as digits (above). */
#define QMM_XD_RUN(E, bits) (3 * (E) + ((bits) == 8 ? 128 : 0))

/* The backend gm_qmm uses now (GOMLX_QMM_ISA, gm_qmm_set_isa or the best
 * the CPU has); the attention kernel borrows its micro-kernel. */
const gm_qmm_backend *gm_qmm_backend_in_use(void);

extern const gm_qmm_backend gm_qmm_scalar;
#if defined(__x86_64__)
extern const gm_qmm_backend gm_qmm_avx2;
extern const gm_qmm_backend gm_qmm_avx512;
/* The AVX-512 backend's tiled hook: bfloat16 or float16 x and 4- or 8-bit
 * weights (qmm_tiled_bf16.c), its results stored through store_be's store. */
int gm_qmm_tiled_bf16(const gm_qmm_ctx *c, const gm_qmm_backend *store_be);
#endif
#if defined(__aarch64__)
extern const gm_qmm_backend gm_qmm_neon;
#endif

static inline float qmm_load(const void *p, size_t i, gm_fdtype t) {
    switch (t) {
    case GM_F16: return gm_f16_to_f32(((const uint16_t *)p)[i]);
    case GM_BF16: return gm_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void qmm_store(void *p, size_t i, float v, gm_fdtype t) {
    switch (t) {
    case GM_F16: ((uint16_t *)p)[i] = gm_f32_to_f16(v); break;
    case GM_BF16: ((uint16_t *)p)[i] = gm_f32_to_bf16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* n elements from p[off] as float32 into dst, the dtype looked at once. */
static inline void qmm_load_row(const void *p, size_t off, int n, gm_fdtype t, float *dst) {
    const uint16_t *h = (const uint16_t *)p + off;
    if (t == GM_F16)
        gm_f16_row_to_f32(h, dst, n);
    else if (t == GM_BF16)
        for (int i = 0; i < n; i++) dst[i] = gm_bf16_to_f32(h[i]);
    else
        memcpy(dst, (const float *)p + off, (size_t)n * sizeof(float));
}

/* n float32 values into p[off] in dtype t, the dtype looked at once. */
static inline void qmm_store_row(void *p, size_t off, int n, const float *src, gm_fdtype t) {
    uint16_t *h = (uint16_t *)p + off;
    if (t == GM_F16)
        gm_f32_row_to_f16(src, h, n);
    else if (t == GM_BF16)
        for (int i = 0; i < n; i++) h[i] = gm_f32_to_bf16(src[i]);
    else
        memcpy((float *)p + off, src, (size_t)n * sizeof(float));
}

#endif
