/* test_qmm.c - our CPU quantized matmul: (a) the C kernels against a plain
 * dequantize-then-dot reference for every bits/group/dtype/path/ISA and
 * thread count; (b) the MLX-plugged op against MLX's own quantized_matmul
 * through the shim (GOMLX_CPU_KERNELS on vs off). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pool_jobs.h"
#include "kernels/half.h"
#include "kernels/half_rows.h"
#include "kernels/pool.h"
#include "kernels/qmm.h"
#include "mlx/mx.h"

/* ---- small deterministic RNG ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(void) { return (float)(rng_u32() & 0xffffff) / 16777216.0f; }
static float rng_normal(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += rng_uniform();
    return (s - 2.0f) * 1.7320508f;
}

static size_t dsize(gm_fdtype t) { return t == GM_F32 ? 4 : 2; }

/* Rounds v to dtype t and stores it; returns the rounded value. */
static float put(void *p, size_t i, float v, gm_fdtype t) {
    switch (t) {
    case GM_F16: ((uint16_t *)p)[i] = gm_f32_to_f16(v); return gm_f16_to_f32(((uint16_t *)p)[i]);
    case GM_BF16: ((uint16_t *)p)[i] = gm_f32_to_bf16(v); return gm_bf16_to_f32(((uint16_t *)p)[i]);
    default: ((float *)p)[i] = v; return v;
    }
}
static float get(const void *p, size_t i, gm_fdtype t) {
    switch (t) {
    case GM_F16: return gm_f16_to_f32(((const uint16_t *)p)[i]);
    case GM_BF16: return gm_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* ---- (a) kernels against the reference ---- */

typedef struct problem {
    int M, N, K, bits, gs;
    gm_fdtype xt, st, yt;
    /* float32 x: 0 any, 1 bfloat16 values, 2 16 significant bits, 3 wide
     * range, 4 row m as mode m % 4, 5 all below 2^-100, 6 the first 128
     * zero, then one value of 2^100 among ordinary ones */
    int xmode;
    void *x, *scales, *biases, *y;
    uint32_t *w;
    double *ref, *absref; /* reference product and sum of |x*w| per output */
} problem;

static void problem_make(problem *p) {
    int M = p->M, N = p->N, K = p->K, G = K / p->gs;
    size_t words = (size_t)N * K * p->bits / 32;
    p->x = malloc((size_t)M * K * dsize(p->xt));
    p->w = malloc(words * 4);
    p->scales = malloc((size_t)N * G * dsize(p->st));
    p->biases = malloc((size_t)N * G * dsize(p->st));
    p->y = malloc((size_t)M * N * dsize(p->yt));
    p->ref = malloc((size_t)M * N * sizeof(double));
    p->absref = malloc((size_t)M * N * sizeof(double));
    float *xf = malloc((size_t)M * K * sizeof(float));
    float *wf = malloc((size_t)N * K * sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) {
        float v = rng_normal();
        int mode = p->xmode == 4 ? (int)(i / (size_t)K) % 4 : p->xmode;
        uint32_t u;
        memcpy(&u, &v, 4);
        if (mode == 1) u &= 0xffff0000u;
        if (mode == 2) u &= 0xffffff00u;
        memcpy(&v, &u, 4);
        if (mode == 3) v = ldexpf(v, (int)(rng_u32() % 201) - 100);
        if (mode == 5) v = ldexpf(v, -110);
        if (mode == 6) v = i % K < 128 ? 0.0f : i % K == 200 ? 0x1p100f : v;
        xf[i] = put(p->x, i, v, p->xt);
    }
    for (size_t i = 0; i < words; i++) p->w[i] = rng_u32();
    int qmax = (1 << p->bits) - 1;
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            /* like MLX's quantize: scale spans a row's range, bias ~ its minimum */
            float s = put(p->scales, (size_t)n * G + g, (0.5f + rng_uniform()) * 0.1f / qmax, p->st);
            float b = put(p->biases, (size_t)n * G + g, -(0.5f + rng_uniform()) * 0.05f, p->st);
            for (int k = g * p->gs; k < (g + 1) * p->gs; k++) {
                /* the row is one little-endian bit stream of 32-bit words */
                const uint32_t *row = p->w + (size_t)n * K * p->bits / 32;
                size_t bit = (size_t)k * p->bits;
                uint64_t two = row[bit / 32];
                if (bit % 32 + p->bits > 32) two |= (uint64_t)row[bit / 32 + 1] << 32;
                uint32_t q = (uint32_t)(two >> (bit % 32)) & (uint32_t)qmax;
                wf[(size_t)n * K + k] = s * (float)q + b;
            }
        }
    }
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0, sa = 0;
            for (int k = 0; k < K; k++) {
                double t = (double)xf[(size_t)m * K + k] * wf[(size_t)n * K + k];
                s += t;
                sa += t < 0 ? -t : t;
            }
            p->ref[(size_t)m * N + n] = s;
            p->absref[(size_t)m * N + n] = sa;
        }
    free(xf);
    free(wf);
}

static void problem_free(problem *p) {
    free(p->x);
    free(p->w);
    free(p->scales);
    free(p->biases);
    free(p->y);
    free(p->ref);
    free(p->absref);
}

/* Tolerance: float32 summation error, bounded generously by 2e-5 times the
 * sum of |x*w| (typical error is ~sqrt(K)*6e-8 of it), plus one rounding
 * of the output to its dtype (2^-10 relative for f16, 2^-7 for bf16). */
static int problem_check(const problem *p, const char *what) {
    double out_eps = p->yt == GM_F32 ? 0 : p->yt == GM_F16 ? 1.0 / 1024 : 1.0 / 128;
    int bad = 0;
    for (size_t i = 0; i < (size_t)p->M * p->N; i++) {
        double y = get(p->y, i, p->yt), r = p->ref[i];
        double tol = 2e-5 * p->absref[i] + out_eps * (r < 0 ? -r : r) + 1e-30;
        if (!(y - r <= tol && r - y <= tol)) {
            if (bad < 3)
                fprintf(stderr, "  %s: M=%d N=%d K=%d bits=%d gs=%d dt=%d/%d/%d at %zu: %g vs %g\n",
                        what, p->M, p->N, p->K, p->bits, p->gs, p->xt, p->st, p->yt, i, y, r);
            bad++;
        }
    }
    return bad;
}

static const char *isas[] = {"scalar", "avx2", "avx512", "neon"};

static void run_grid(int threads) {
    static const int Ms[] = {1, 2, 3, 7, 33, 130};
    static const int Ns[] = {1, 13, 67, 200};
    static const int bitss[] = {4, 8, 6, 3, 5, 2};
    static const int gss[] = {32, 64, 128};
    static const gm_fdtype dts[] = {GM_F32, GM_F16, GM_BF16};
    gm_pool_set_threads(threads);
    int shape = 0;
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        if (gm_qmm_set_isa(isas[ii]) != 0) continue;
        for (int bi = 0; bi < 6; bi++)
            for (int gi = 0; gi < 3; gi++)
                for (int di = 0; di < 3; di++)
                    for (int mi = 0; mi < 6; mi++) {
                        problem p = {0};
                        p.M = Ms[mi];
                        p.N = Ns[shape % 4];
                        /* K spans one group up to several K blocks of the tiled path */
                        int kg[] = {1, 3, 640 / gss[gi], 1152 / gss[gi]};
                        p.K = gss[gi] * kg[(shape / 4) % 4];
                        shape++;
                        p.bits = bitss[bi];
                        p.gs = gss[gi];
                        p.xt = p.st = p.yt = dts[di];
                        if (mi == 4) p.yt = GM_F32; /* mixed: f32 out of f16/bf16 */
                        if (mi == 5) p.st = dts[(di + 1) % 3];
                        problem_make(&p);
                        gm_qmm_args a = {p.x, p.w, p.scales, p.biases, p.y, p.M, p.N, p.K,
                                         p.bits, p.gs, p.xt, p.st, p.yt};
                        /* mv_max 16: the matrix-vector kernel takes M <= 16;
                         * 0: the tiled one takes everything. */
                        int mvs[] = {16, 0};
                        for (int v = 0; v < 2; v++) {
                            gm_qmm_set_mv_max(mvs[v]);
                            memset(p.y, 0xff, (size_t)p.M * p.N * dsize(p.yt));
                            CHECK_EQ_INT(gm_qmm(&a), 0);
                            char what[64];
                            snprintf(what, sizeof what, "%s/%s/t%d", isas[ii], v ? "tiled" : "mv",
                                     threads);
                            CHECK_EQ_INT(problem_check(&p, what), 0);
                        }
                        problem_free(&p);
                    }
    }
    gm_qmm_set_mv_max(-1);
    gm_qmm_set_isa(NULL);
}

static void test_kernels_1_thread(void) { run_grid(1); }
static void test_kernels_n_threads(void) {
    int n = gm_pool_threads();
    run_grid(n < 3 ? 3 : n); /* more threads than cores still has to be right */
}

static void test_bigger_shape(void) {
    /* Several tasks per thread and K blocks on both paths. */
    gm_pool_set_threads(0);
    problem p = {0};
    p.M = 37, p.N = 1000, p.K = 1536, p.bits = 4, p.gs = 64;
    p.xt = p.st = p.yt = GM_BF16;
    problem_make(&p);
    gm_qmm_args a = {p.x, p.w, p.scales, p.biases, p.y, p.M, p.N, p.K,
                     p.bits, p.gs, p.xt, p.st, p.yt};
    CHECK_EQ_INT(gm_qmm(&a), 0);
    CHECK_EQ_INT(problem_check(&p, "big tiled"), 0);
    a.M = 3;
    CHECK_EQ_INT(gm_qmm(&a), 0);
    problem q = p;
    q.M = 3;
    CHECK_EQ_INT(problem_check(&q, "big mv"), 0);
    problem_free(&p);
}

/* Long rows through the mat-vec's pairs of rows (x of 1 or 2 rows): 4-bit
 * rows of 1040 bytes with 65 groups, each row's scales and biases
 * prefetched past its end, an odd row count, float32 x (digits on avx512)
 * and bfloat16 x, every ISA. */
static void test_long_rows(void) {
    gm_pool_set_threads(0);
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        if (gm_qmm_set_isa(isas[ii]) != 0) continue;
        for (int M = 1; M <= 2; M++)
            for (int d = 0; d < 2; d++) {
                problem p = {0};
                p.M = M, p.N = 75, p.K = 2080, p.bits = 4, p.gs = 32;
                p.xt = p.st = p.yt = d ? GM_BF16 : GM_F32;
                problem_make(&p);
                gm_qmm_args a = {p.x, p.w, p.scales, p.biases, p.y, p.M, p.N, p.K,
                                 p.bits, p.gs, p.xt, p.st, p.yt};
                CHECK_EQ_INT(gm_qmm(&a), 0);
                CHECK_EQ_INT(problem_check(&p, isas[ii]), 0);
                problem_free(&p);
            }
    }
    gm_qmm_set_isa(NULL);
}

/* float32 x that needs one, two or three bfloat16 terms (the avx512
 * mat-vec splits x into the fewest that are exact, or takes three-term x
 * as 8-bit digits), magnitudes from 2^-110 to 2^100, zero runs, and rows
 * of each kind in one call; with the digits on and off. Where avx512 is
 * there, the digits must have been taken (modes 0, 3 and 6) and refused
 * (mode 5: below their range). */
static void test_x_terms(void) {
    gm_pool_set_threads(0);
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        if (gm_qmm_set_isa(isas[ii]) != 0) continue;
        for (int digits = 0; digits < 2; digits++) {
            gm_qmm_set_x_digits(digits);
            for (int mode = 0; mode < 7; mode++)
                for (int bits = 4; bits <= 8; bits += 4)
                    for (int M = 1; M <= 4; M += 3) {
                        problem p = {0};
                        p.M = M, p.N = 37, p.K = 320, p.bits = bits, p.gs = 64;
                        p.xt = p.st = p.yt = GM_F32;
                        p.xmode = mode;
                        problem_make(&p);
                        gm_qmm_args a = {p.x, p.w, p.scales, p.biases, p.y, p.M, p.N, p.K,
                                         p.bits, p.gs, p.xt, p.st, p.yt};
                        long before = gm_qmm_digit_calls();
                        CHECK_EQ_INT(gm_qmm(&a), 0);
                        long took = gm_qmm_digit_calls() - before;
                        char what[64];
                        snprintf(what, sizeof what, "%s/x-mode-%d/digits-%d", isas[ii], mode, digits);
                        CHECK_EQ_INT(problem_check(&p, what), 0);
                        /* modes 1 and 2 need fewer terms; 5 is below the digits' range */
                        long want = digits && !strcmp(isas[ii], "avx512") && mode != 1 && mode != 2 &&
                                    mode != 5;
                        CHECK_MSG(took == want, "%s: digits taken %ld times, want %ld", what, took, want);
                        problem_free(&p);
                    }
        }
    }
    gm_qmm_set_x_digits(-1);
    gm_qmm_set_isa(NULL);
}

/* A value that is not finite in x: the product is not finite either, with
 * the digits on (they refuse such x) and off. */
static void test_x_not_finite(void) {
    gm_pool_set_threads(0);
    for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
        if (gm_qmm_set_isa(isas[ii]) != 0) continue;
        for (int digits = 0; digits < 2; digits++) {
            gm_qmm_set_x_digits(digits);
            problem p = {0};
            p.M = 1, p.N = 9, p.K = 256, p.bits = 4, p.gs = 64;
            p.xt = p.st = p.yt = GM_F32;
            problem_make(&p);
            for (int k = 0; k < 3; k++) {
                ((float *)p.x)[77] = k == 0 ? INFINITY : k == 1 ? -INFINITY : NAN;
                gm_qmm_args a = {p.x, p.w, p.scales, p.biases, p.y, p.M, p.N, p.K,
                                 p.bits, p.gs, p.xt, p.st, p.yt};
                CHECK_EQ_INT(gm_qmm(&a), 0);
                int finite = 0;
                for (int n = 0; n < p.N; n++) finite += isfinite(((float *)p.y)[n]) != 0;
                CHECK_MSG(finite == 0, "%s digits %d x[77]=%g: %d finite outputs", isas[ii], digits,
                          ((float *)p.x)[77], finite);
            }
            problem_free(&p);
        }
    }
    gm_qmm_set_x_digits(-1);
    gm_qmm_set_isa(NULL);
}

static void test_rejects(void) {
    CHECK(!gm_qmm_supported(7, 64, 128));
    CHECK(gm_qmm_supported(6, 64, 128));
    CHECK(!gm_qmm_supported(4, 16, 128));
    CHECK(!gm_qmm_supported(4, 64, 96));
    CHECK(gm_qmm_supported(8, 128, 256));
    gm_qmm_args a = {0};
    CHECK_EQ_INT(gm_qmm(&a), -1);
    CHECK_EQ_INT(gm_qmm(NULL), -1);
    CHECK_EQ_INT(gm_qmm_set_isa("no-such-isa"), -1);
}

static void test_half_conversions(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = gm_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? f == f : gm_f32_to_f16(f) != h) bad++;
        float g = gm_bf16_to_f32((uint16_t)h);
        int bnan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (bnan ? g == g : gm_f32_to_bf16(g) != h) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* ties go to even; overflow to inf; the subnormal grid */
    CHECK_EQ_INT(gm_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);
    CHECK_EQ_INT(gm_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    CHECK_EQ_INT(gm_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(gm_f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(gm_f32_to_f16(0x1p-25f), 0x0000);
    CHECK_EQ_INT(gm_f32_to_f16(0x1.8p-25f), 0x0001);
    CHECK_EQ_INT(gm_f32_to_f16(-0x1p-24f), 0x8001);
    CHECK_EQ_INT(gm_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
    CHECK_EQ_INT(gm_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
}

/* The row converters (F16C where the CPU has it) give half.h's values:
 * every float16 to float32, and to float16 every float32 at and beside
 * each rounding boundary (the midpoints between neighbouring halves, one
 * float32 step either side), plus overflow, infinities and NaN. Rows of
 * odd lengths, so the vector loop and the scalar tail both run. */
static void test_half_rows(void) {
    enum { N = 0x10000 };
    uint16_t *h = malloc(N * sizeof *h), *back = malloc(3 * N * sizeof *back);
    float *f = malloc(3 * N * sizeof *f);
    CHECK(h && back && f);
    for (uint32_t i = 0; i < N; i++) h[i] = (uint16_t)i;
    int bad = 0;
    gm_f16_row_to_f32(h, f, N - 3);
    for (uint32_t i = 0; i < N - 3; i++) {
        float want = gm_f16_to_f32(h[i]);
        if (want == want ? gm_f32_bits(f[i]) != gm_f32_bits(want) : f[i] == f[i]) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* Boundary sweep: for each finite half, the midpoint to the next one up. */
    int n = 0;
    for (uint32_t i = 0; i < N; i++) {
        if ((i & 0x7c00) == 0x7c00) continue;
        float lo = gm_f16_to_f32((uint16_t)i);
        /* past the largest half: where the next would be, 2^16 */
        float hi = (i & 0x7fff) == 0x7bff ? copysignf(65536.0f, lo) : gm_f16_to_f32((uint16_t)(i + 1));
        float mid = lo + (hi - lo) / 2;
        f[n++] = nextafterf(mid, -INFINITY);
        f[n++] = mid;
        f[n++] = nextafterf(mid, INFINITY);
    }
    static const float edges[] = {65519.0f, 65520.0f, 1e9f, -1e9f, INFINITY, -INFINITY, 0x1p-30f, -0.0f, NAN};
    for (size_t e = 0; e < sizeof edges / sizeof *edges && n < 3 * N; e++) f[n++] = edges[e];
    gm_f32_row_to_f16(f, back, n);
    bad = 0;
    for (int i = 0; i < n; i++) {
        uint16_t want = gm_f32_to_f16(f[i]);
        int nan = (want & 0x7c00) == 0x7c00 && (want & 0x3ff);
        int got_nan = (back[i] & 0x7c00) == 0x7c00 && (back[i] & 0x3ff);
        if (nan ? !got_nan : back[i] != want) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    free(h);
    free(back);
    free(f);
}

/* Many tiny calls from two threads at once: one gets the pool, the other
 * must run alone, and both must be right. */
#include <pthread.h>
typedef struct race_arg {
    problem *p;
    int bad;
} race_arg;
static void *race_main(void *arg) {
    race_arg *r = arg;
    problem p = *r->p;
    p.y = malloc((size_t)p.M * p.N * dsize(p.yt));
    gm_qmm_args a = {p.x, p.w, p.scales, p.biases, p.y, p.M, p.N, p.K,
                     p.bits, p.gs, p.xt, p.st, p.yt};
    for (int i = 0; i < 200; i++)
        if (gm_qmm(&a) != 0 || problem_check(&p, "race")) r->bad++;
    free(p.y);
    return NULL;
}
static void test_concurrent_callers(void) {
    gm_pool_set_threads(3);
    problem p = {0};
    p.M = 1, p.N = 300, p.K = 512, p.bits = 4, p.gs = 32;
    p.xt = p.st = p.yt = GM_F32;
    problem_make(&p);
    race_arg r1 = {&p, 0}, r2 = {&p, 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, race_main, &r1);
    pthread_create(&t2, NULL, race_main, &r2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_EQ_INT(r1.bad + r2.bad, 0);
    problem_free(&p);
    gm_pool_set_threads(0);
}

/* Back-to-back jobs of very different sizes: every task must run exactly
 * once, and all of them before gm_pool_run returns (a worker that wakes
 * late must never take a task of the next job under the old one's count). */
static void test_pool_stress(void) {
    gm_pool_set_threads(3);
    int bad = 0;
    for (int i = 0; i < 20000 && bad < 5; i++) /* 1..5 threads asked for, 3 in the pool */
        bad += run_count_job(i % 2 ? 3 : 40 + i % 24, i % 7 == 0, 1 + i % 5);
    CHECK_EQ_INT(bad, 0);
    gm_pool_set_threads(0);
}

/* ---- (b) the MLX-plugged op against MLX's own ---- */

static mx_dtype to_mx(gm_fdtype t) {
    return t == GM_F16 ? MX_FLOAT16 : t == GM_BF16 ? MX_BFLOAT16 : MX_FLOAT32;
}

typedef struct mlx_errs {
    double exact; /* max |ours - exact| / max |exact| */
    double mlx;   /* max |ours - MLX's op| / max |exact| */
} mlx_errs;

/* x layouts: 0 [batch, M, K]; 1 a transposed (non-contiguous) [M, K] view;
 * 2 a 1-D x (M must be 1). */
static mlx_errs mlx_compare(int M, int N, int K, int bits, int gs, gm_fdtype dt, int layout) {
    mx_scope *scope = mx_scope_open();
    mlx_errs e = {-1, -1};
    int batch = layout == 0 ? 2 : 1;
    size_t MT = (size_t)batch * M;
    float *wd = malloc((size_t)N * K * sizeof(float));
    float *xd = malloc(MT * K * sizeof(float));
    float *o1 = malloc(MT * N * sizeof(float));
    float *o2 = malloc(MT * N * sizeof(float));
    uint32_t *wqd = malloc((size_t)N * K * bits / 8);
    float *sd = malloc((size_t)N * (K / gs) * sizeof(float));
    float *bd = malloc((size_t)N * (K / gs) * sizeof(float));
    for (size_t i = 0; i < (size_t)N * K; i++) wd[i] = rng_normal() * 0.05f;
    for (size_t i = 0; i < MT * K; i++) xd[i] = rng_normal();
    int wshape[2] = {N, K};
    int xshape[3] = {batch, M, K};
    int tshape[2] = {K, M};
    mx_array w = mx_astype(mx_from_data(wd, wshape, 2, MX_FLOAT32), to_mx(dt));
    mx_array x;
    if (layout == 1) {
        int perm[2] = {1, 0};
        x = mx_transpose(mx_astype(mx_from_data(xd, tshape, 2, MX_FLOAT32), to_mx(dt)), perm, 2);
    } else {
        x = mx_astype(mx_from_data(xd, layout == 2 ? xshape + 2 : xshape, layout == 2 ? 1 : 3,
                                   MX_FLOAT32),
                      to_mx(dt));
    }
    mx_array wq = NULL, sc = NULL, bi = NULL;
    if (!w || !x || mx_quantize(w, gs, bits, &wq, &sc, &bi) != 0) {
        fprintf(stderr, "  mlx setup: %s\n", mx_error());
        goto out;
    }
    size_t bytes = MT * N * sizeof(float);
    mx_set_cpu_kernels(1);
    mx_array y1 = mx_quantized_matmul(x, wq, sc, bi, 1, gs, bits);
    mx_set_cpu_kernels(0);
    mx_array y2 = mx_quantized_matmul(x, wq, sc, bi, 1, gs, bits);
    mx_set_cpu_kernels(1);
    if (!y1 || !y2 || mx_get_dtype(y1) != mx_get_dtype(y2) || mx_ndim(y1) != mx_ndim(y2) ||
        mx_dim(y1, -1) != N || mx_read(y1, MX_FLOAT32, o1, bytes) != 0 ||
        mx_read(y2, MX_FLOAT32, o2, bytes) != 0 ||
        mx_read(x, MX_FLOAT32, xd, MT * K * sizeof(float)) != 0 ||
        mx_read(wq, MX_UINT32, wqd, (size_t)N * K * bits / 8) != 0 ||
        mx_read(sc, MX_FLOAT32, sd, (size_t)N * (K / gs) * sizeof(float)) != 0 ||
        mx_read(bi, MX_FLOAT32, bd, (size_t)N * (K / gs) * sizeof(float)) != 0) {
        fprintf(stderr, "  mlx run: %s\n", mx_error());
        goto out;
    }
    /* The exact product of the quantized weights, in double. */
    double maxref = 0, dex = 0, dml = 0;
    int G = K / gs;
    for (size_t m = 0; m < MT; m++)
        for (int n = 0; n < N; n++) {
            double r = 0;
            const uint32_t *row = wqd + (size_t)n * K * bits / 32;
            for (int k = 0; k < K; k++) {
                size_t bit = (size_t)k * bits;
                uint64_t two = row[bit / 32];
                if (bit % 32 + bits > 32) two |= (uint64_t)row[bit / 32 + 1] << 32;
                uint32_t q = (uint32_t)(two >> (bit % 32)) & ((1u << bits) - 1);
                double wv = (double)sd[(size_t)n * G + k / gs] * q + bd[(size_t)n * G + k / gs];
                r += wv * xd[m * K + k];
            }
            double a = o1[m * N + n] - r, b = o1[m * N + n] - o2[m * N + n];
            if (fabs(r) > maxref) maxref = fabs(r);
            if (!(fabs(a) <= dex)) dex = fabs(a);
            if (!(fabs(b) <= dml)) dml = fabs(b);
        }
    e.exact = dex / maxref;
    e.mlx = dml / maxref;
out:
    free(wd);
    free(xd);
    free(o1);
    free(o2);
    free(wqd);
    free(sd);
    free(bd);
    mx_scope_close(scope);
    return e;
}

/* Tolerances, as a fraction of the output's largest magnitude:
 * - ours vs the exact product: float32 sums only (1e-5) plus, for fp16 and
 *   bf16 outputs, one rounding to the output dtype (1e-3 and 8e-3);
 * - ours vs MLX's own op: 1e-5 in float32, where both sum in float32. For
 *   fp16/bf16 MLX's CPU kernel accumulates in the low precision (measured
 *   ~0.5% and ~5-9% of the max against the exact product), so there the
 *   bound is only a sanity check of the same product: 3e-2 and 2e-1. */
static void test_mlx_plugged(void) {
    if (mx_set_device(0) != 0) {
        fprintf(stderr, "  no cpu device: %s\n", mx_error());
        CHECK(0);
        return;
    }
    static const int shapes[][4] = {
        {1, 576, 768, 2}, {3, 192, 512, 0}, {33, 200, 384, 1}, {130, 67, 1536, 0}, {4, 96, 256, 1}};
    static const gm_fdtype dts[] = {GM_F32, GM_F16, GM_BF16};
    static const double tol_exact[] = {1e-5, 1e-3, 8e-3};
    static const double tol_mlx[] = {1e-5, 3e-2, 2e-1};
    double worst_exact[3] = {0}, worst_mlx[3] = {0};
    for (int s = 0; s < 5; s++)
        for (int bi = 0; bi < 6; bi++)
            for (int gs = 32; gs <= 128; gs *= 2)
                for (int d = 0; d < 3; d++) {
                    static const int bitss[] = {4, 8, 6, 3, 5, 2};
                    int bits = bitss[bi];
                    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    mlx_errs e = mlx_compare(M, N, K, bits, gs, dts[d], shapes[s][3]);
                    CHECK_MSG(e.exact >= 0 && e.exact <= tol_exact[d] && e.mlx <= tol_mlx[d],
                              "M=%d N=%d K=%d bits=%d gs=%d dtype=%d layout=%d: err %g vs exact, "
                              "%g vs MLX",
                              M, N, K, bits, gs, d, shapes[s][3], e.exact, e.mlx);
                    if (e.exact > worst_exact[d]) worst_exact[d] = e.exact;
                    if (e.mlx > worst_mlx[d]) worst_mlx[d] = e.mlx;
                }
    fprintf(stderr, "  worst err (of max |y|) vs exact f32/f16/bf16: %.2g %.2g %.2g; "
            "vs MLX's op: %.2g %.2g %.2g\n", worst_exact[0], worst_exact[1], worst_exact[2],
            worst_mlx[0], worst_mlx[1], worst_mlx[2]);
}

int main(void) {
    RUN(test_half_conversions);
    RUN(test_half_rows);
    RUN(test_rejects);
    RUN(test_kernels_1_thread);
    RUN(test_kernels_n_threads);
    RUN(test_bigger_shape);
    RUN(test_long_rows);
    RUN(test_x_terms);
    RUN(test_x_not_finite);
    RUN(test_concurrent_callers);
    RUN(test_pool_stress);
    RUN(test_mlx_plugged);
    return check_summary();
}
