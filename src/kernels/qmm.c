/* qmm.c - the quantized matmul driver: checks arguments, prepares x once
 * per call, cuts the output rows into tasks for the thread pool and hands
 * each task to the instruction-set backend picked at run time. */
#include "kernels/qmm.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/pool.h"
#include "kernels/qmm_impl.h"

/* Largest M the matrix-vector path accepts (its per-row state is on the
 * stack); the default switch-over point comes from bench_qmm. */
#define QMM_MV_LIMIT 16
#define QMM_MV_DEFAULT 6

static _Atomic(const gm_qmm_backend *) g_backend;
static _Atomic int g_mv_max = -1;

#if defined(__x86_64__)
static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int has_avx512_bf16(void) {
    return has_avx2() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
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

static const gm_qmm_backend *backend(void) {
    const gm_qmm_backend *b = atomic_load_explicit(&g_backend, memory_order_acquire);
    if (b) return b;
    b = backend_named(getenv("GOMLX_QMM_ISA"));
    if (!b) b = best_backend();
    atomic_store(&g_backend, b);
    return b;
}

const char *gm_qmm_isa(void) { return backend()->name; }

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
    int threads, per_thread; /* blocks are dealt out in this many runs */
} mv_job;

/* Task t reads block (t % threads) * per_thread + t / threads: threads
 * taking tasks in turn each walk their own contiguous stretch of the
 * weights, which memory streams far better (36 vs 21 GB/s with 2 threads
 * on Zen 4) than neighbouring blocks read by different threads; any
 * thread may still take any task, so a stalled one holds up little. */
static void mv_task(void *ctx, int task, int worker) {
    (void)worker;
    const mv_job *j = ctx;
    int block = (task % j->threads) * j->per_thread + task / j->threads;
    int n0 = block * j->c.mv_rows;
    if (n0 >= j->c.a->N) return;
    int n1 = n0 + j->c.mv_rows;
    if (n1 > j->c.a->N) n1 = j->c.a->N;
    j->be->matvec(&j->c, n0, n1);
}

/* Splits x into bfloat16 terms that sum to it exactly (see qmm_avx512.c):
 * each term keeps the top 8 significant bits of what is left (truncation,
 * so the rest is exact in float32 and nothing overflows). */
static void split_x_bf16(const gm_qmm_ctx *c, uint16_t *xb) {
    const gm_qmm_args *a = c->a;
    int K = a->K, T = c->xterms;
    int E = a->bits == 4 ? 128 : 64, S = a->bits == 4 ? 4 : 2;
    int runs = (K + E - 1) / E;
    for (int m = 0; m < a->M; m++) {
        uint16_t *dst = xb + (size_t)m * c->xb_stride;
        for (int q = 0; q < runs; q++)
            for (int st = 0; st < S; st++)
                for (int j = 0; j < 32; j++) {
                    int k = q * E + S * j + st;
                    float v = k < K ? qmm_load(a->x, (size_t)m * K + k, a->x_dtype) : 0.0f;
                    for (int t = 0; t < T; t++) {
                        uint32_t hi = gm_f32_bits(v) & 0xffff0000u;
                        dst[(size_t)t * runs * E + (size_t)q * E + st * 32 + j] =
                            (uint16_t)(hi >> 16);
                        v -= gm_bits_f32(hi);
                    }
                }
    }
}

/* bfloat16 terms whose sum is every element of x exactly: 1 to 3. x
 * often holds values already rounded to bfloat16 in a float32 buffer (the
 * fused decoder layer rounds like MLX's bfloat16 graph), and then one
 * term is exact and three times cheaper. */
static int x_terms_needed(const gm_qmm_args *a) {
    if (a->x_dtype == GM_BF16) return 1;
    size_t n = (size_t)a->M * a->K;
    uint32_t low = 0, lower = 0; /* bits left after one and after two terms */
    for (size_t i = 0; i < n; i++) {
        float v = qmm_load(a->x, i, a->x_dtype);
        uint32_t u = gm_f32_bits(v);
        float r = v - gm_bits_f32(u & 0xffff0000u);
        low |= u & 0xffffu;
        lower |= gm_f32_bits(r) & 0xffffu;
    }
    return !low ? 1 : !lower ? 2 : 3;
}

static int run_matvec(gm_qmm_ctx *c, const gm_qmm_backend *be) {
    const gm_qmm_args *a = c->a;
    int M = a->M, K = a->K, G = c->groups, gs = a->group_size;
    int Gp = (G + 15) & ~15;
    int bf16 = be->bf16_x && (a->bits == 4 || a->bits == 8);
    int E = a->bits == 4 ? 128 : 64;
    if (bf16) {
        c->xterms = x_terms_needed(a);
        c->xb_stride = (size_t)c->xterms * ((K + E - 1) / E) * E;
    }
    size_t xp_floats = bf16 ? 0 : (size_t)M * K;
    size_t xb_floats = bf16 ? ((size_t)M * c->xb_stride + 1) / 2 : 0;
    float *buf = calloc(xp_floats + xb_floats + (size_t)M * Gp, sizeof(float));
    if (!buf) return -1;
    float *xp = buf, *xsum = buf + xp_floats + xb_floats;
    for (int m = 0; m < M; m++) {
        size_t row = (size_t)m * K;
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
            for (int i = 0; i < gs; i++) s += qmm_load(a->x, row + (size_t)g * gs + i, a->x_dtype);
            xsum[(size_t)m * Gp + g] = s;
        }
        if (bf16) continue;
        if (a->bits == 4) {
            /* See QMM_MV4 in qmm_impl.h: the low slot of each pair gets
             * x_even - x_odd/16, the high slot x_odd/16 (exact scaling). */
            for (int p = 0; p < K; p += 16)
                for (int i = 0; i < 8; i++) {
                    float xe = qmm_load(a->x, row + p + 2 * i, a->x_dtype);
                    float xo = qmm_load(a->x, row + p + 2 * i + 1, a->x_dtype);
                    xp[row + p + i] = xe - xo * 0.0625f;
                    xp[row + p + 8 + i] = xo * 0.0625f;
                }
        } else {
            for (int p = 0; p < K; p++) xp[row + p] = qmm_load(a->x, row + p, a->x_dtype);
        }
    }
    if (bf16) {
        split_x_bf16(c, (uint16_t *)(buf + xp_floats));
        c->xb = (const uint16_t *)(buf + xp_floats);
        xp = NULL;
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

    int runs = threads < ntasks ? threads : ntasks;
    mv_job job = {*c, be, runs, (ntasks + runs - 1) / runs};
    gm_pool_run(mv_task, &job, runs * job.per_thread, threads);
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
    const gm_qmm_backend *be = backend();
    if (a->M <= gm_qmm_mv_max()) return run_matvec(&c, be);
    return run_tiled(&c, be);
}
