/* bench_qmm.c - benchmarks our CPU quantized matmul against MLX's own op on
 * the shapes of SmolLM2-135M and Qwen2.5-0.5B, next to the machine's
 * measured memory read bandwidth (the roofline of a matrix-vector product).
 *
 *   bench_qmm [--json] [--dtype f32|f16|bf16] [--threads N] [--quick]
 *             [--no-mlx] [--step] [--mlx-budget SECONDS] [--m M] [--gs G]
 *
 * "ours" calls the C kernel directly, rotating over enough copies of the
 * weights (> 128 MB) that they stream from DRAM as in a real decode step;
 * "hot" repeats one matrix (cache-resident when small); "ours+mlx" goes through
 * mx_quantized_matmul with our kernels on (graph build + eval included);
 * "mlx" is the same call with them off. After the table (or alone, with
 * --step; text only): one whole decode step's mat-vecs of each model,
 * back to back. GB/s counts the weight bytes read
 * (packed weights + scales + biases) per call. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/half.h"
#include "kernels/pool.h"
#include "kernels/qmm.h"
#include "kernels/read_probe.h"
#include "mlx/mx.h"
#include "util/clock.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
/* 24 random bits: float32 x then needs all three bfloat16 terms of the
 * avx512 mat-vec, as a float32 model's activations do. */
static float rndf(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f - 0.5f) * 2.0f; }

static int cmp_double(const void *a, const void *b);

/* ---- thread pool dispatch latency ---- */

/* Each task waits until every thread of the job holds one, so a job
 * takes as long as waking all workers (10 ms at most, if one never comes). */
typedef struct barrier_job {
    _Atomic int arrived;
    int n;
} barrier_job;

static void barrier_task(void *ctx, int task, int worker) {
    (void)task;
    (void)worker;
    barrier_job *b = ctx;
    atomic_fetch_add(&b->arrived, 1);
    double t0 = gm_now_s();
    while (atomic_load(&b->arrived) < b->n && gm_now_s() - t0 < 0.01) {
    }
}

static double barrier_once(int threads) {
    barrier_job b;
    atomic_init(&b.arrived, 0);
    b.n = threads;
    double t0 = gm_now_s();
    gm_pool_run(barrier_task, &b, threads, threads);
    return gm_now_s() - t0;
}

/* Median and minimum microseconds until every thread has joined a job (a
 * busy machine shows in the median: a preempted worker costs a time
 * slice): back to back
 * (workers still spinning, as between the matmuls of a decode step), and
 * after a pause longer than the spin (workers asleep). */
static void dispatch_latency(int threads, double us[4]) {
    double t[200];
    for (int i = 0; i < 200; i++) t[i] = barrier_once(threads);
    qsort(t, 200, sizeof *t, cmp_double);
    us[0] = t[100] * 1e6;
    us[1] = t[0] * 1e6;
    for (int i = 0; i < 50; i++) {
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
        t[i] = barrier_once(threads);
    }
    qsort(t, 50, sizeof *t, cmp_double);
    us[2] = t[25] * 1e6;
    us[3] = t[0] * 1e6;
}

/* ---- one benchmark case ---- */

typedef struct bcase {
    const char *model, *name;
    int N, K;
} bcase;

static const bcase cases[] = {
    {"SmolLM2-135M", "q/o 576->576", 576, 576},
    {"SmolLM2-135M", "k/v 576->192", 192, 576},
    {"SmolLM2-135M", "gate/up 576->1536", 1536, 576},
    {"SmolLM2-135M", "down 1536->576", 576, 1536},
    {"SmolLM2-135M", "unembed 49152x576", 49152, 576},
    {"Qwen2.5-0.5B", "q/o 896->896", 896, 896},
    {"Qwen2.5-0.5B", "k/v 896->128", 128, 896},
    {"Qwen2.5-0.5B", "gate/up 896->4864", 4864, 896},
    {"Qwen2.5-0.5B", "down 4864->896", 896, 4864},
    {"Qwen2.5-0.5B", "unembed 151936x896", 151936, 896},
};

typedef struct opts {
    int json, quick, no_mlx, threads, step_only;
    int only_m, only_gs; /* 0: all */
    gm_fdtype dt;
    double mlx_budget;
} opts;

static size_t dsz(gm_fdtype t) { return t == GM_F32 ? 4 : 2; }
static mx_dtype mxdt(gm_fdtype t) {
    return t == GM_F16 ? MX_FLOAT16 : t == GM_BF16 ? MX_BFLOAT16 : MX_FLOAT32;
}
static const char *dtname(gm_fdtype t) { return t == GM_F16 ? "f16" : t == GM_BF16 ? "bf16" : "f32"; }

static void fill(void *p, size_t n, gm_fdtype t, float scale, float offset) {
    for (size_t i = 0; i < n; i++) {
        float v = rndf() * scale + offset;
        if (t == GM_F16) ((uint16_t *)p)[i] = gm_f32_to_f16(v);
        else if (t == GM_BF16) ((uint16_t *)p)[i] = gm_f32_to_bf16(v);
        else ((float *)p)[i] = v;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call of fn over at least `min_iters` calls or
 * `min_time` seconds (capped at 200 calls), after one warm-up call. */
typedef int (*call_fn)(void *);
static double time_calls(call_fn fn, void *arg, int min_iters, double min_time) {
    double t[200];
    if (fn(arg) != 0) return -1;
    int n = 0;
    double start = gm_now_s();
    while (n < 200 && (n < min_iters || gm_now_s() - start < min_time)) {
        double t0 = gm_now_s();
        if (fn(arg) != 0) return -1;
        t[n++] = gm_now_s() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

typedef struct run_ctx {
    gm_qmm_args a;
    /* rotation over copies of the weights for cold-cache timing */
    int copies, next;
    const uint32_t *w0;
    const char *s0, *b0;
    size_t wstride, sstride;
    mx_array x, w, s, b;
    int gs;
    int kernels_on;
} run_ctx;

static int call_ours(void *arg) { return gm_qmm(&((run_ctx *)arg)->a); }

static int call_ours_cold(void *arg) {
    run_ctx *r = arg;
    int i = r->next;
    r->next = (r->next + 1) % r->copies;
    r->a.w = r->w0 + (size_t)i * r->wstride;
    r->a.scales = r->s0 + (size_t)i * r->sstride;
    r->a.biases = r->b0 + (size_t)i * r->sstride;
    return gm_qmm(&r->a);
}

static int call_mlx(void *arg) {
    run_ctx *r = arg;
    mx_set_cpu_kernels(r->kernels_on);
    mx_scope *sc = mx_scope_open();
    mx_array y = mx_quantized_matmul(r->x, r->w, r->s, r->b, 1, r->gs, 4);
    int rc = y ? mx_eval(&y, 1) : -1;
    mx_scope_close(sc);
    mx_set_cpu_kernels(1);
    return rc;
}

typedef struct result {
    double ours, hot, ours_mlx, mlx; /* seconds per call; <0: not measured */
    int mlx_from_m;             /* MLX timed at this M and scaled (0: measured as is) */
} result;

static result run_case(const bcase *c, int M, int gs, const opts *o) {
    result res = {-1, -1, -1, -1, 0};
    int N = c->N, K = c->K, G = K / gs;
    gm_fdtype dt = o->dt;
    size_t words = (size_t)N * K / 8;
    run_ctx r;
    memset(&r, 0, sizeof r);
    uint32_t *w = malloc(words * 4);
    void *s = malloc((size_t)N * G * dsz(dt));
    void *b = malloc((size_t)N * G * dsz(dt));
    void *x = malloc((size_t)M * K * dsz(dt));
    void *y = malloc((size_t)M * N * dsz(dt));
    if (!w || !s || !b || !x || !y) goto out;
    for (size_t i = 0; i < words; i++) w[i] = rnd();
    fill(s, (size_t)N * G, dt, 0.002f, 0.006f);
    fill(b, (size_t)N * G, dt, 0.01f, -0.05f);
    fill(x, (size_t)M * K, dt, 1.0f, 0.0f);
    gm_qmm_args a = {x, w, s, b, y, M, N, K, 4, gs, dt, dt, dt};
    r.a = a;
    r.gs = gs;
    int iters = o->quick ? 2 : 5;
    double min_time = o->quick ? 0.05 : (M == 1 ? 0.3 : 0.5);
    res.hot = time_calls(call_ours, &r, iters, min_time);
    res.ours = res.hot;
    if (M == 1) {
        size_t wb = words * 4, sb = (size_t)N * G * dsz(dt);
        int copies = (int)((128u << 20) / (wb + 2 * sb)) + 1;
        if (copies > 4096) copies = 4096;
        char *cw = malloc(wb * copies), *cs = malloc(sb * copies), *cb = malloc(sb * copies);
        if (cw && cs && cb) {
            for (int i = 0; i < copies; i++) {
                memcpy(cw + (size_t)i * wb, w, wb);
                memcpy(cs + (size_t)i * sb, s, sb);
                memcpy(cb + (size_t)i * sb, b, sb);
            }
            r.copies = copies;
            r.w0 = (const uint32_t *)cw;
            r.s0 = cs;
            r.b0 = cb;
            r.wstride = words;
            r.sstride = sb;
            res.ours = time_calls(call_ours_cold, &r, copies < 20 ? 20 : copies, min_time);
            r.a = a;
        }
        free(cw);
        free(cs);
        free(cb);
    }
    if (o->no_mlx) goto out;

    int wshape[2] = {N, K / 8}, sshape[2] = {N, G}, xshape[2] = {M, K};
    r.w = mx_from_data(w, wshape, 2, MX_UINT32);
    r.s = mx_from_data(s, sshape, 2, mxdt(dt));
    r.b = mx_from_data(b, sshape, 2, mxdt(dt));
    r.x = mx_from_data(x, xshape, 2, mxdt(dt));
    if (!r.w || !r.s || !r.b || !r.x || mx_eval(&r.w, 1) || mx_eval(&r.s, 1) ||
        mx_eval(&r.b, 1) || mx_eval(&r.x, 1)) {
        fprintf(stderr, "mlx setup failed: %s\n", mx_error());
        goto out;
    }
    r.kernels_on = 1;
    res.ours_mlx = time_calls(call_mlx, &r, iters, min_time);

    /* MLX's CPU op costs the same per row of x, so a big M is first timed
     * on 8 rows and only run in full when that fits the budget. */
    r.kernels_on = 0;
    if (M == 1) {
        res.mlx = time_calls(call_mlx, &r, iters, min_time);
    } else {
        int m = 8;
        mx_array xs = mx_from_data(x, (int[]){m, K}, 2, mxdt(dt));
        mx_array full = r.x;
        r.x = xs;
        double tm = time_calls(call_mlx, &r, 1, 0);
        r.x = full;
        mx_free(xs);
        if (tm > 0 && tm * M / m * 2 <= o->mlx_budget) {
            res.mlx = time_calls(call_mlx, &r, 1, 0);
        } else if (tm > 0) {
            res.mlx = tm * M / m;
            res.mlx_from_m = m;
        }
    }
out:
    mx_free(r.w);
    mx_free(r.s);
    mx_free(r.b);
    mx_free(r.x);
    free(w);
    free(s);
    free(b);
    free(x);
    free(y);
    return res;
}

/* ---- one decode step's mat-vecs, as the fused layer calls them ---- */

/* A decoder's shapes: per layer the stacked q|k|v, o, stacked gate|up and
 * down (layer_step.c's four calls), then the unembedding. */
typedef struct step_model {
    const char *name;
    int hidden, q_dim, kv_dim, ff, layers, vocab;
    int vocab_bits; /* the unembedding's bits (the layers' are 4) */
    int f16_scales; /* scales and biases float16 whatever x is; else x's dtype */
    int gs;         /* its one group size; 0: 64 and 32 */
} step_model;

static const step_model step_models[] = {
    {"SmolLM2-135M", 576, 576, 192, 1536, 30, 49152, 4, 0, 0},
    {"Qwen2.5-0.5B", 896, 896, 128, 4864, 24, 151936, 4, 0, 0},
    /* the default model as it loads: Q4_1 layers (group 32), a Q8_0
     * embedding tied as the unembedding, float16 scales */
    {"SmolLM2 GGUF", 576, 576, 192, 1536, 30, 49152, 8, 1, 32},
};

/* Shape of the i-th of a step's n mat-vecs (the last is the unembedding). */
static void step_shape(const step_model *m, int i, int n, int *N, int *K, int *bits) {
    int j = i % 4;
    *bits = i == n - 1 ? m->vocab_bits : 4;
    if (i == n - 1) *N = m->vocab, *K = m->hidden;
    else if (j == 0) *N = m->q_dim + 2 * m->kv_dim, *K = m->hidden;
    else if (j == 1) *N = m->hidden, *K = m->q_dim;
    else if (j == 2) *N = 2 * m->ff, *K = m->hidden;
    else *N = m->hidden, *K = m->ff;
}

/* Median seconds of a whole step and the weight bytes it reads, and the
 * GB/s of each kind of call (q|k|v, o, gate|up, down, unembedding) over the
 * timed steps. Every
 * layer's weights are distinct, and whole copies of the model are rotated
 * until > 256 MB are in play, so they stream from DRAM as in decoding
 * even on CPUs with a large last-level cache. The per-matrix table above
 * times each shape alone; this is what a token costs, the per-call
 * overheads of the small matrices included. Returns -1 when out of memory
 * or a call fails. */
/* One decode step's mat-vecs: the median time of its rounds (the best in
 * *best_out: the probe's statistic, for a like-for-like share). */
static double run_step(const step_model *m, int gs, const opts *o, double *bytes_out, double kind_gbps[5],
                       double *best_out) {
    const int per_layer = 4;
    int n_mats = m->layers * per_layer + 1;
    double bytes = 0, t = -1;
    size_t xmax = 0, ymax = 0;
    gm_fdtype sbt = m->f16_scales ? GM_F16 : o->dt;
    for (int i = 0; i < n_mats; i++) {
        int N, K, bits;
        step_shape(m, i, n_mats, &N, &K, &bits);
        bytes += (double)N * K * bits / 8 + 2.0 * N * (K / gs) * dsz(sbt);
        if ((size_t)K > xmax) xmax = (size_t)K;
        if ((size_t)N > ymax) ymax = (size_t)N;
    }
    int sets = bytes > 0 && bytes < 256e6 ? (int)(256e6 / bytes) + 1 : 1;
    if (sets > 64) sets = 64;
    size_t total = (size_t)sets * (size_t)n_mats;
    if (n_mats <= 0 || total > 65536) return -1;
    gm_qmm_args *calls = calloc(total, sizeof *calls);
    void **bufs = calloc(total * 3, sizeof *bufs);
    void *x = malloc(xmax * dsz(o->dt)), *y = malloc(ymax * dsz(o->dt));
    if (!calls || !bufs || !x || !y) goto out;
    fill(x, xmax, o->dt, 1.0f, 0.0f);
    for (size_t i = 0; i < total; i++) {
        int N, K, bits;
        step_shape(m, (int)(i % (size_t)n_mats), n_mats, &N, &K, &bits);
        size_t words = (size_t)N * K * bits / 32, sn = (size_t)N * (K / gs);
        uint32_t *w = malloc(words * 4);
        void *s = malloc(sn * dsz(sbt)), *b = malloc(sn * dsz(sbt));
        bufs[3 * i] = w, bufs[3 * i + 1] = s, bufs[3 * i + 2] = b;
        if (!w || !s || !b) goto out;
        for (size_t k = 0; k < words; k++) w[k] = rnd();
        fill(s, sn, sbt, 0.002f, 0.006f);
        fill(b, sn, sbt, 0.01f, -0.05f);
        gm_qmm_args a = {x, w, s, b, y, 1, N, K, bits, gs, o->dt, sbt, o->dt};
        calls[i] = a;
    }
    double ts[20], per_call[5] = {0};
    int n = o->quick ? 3 : 11;
    for (int r = -1; r < n; r++) {
        const gm_qmm_args *set = calls + (size_t)((r + 1) % sets) * n_mats;
        double t0 = gm_now_s();
        for (int i = 0; i < n_mats; i++) {
            /* Per layer, the pool's workers spin between the four calls,
             * as layer_step.c keeps them. */
            int layer_call = i < n_mats - 1 ? i % per_layer : -1;
            if (layer_call == 0) gm_pool_burst_begin();
            double c0 = gm_now_s();
            int rc = gm_qmm(&set[i]);
            if (r >= 0) per_call[i < n_mats - 1 ? i % per_layer : 4] += gm_now_s() - c0;
            if (layer_call == per_layer - 1 || (rc != 0 && layer_call >= 0)) gm_pool_burst_end();
            if (rc != 0) goto out;
        }
        if (r >= 0) ts[r] = gm_now_s() - t0;
    }
    qsort(ts, (size_t)n, sizeof *ts, cmp_double);
    t = ts[n / 2];
    *best_out = ts[0];
    for (int k = 0; k < 5; k++) {
        int N, K, bits;
        step_shape(m, k == 4 ? n_mats - 1 : k, n_mats, &N, &K, &bits);
        double b = (double)N * K * bits / 8 + 2.0 * N * (K / gs) * dsz(sbt), calls = k == 4 ? n : (double)n * m->layers;
        kind_gbps[k] = per_call[k] > 0 ? b * calls / per_call[k] / 1e9 : 0;
    }
out:
    if (bufs)
        for (size_t i = 0; i < total * 3; i++) free(bufs[i]);
    free(bufs);
    free(calls);
    free(x);
    free(y);
    *bytes_out = bytes;
    return t;
}

static void print_steps(const opts *o, double roof) {
    static const int gss[] = {64, 32};
    printf("\none decode step's mat-vecs (all layers + unembedding, weights from DRAM, back to back):\n");
    printf("(GB/s and %%roof: the median round against the probe's best pass; best: the best round against it)\n");
    printf("%-13s %3s | %9s %9s %7s %6s %6s | %s\n", "model", "gs", "step ms", "MB read", "GB/s", "%roof", "best",
           " q|k|v      o gate|up   down unembed (GB/s a call)");
    for (size_t mi = 0; mi < sizeof step_models / sizeof *step_models; mi++)
        for (int gi = 0; gi < 2; gi++) {
            const step_model *sm = &step_models[mi];
            int gs = sm->gs ? sm->gs : o->only_gs > 0 ? o->only_gs : gss[gi];
            if ((o->only_gs > 0 || sm->gs) && gi) continue;
            double bytes = 0, kinds[5] = {0}, best = 0, t = run_step(&step_models[mi], gs, o, &bytes, kinds, &best);
            if (t <= 0) {
                printf("%-13s %3d | failed (out of memory or a kernel error)\n", step_models[mi].name, gs);
                continue;
            }
            double gbps = bytes / t / 1e9, best_gbps = best > 0 ? bytes / best / 1e9 : 0;
            printf("%-13s %3d | %9.3f %9.1f %7.2f %5.0f%% %5.0f%% | %6.1f %6.1f %7.1f %6.1f %7.1f\n",
                   step_models[mi].name, gs, t * 1e3, bytes / 1e6, gbps, roof > 0 ? 100 * gbps / roof : 0,
                   roof > 0 ? 100 * best_gbps / roof : 0, kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]);
            fflush(stdout);
        }
}

static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ') v++;
                v[strcspn(v, "\n")] = 0;
                snprintf(out, cap, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

static double load_avg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

int main(int argc, char **argv) {
    opts o = {0, 0, 0, 0, 0, 0, 0, GM_F32, 20.0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) o.json = 1;
        else if (!strcmp(argv[i], "--quick")) o.quick = 1;
        else if (!strcmp(argv[i], "--no-mlx")) o.no_mlx = 1;
        else if (!strcmp(argv[i], "--step")) o.step_only = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mlx-budget") && i + 1 < argc) o.mlx_budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "--m") && i + 1 < argc) o.only_m = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gs") && i + 1 < argc) o.only_gs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            o.dt = !strcmp(d, "f16") ? GM_F16 : !strcmp(d, "bf16") ? GM_BF16 : GM_F32;
        } else {
            fprintf(stderr,
                    "usage: bench_qmm [--json] [--dtype f32|f16|bf16] [--threads N] [--quick] "
                    "[--no-mlx] [--step] [--mlx-budget SECONDS] [--m M] [--gs G]\n");
            return 2;
        }
    }
    if (o.step_only && o.json) {
        fprintf(stderr, "bench_qmm: --step prints a table only (no --json)\n");
        return 2;
    }
    if (o.threads > 0) gm_pool_set_threads(o.threads);
    if (!o.no_mlx && mx_set_device(0) != 0) {
        fprintf(stderr, "cannot select the MLX cpu device: %s\n", mx_error());
        return 1;
    }
    int threads = gm_pool_threads();
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    double load0 = load_avg();
    size_t bw_bytes = (size_t)(o.quick ? 256 : 512) << 20;
    double bw = gm_read_probe_gbps(bw_bytes, threads, o.quick ? 3 : 6);
    double bw1 = gm_read_probe_gbps(bw_bytes, 1, o.quick ? 2 : 4);
    /* The roofline is the best read rate seen: on a shared machine the
     * multi-threaded pass can land on a busy moment. */
    double roof = bw > bw1 ? bw : bw1;
    double disp[4] = {0, 0, 0, 0};
    dispatch_latency(threads, disp);

    if (o.json) {
        printf("{\"cpu\": \"%s\", \"threads\": %d, \"isa\": \"%s\", \"dtype\": \"%s\", "
               "\"load_avg_1m_start\": %.2f, \"mem_read_gbps\": %.2f, \"mem_read_gbps_1thread\": "
               "%.2f, \"roofline_gbps\": %.2f, \"dispatch_us_spinning\": %.2f, \"dispatch_us_spinning_min\": %.2f, "
               "\"dispatch_us_asleep\": %.2f, \"dispatch_us_asleep_min\": %.2f, "
               "\"results\": [",
               cpu, threads, gm_qmm_isa(), dtname(o.dt), load0, bw, bw1, roof, disp[0], disp[1],
               disp[2], disp[3]);
    } else {
        printf("cpu: %s, %d threads, isa %s, dtype %s, load avg %.2f\n", cpu, threads,
               gm_qmm_isa(), dtname(o.dt), load0);
        printf("memory read bandwidth: %.1f GB/s (%d threads), %.1f GB/s (1 thread); %%roof "
               "uses the larger\n",
               bw, threads, bw1);
        printf("pool dispatch (all %d threads in), median (min): %.2f (%.2f) us with workers "
               "spinning, %.1f (%.1f) us after they sleep\n\n",
               threads, disp[0], disp[1], disp[2], disp[3]);
        if (o.step_only) {
            print_steps(&o, roof);
            return 0;
        }
        printf("%-13s %-19s %3s %4s | %9s %7s %6s %8s | %9s %9s %9s | %7s\n", "model", "matrix",
               "gs", "M", "ours ms", "GB/s", "%roof", "hot GB/s", "ours+mlx", "mlx ms", "GFLOP/s",
               "speedup");
    }
    int first = 1;
    static const int gss[] = {64, 32};
    static const int Ms[] = {1, 512};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int gi = 0; gi < 2; gi++)
            for (int mi = 0; mi < 2; mi++) {
                const bcase *c = &cases[ci];
                int gs = gss[gi], M = Ms[mi];
                if (o.only_m > 0) {
                    if (mi) continue;
                    M = o.only_m;
                }
                if (o.only_gs > 0) {
                    if (gi) continue;
                    gs = o.only_gs;
                }
                result r = run_case(c, M, gs, &o);
                double wbytes = (double)c->N * c->K / 2 + 2.0 * c->N * (c->K / gs) * dsz(o.dt);
                double flops = 2.0 * M * c->N * c->K;
                double gbps = r.ours > 0 ? wbytes / r.ours / 1e9 : 0;
                double speedup = r.ours_mlx > 0 && r.mlx > 0 ? r.mlx / r.ours_mlx : 0;
                if (o.json) {
                    printf("%s\n  {\"model\": \"%s\", \"matrix\": \"%s\", \"N\": %d, \"K\": %d, "
                           "\"group_size\": %d, \"M\": %d, \"weight_bytes\": %.0f, "
                           "\"ours_s\": %.6g, \"ours_gbps\": %.3f, \"roofline_pct\": %.1f, "
                           "\"ours_gflops\": %.2f, \"ours_hot_s\": %.6g, \"ours_via_mlx_s\": %.6g, \"mlx_s\": %.6g, "
                           "\"mlx_estimated_from_m\": %d, \"mlx_gflops\": %.3f, "
                           "\"speedup_vs_mlx\": %.2f}",
                           first ? "" : ",", c->model, c->name, c->N, c->K, gs, M, wbytes,
                           r.ours, gbps, roof > 0 ? 100 * gbps / roof : 0,
                           r.ours > 0 ? flops / r.ours / 1e9 : 0, r.hot, r.ours_mlx, r.mlx,
                           r.mlx_from_m, r.mlx > 0 ? flops / r.mlx / 1e9 : 0, speedup);
                } else {
                    char mlxs[32] = "-", viamlx[32] = "-";
                    if (r.ours_mlx > 0) snprintf(viamlx, sizeof viamlx, "%.3f", r.ours_mlx * 1e3);
                    if (r.mlx > 0)
                        snprintf(mlxs, sizeof mlxs, "%s%.3f", r.mlx_from_m ? "~" : "",
                                 r.mlx * 1e3);
                    printf("%-13s %-19s %3d %4d | %9.3f %7.2f %5.0f%% %8.2f | %9s %9s %9.2f | "
                           "%6.1fx\n",
                           c->model, c->name, gs, M, r.ours * 1e3, gbps,
                           roof > 0 ? 100 * gbps / roof : 0, r.hot > 0 ? wbytes / r.hot / 1e9 : 0,
                           viamlx, mlxs,
                           r.ours > 0 ? flops / r.ours / 1e9 : 0, speedup);
                }
                fflush(stdout);
                first = 0;
            }
    if (!o.json && (o.only_m == 0 || o.only_m == 1)) print_steps(&o, roof);
    double load1 = load_avg();
    if (o.json)
        printf("\n], \"load_avg_1m_end\": %.2f}\n", load1);
    else
        printf("\nload avg at the end: %.2f (~: MLX timed on 8 rows and scaled; speedup = mlx / "
               "ours+mlx)\n",
               load1);
    return 0;
}
