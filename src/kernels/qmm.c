/* qmm.c - the quantized matmul driver: checks arguments, prepares x once
 * per call, cuts the output rows into tasks for the thread pool and hands
 * each task to the instruction-set backend picked at run time. */
#include "kernels/qmm.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/pool.h"
#include "kernels/qmm_impl.h"
#include "util/env.h"

/* Largest M the matrix-vector path accepts (its per-row state is on the
 * stack); the default switch-over point comes from bench_qmm. */
#define QMM_MV_LIMIT 16
#define QMM_MV_DEFAULT 6

static _Atomic(const gm_qmm_backend *) g_backend;
static _Atomic int g_mv_max = -1;
static _Atomic int g_x_digits = -1;
static _Atomic long g_digit_calls;

#if defined(__x86_64__)
static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int has_avx512_bf16(void) {
    return has_avx2() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni");
}
#endif

static const gm_qmm_backend *best_backend(void) {
#if defined(__x86_64__)
    if (has_avx512_bf16()) return &gm_qmm_avx512;
    if (has_avx2()) return &gm_qmm_avx2;
#elif defined(__aarch64__)
    return &gm_qmm_neon;
#endif
    return &gm_qmm_scalar;
}

static const gm_qmm_backend *backend_named(const char *name) {
    if (!name || !*name) return best_backend();
    if (!strcmp(name, "scalar")) return &gm_qmm_scalar;
#if defined(__x86_64__)
    if (!strcmp(name, "avx2") && has_avx2()) return &gm_qmm_avx2;
    if (!strcmp(name, "avx512") && has_avx512_bf16()) return &gm_qmm_avx512;
#elif defined(__aarch64__)
    if (!strcmp(name, "neon")) return &gm_qmm_neon;
#endif
    return NULL;
}

const gm_qmm_backend *gm_qmm_backend_in_use(void) {
    const gm_qmm_backend *b = atomic_load_explicit(&g_backend, memory_order_acquire);
    if (b) return b;
    b = backend_named(getenv("GOMLX_QMM_ISA"));
    if (!b) b = best_backend();
    atomic_store(&g_backend, b);
    return b;
}

const char *gm_qmm_isa(void) { return gm_qmm_backend_in_use()->name; }

int gm_qmm_set_isa(const char *name) {
    const gm_qmm_backend *b = backend_named(name);
    if (!b) return -1;
    atomic_store(&g_backend, b);
    return 0;
}

int gm_qmm_mv_max(void) {
    int m = atomic_load(&g_mv_max);
    if (m >= 0) return m;
    m = QMM_MV_DEFAULT;
    const char *s = getenv("GOMLX_QMM_MV_MAX");
    if (s && *s) m = atoi(s);
    if (m < 0) m = 0;
    if (m > QMM_MV_LIMIT) m = QMM_MV_LIMIT;
    atomic_store(&g_mv_max, m);
    return m;
}

void gm_qmm_set_mv_max(int m) {
    if (m > QMM_MV_LIMIT) m = QMM_MV_LIMIT;
    atomic_store(&g_mv_max, m < 0 ? -1 : m);
}

int gm_qmm_x_digits(void) {
    int on = atomic_load(&g_x_digits);
    if (on >= 0) return on;
    const char *s = getenv("GOMLX_QMM_X_DIGITS");
    on = !(s && !strcmp(s, "0"));
    atomic_store(&g_x_digits, on);
    return on;
}

void gm_qmm_set_x_digits(int on) { atomic_store(&g_x_digits, on < 0 ? -1 : !!on); }

long gm_qmm_digit_calls(void) { return atomic_load(&g_digit_calls); }

/* GOMLX_QMM_TILED_BF16=0: a backend's own tiled path (AVX-512's for
 * bfloat16 and float16 x) gives way to the dequantizing one (A/B). */
static int backend_tiled_enabled(void) {
    static int on = -1;
    if (on < 0) on = !gm_env_off("GOMLX_QMM_TILED_BF16");
    return on;
}

int gm_qmm_supported(int bits, int group_size, int K) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8) return 0;
    if (group_size != 32 && group_size != 64 && group_size != 128) return 0;
    return K > 0 && K % group_size == 0;
}

static int is_fdtype(gm_fdtype t) { return t == GM_F32 || t == GM_F16 || t == GM_BF16; }

/* ---- matrix-vector path ---- */

typedef struct mv_job {
    gm_qmm_ctx c;
    const gm_qmm_backend *be;
    int per_thread; /* tasks a thread's range holds (gm_pool_run's split) */
} mv_job;

/* The first MV_LEAD bytes of a thread's stretch of weight rows (from n0)
 * asked for at once: the loops prefetch 4-8 KB ahead of where they read,
 * so a stretch's first KBs would otherwise arrive one miss at a time while
 * the hardware prefetcher warms up, at every call. (The same for the
 * scales and biases, 256 bytes ahead, measured no different.) */
#define MV_LEAD 8192
static void prefetch_stretch(const gm_qmm_ctx *c, int n0, int rows) {
    if (n0 + rows > c->a->N) rows = c->a->N - n0;
    size_t bytes = (size_t)rows * c->wrow * 4;
    if (bytes > MV_LEAD) bytes = MV_LEAD;
    const char *w = (const char *)(c->a->w + (size_t)n0 * c->wrow);
    for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch(w + b, 0, 2);
}

/* Task t reads block t: the pool gives each thread a contiguous range of
 * tasks (per_thread of them), so each walks its own contiguous stretch of
 * the weights, which memory streams far better (36 vs 21 GB/s with 2
 * threads on Zen 4) than neighbouring blocks read by different threads;
 * a thread done early takes what is left of another's. */
static void mv_task(void *ctx, int task, int worker) {
    (void)worker;
    const mv_job *j = ctx;
    int n0 = task * j->c.mv_rows;
    int n1 = n0 + j->c.mv_rows;
    if (n1 > j->c.a->N) n1 = j->c.a->N;
    if (task % j->per_thread == 0) prefetch_stretch(&j->c, n0, j->per_thread * j->c.mv_rows);
    j->be->matvec(&j->c, n0, n1);
}

/* x row by row as float32 into xf (rows `width` apart, the padding left
 * as it is). */
static void x_to_f32(const gm_qmm_args *a, float *xf, size_t width) {
    for (int m = 0; m < a->M; m++)
        qmm_load_row(a->x, (size_t)m * a->K, a->K, a->x_dtype, xf + (size_t)m * width);
}

/* Sum of x over each group, in 8 interleaved partial sums (vectorizable). */
static void group_sums(const float *x, int G, int gs, float *dst) {
    for (int g = 0; g < G; g++) {
        float p[8] = {0};
        for (int i = 0; i < gs; i += 8)
            for (int l = 0; l < 8; l++) p[l] += x[(size_t)g * gs + i + l];
        dst[g] = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    }
}

/* bfloat16 terms whose sum is every element of x exactly: 1 to 3. x
 * often holds values already rounded to bfloat16 in a float32 buffer (the
 * fused decoder layer rounds like MLX's bfloat16 graph), and then one
 * term is exact and three times cheaper. */
static int x_terms_needed(const float *x, size_t n) {
    uint32_t low = 0, lower = 0; /* bits left after one and after two terms */
    for (size_t i = 0; i < n; i++) {
        uint32_t u = gm_f32_bits(x[i]);
        float r = x[i] - gm_bits_f32(u & 0xffff0000u);
        low |= u & 0xffffu;
        lower |= gm_f32_bits(r) & 0xffffu;
    }
    return !low ? 1 : !lower ? 2 : 3;
}

/* Splits one row of x (float32, zero-padded to whole runs) into T
 * bfloat16 terms that sum to it exactly, in the layout of qmm_impl.h's
 * xb: each term keeps the top 8 significant bits of what is left
 * (truncation, so the rest is exact in float32 and nothing overflows). */
static inline void split_row_bf16(const float *x, int runs, int E, int S, const int T,
                                  uint16_t *dst) {
    for (int q = 0; q < runs; q++)
        for (int st = 0; st < S; st++)
            for (int j = 0; j < 32; j++) {
                float v = x[q * E + S * j + st];
                size_t at = (size_t)q * E + (size_t)st * 32 + (size_t)j;
                for (int t = 0; t < T; t++) {
                    uint32_t hi = gm_f32_bits(v) & 0xffff0000u;
                    dst[(size_t)t * runs * E + at] = (uint16_t)(hi >> 16);
                    v -= gm_bits_f32(hi);
                }
            }
}

/* Every row of x (float32, rows `width` apart) as the backend's 8-bit
 * digits into xd and lane_scale (qmm_impl.h); c->xd stays NULL when a row
 * cannot be (then x gets bfloat16 terms). */
static void take_digits(gm_qmm_ctx *c, const gm_qmm_backend *be, const float *xf, size_t width,
                        int runs, int8_t *xd, float *lane_scale) {
    const gm_qmm_args *a = c->a;
    int E = a->bits == 4 ? 128 : 64;
    c->xd_stride = (size_t)runs * QMM_XD_RUN(E, a->bits);
    for (int m = 0; m < a->M; m++)
        if (be->x_digits(xf + (size_t)m * width, runs, a->bits, xd + (size_t)m * c->xd_stride,
                         lane_scale + (size_t)m * runs * 16))
            return;
    c->xd = xd;
    c->xd_scale = lane_scale;
    atomic_fetch_add_explicit(&g_digit_calls, 1, memory_order_relaxed);
}

static int run_matvec(gm_qmm_ctx *c, const gm_qmm_backend *be) {
    const gm_qmm_args *a = c->a;
    int M = a->M, K = a->K, G = c->groups, gs = a->group_size;
    int Gp = (G + 15) & ~15;
    int bf16 = be->bf16_x && (a->bits == 4 || a->bits == 8);
    int E = a->bits == 4 ? 128 : 64, S = a->bits == 4 ? 4 : 2;
    int runs = (K + E - 1) / E;
    size_t width = bf16 ? (size_t)runs * E : (size_t)K; /* a row of xf */
    /* The bfloat16 layout is sized for three terms before x is looked at;
     * the digits, when they replace three terms, fit in its place (at most
     * 5 bytes an element against 6). */
    size_t xb_words = bf16 ? (size_t)M * 3 * runs * E : 0;
    size_t xf_floats = (size_t)M * width;
    size_t xp_floats = !bf16 && a->bits == 4 ? (size_t)M * K : 0; /* else xp is xf */
    size_t scale_floats = bf16 && be->x_digits ? (size_t)M * runs * 16 : 0;
    float *buf = calloc(xf_floats + xp_floats + (xb_words + 1) / 2 + (size_t)M * Gp + scale_floats,
                        sizeof(float));
    if (!buf) return -1;
    float *xf = buf, *xp = xf + xf_floats;
    uint16_t *xb = (uint16_t *)(xp + xp_floats);
    float *xsum = xp + xp_floats + (xb_words + 1) / 2;
    float *lane_scale = xsum + (size_t)M * Gp;
    x_to_f32(a, xf, width);
    for (int m = 0; m < M; m++) group_sums(xf + (size_t)m * width, G, gs, xsum + (size_t)m * Gp);
    if (bf16) {
        int T = x_terms_needed(xf, xf_floats);
        if (T == 3 && be->x_digits && gm_qmm_x_digits())
            take_digits(c, be, xf, width, runs, (int8_t *)xb, lane_scale);
        c->xterms = T;
        c->xb_stride = (size_t)T * runs * E;
        for (int m = 0; m < M && !c->xd; m++) {
            const float *x = xf + (size_t)m * width;
            uint16_t *dst = xb + (size_t)m * c->xb_stride;
            if (T == 1) split_row_bf16(x, runs, E, S, 1, dst);
            else if (T == 2) split_row_bf16(x, runs, E, S, 2, dst);
            else split_row_bf16(x, runs, E, S, 3, dst);
        }
        if (!c->xd) c->xb = xb;
        xp = NULL;
    } else if (a->bits == 4) {
        /* See QMM_MV4 in qmm_impl.h: the low slot of each pair gets
         * x_even - x_odd/16, the high slot x_odd/16 (exact scaling). */
        for (size_t p = 0; p < (size_t)M * K; p += 16)
            for (int i = 0; i < 8; i++) {
                float xe = xf[p + 2 * i], xo = xf[p + 2 * i + 1];
                xp[p + i] = xe - xo * 0.0625f;
                xp[p + 8 + i] = xo * 0.0625f;
            }
    } else {
        xp = xf;
    }
    c->xp = xp;
    c->xsum = xsum;
    c->xsum_stride = Gp;

    /* Tasks of ~32 KB of weights: enough of them that a thread stalled by
     * a busy machine holds up little, none so small that taking one costs
     * more than reading it; below ~24 KB in all, threads do not pay. */
    size_t sb = a->sb_dtype == GM_F32 ? 4 : 2;
    size_t row_bytes = (size_t)K * a->bits / 8 + 2 * sb * G;
    size_t total = row_bytes * a->N;
    int threads = gm_pool_threads();
    int ntasks = 1;
    if (threads > 1 && total >= 24 * 1024) {
        size_t n = total / (32 * 1024);
        size_t small = total / (12 * 1024); /* small matrices: a few tasks per thread */
        size_t want = (size_t)threads * 4 < small ? (size_t)threads * 4 : small;
        if (n < want) n = want;
        if (n < (size_t)threads) n = (size_t)threads;
        if (n > 4096) n = 4096;
        ntasks = (int)n;
    }
    int rows = (a->N + ntasks - 1) / ntasks;
    rows = (rows + 3) & ~3;
    c->mv_rows = rows;
    ntasks = (a->N + rows - 1) / rows;

    int parts = threads < ntasks ? threads : ntasks;
    mv_job job = {*c, be, (ntasks + parts - 1) / parts};
    gm_pool_run(mv_task, &job, ntasks, threads);
    free(buf);
    return 0;
}

/* ---- tiled path ---- */

typedef struct tiled_job {
    gm_qmm_ctx c;
    const gm_qmm_backend *be;
    float *xpack;
} tiled_job;

static int panel_width(const gm_qmm_ctx *c, int p) {
    int rem = c->a->M - p * QMM_MP;
    return rem >= QMM_MP ? QMM_MP : rem > QMM_MP / 2 ? QMM_MP : QMM_MP / 2;
}

/* x rows of panel p, transposed to [K][width] in the weights' k order,
 * zero-padded past M. */
static void pack_task(void *ctx, int p, int worker) {
    (void)worker;
    const tiled_job *j = ctx;
    const gm_qmm_args *a = j->c.a;
    int K = a->K, w = panel_width(&j->c, p);
    float *dst = j->xpack + (size_t)p * K * QMM_MP;
    for (int i = 0; i < w; i++) {
        int m = p * QMM_MP + i;
        if (m >= a->M) {
            for (int q = 0; q < K; q++) dst[(size_t)q * w + i] = 0.0f;
            continue;
        }
        size_t row = (size_t)m * K;
        for (int q = 0; q < K; q++) {
            int k = a->bits == 4 ? qmm_perm4(q) : q;
            dst[(size_t)q * w + i] = qmm_load(a->x, row + k, a->x_dtype);
        }
    }
}

static void tiled_task(void *ctx, int task, int worker) {
    const tiled_job *j = ctx;
    const gm_qmm_ctx *c = &j->c;
    const gm_qmm_args *a = c->a;
    int K = a->K, M = a->M;
    int n0 = task * c->nc;
    int nrows = a->N - n0 < c->nc ? a->N - n0 : c->nc;
    float *wt = c->scratch + (size_t)worker * c->scratch_floats;
    float *acc = wt + (size_t)c->nc * QMM_KC;

    for (int k0 = 0; k0 < K; k0 += QMM_KC) {
        int kc = K - k0 < QMM_KC ? K - k0 : QMM_KC;
        j->be->dequant(c, n0, nrows, k0, kc, wt);
        /* One x panel block (kc x 16 floats) stays in L1 while the
         * dequantized weight rows stream past it from L2. */
        for (int p = 0; p < c->npanels; p++) {
            int w = panel_width(c, p);
            const float *xp = c->xpack + (size_t)p * K * QMM_MP + (size_t)k0 * w;
            for (int i0 = 0; i0 < nrows; i0 += QMM_NR) {
                int nr = nrows - i0 < QMM_NR ? nrows - i0 : QMM_NR;
                j->be->micro(wt + (size_t)i0 * kc, kc, xp, w, kc,
                             acc + (size_t)i0 * c->mpad + (size_t)p * QMM_MP, c->mpad, nr,
                             k0 == 0);
            }
        }
    }
    if (j->be->store) {
        j->be->store(c, acc, n0, nrows);
        return;
    }
    for (int m = 0; m < M; m++)
        for (int i = 0; i < nrows; i++)
            qmm_store(a->y, (size_t)m * a->N + n0 + i, acc[(size_t)i * c->mpad + m], a->y_dtype);
}

static int run_tiled(gm_qmm_ctx *c, const gm_qmm_backend *be) {
    const gm_qmm_args *a = c->a;
    int M = a->M, N = a->N, K = a->K;
    int threads = gm_pool_threads();
    c->npanels = (M + QMM_MP - 1) / QMM_MP;
    c->mpad = c->npanels * QMM_MP;

    /* Rows per task: big enough to amortize the x stream each task reads,
     * small enough that every thread gets a few tasks. */
    int nc = 96;
    int want = (N + 2 * threads - 1) / (2 * threads);
    want = (want + QMM_NR - 1) / QMM_NR * QMM_NR;
    if (want < nc) nc = want < QMM_NR ? QMM_NR : want;
    c->nc = nc;
    c->scratch_floats = (size_t)nc * QMM_KC + (size_t)nc * c->mpad;
    c->scratch_floats = (c->scratch_floats + 15) & ~(size_t)15; /* 64-byte aligned slices */

    size_t pack_floats = ((size_t)c->npanels * K * QMM_MP + 15) & ~(size_t)15;
    size_t total = pack_floats + c->scratch_floats * threads;
    float *buf = aligned_alloc(64, total * sizeof(float));
    if (!buf) return -1;
    tiled_job job = {*c, be, buf};
    job.c.xpack = buf;
    job.c.scratch = buf + pack_floats;
    gm_pool_run(pack_task, &job, c->npanels, threads);
    gm_pool_run(tiled_task, &job, (N + nc - 1) / nc, threads);
    free(buf);
    return 0;
}

int gm_qmm(const gm_qmm_args *a) {
    if (!a || !a->x || !a->w || !a->scales || !a->biases || !a->y) return -1;
    if (a->M <= 0 || a->N <= 0 || !gm_qmm_supported(a->bits, a->group_size, a->K)) return -1;
    if (!is_fdtype(a->x_dtype) || !is_fdtype(a->sb_dtype) || !is_fdtype(a->y_dtype)) return -1;
    gm_qmm_ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.groups = a->K / a->group_size;
    c.wrow = (size_t)a->K * a->bits / 32;
    const gm_qmm_backend *be = gm_qmm_backend_in_use();
    if (a->M <= gm_qmm_mv_max()) return run_matvec(&c, be);
    if (be->tiled && backend_tiled_enabled()) {
        int rc = be->tiled(&c);
        if (rc != -2) return rc;
    }
    return run_tiled(&c, be);
}
