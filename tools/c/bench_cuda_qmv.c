/* bench_cuda_qmv.c - our CUDA 4-bit mat-vec (src/mlx/cuda_qmv.cpp) against
 * MLX's quantized_matmul on the matrices of a 3B and a 7B decoder, one
 * token, bfloat16, group 64: microseconds per product and TB/s of weights,
 * 16 products per timed graph (mx_eval waits for the GPU), independent and
 * chained (see time_products). GOMLX_CUDA_QMV_R / _U pick a kernel
 * variant. Needs a CUDA GPU.
 *
 *   bench_cuda_qmv [--reps N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlx/mx.h"
#include "util/clock.h"

typedef struct shape {
    const char *name;
    int N, K;
} shape;

static const shape shapes[] = {
    {"Llama-3.2-3B q|k|v", 5120, 3072},  {"Llama-3.2-3B o", 3072, 3072},
    {"Llama-3.2-3B gate|up", 16384, 3072}, {"Llama-3.2-3B down", 3072, 8192},
    {"Llama-3.2-3B unembed", 128256, 3072}, {"Mistral-7B q|k|v", 6144, 4096},
    {"Mistral-7B o", 4096, 4096},        {"Mistral-7B gate|up", 28672, 4096},
    {"Mistral-7B down", 4096, 14336},     {"Mistral-7B unembed", 32000, 4096},
};

enum { BATCH = 16 };

static unsigned rng = 1;
/* n uniform values in [-scale, scale) as a bfloat16 array of this shape. */
static mx_array random_bf16(int rows, int cols, float scale) {
    size_t n = (size_t)rows * cols;
    float *v = malloc(n * sizeof(float));
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        rng = rng * 1664525u + 1013904223u;
        v[i] = scale * ((float)(rng >> 8) / (float)(1u << 23) - 1.0f);
    }
    mx_array a = mx_astype(mx_from_data(v, (int[]){rows, cols}, 2, MX_FLOAT32), MX_BFLOAT16);
    if (a && mx_eval(&a, 1) != 0) a = NULL;
    free(v);
    return a;
}

/* Seconds per product: `reps` graphs of BATCH products, after a warm-up.
 * chain=0: the products are independent; chain=1: each x is the previous
 * x plus the first output of the product before (a slice and an add in
 * between, as a decode step has norms and residuals), so each product
 * waits for the last: its latency counts, not only its throughput. */
static double time_products(mx_array *xs, mx_array wq, mx_array sc, mx_array bi, int reps, int chain) {
    double best = 1e9;
    for (int r = -1; r < reps; r++) {
        mx_scope *s = mx_scope_open();
        mx_array ys[BATCH];
        double t0 = gm_now_s();
        mx_array x = xs[0];
        for (int i = 0; i < BATCH; i++) {
            ys[i] = mx_quantized_matmul(chain ? x : xs[i], wq, sc, bi, 1, 64, 4);
            if (chain) x = mx_add(x, mx_slice(ys[i], (int[]){0, 0}, (int[]){1, 1}, NULL, 2));
        }
        if (mx_eval(ys, BATCH) != 0) {
            fprintf(stderr, "eval failed: %s\n", mx_error());
            exit(1);
        }
        double t = gm_now_s() - t0;
        if (r >= 0 && t < best) best = t;
        mx_scope_close(s);
    }
    return best / BATCH;
}

int main(int argc, char **argv) {
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cuda_qmv [--reps N]\n");
            return 2;
        }
    }
    /* Every shape through our kernel unless told otherwise (by default the
     * engine keeps MLX's below 56M weights, which would compare MLX with
     * itself on half of these rows). */
    setenv("GOMLX_CUDA_QMV_MIN", "0", 0);
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        fprintf(stderr, "bench_cuda_qmv: no CUDA backend here\n");
        return 1;
    }
    printf("%-22s %6s %6s | %9s %7s %9s | %9s %7s %9s | %s\n", "matrix", "N", "K", "ours us",
           "TB/s", "chain us", "mlx us", "TB/s", "chain us", "speedup (chain)");
    double tot[4] = {0, 0, 0, 0};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *sh = &shapes[si];
        mx_scope *s = mx_scope_open();
        mx_array w = random_bf16(sh->N, sh->K, 0.02f);
        mx_array wq, sc, bi;
        if (!w || mx_quantize(w, 64, 4, &wq, &sc, &bi) != 0) {
            fprintf(stderr, "quantize failed: %s\n", mx_error());
            return 1;
        }
        mx_array xs[BATCH];
        for (int i = 0; i < BATCH; i++) xs[i] = random_bf16(1, sh->K, 1.0f);
        mx_array all[3] = {wq, sc, bi};
        if (mx_eval(all, 3) != 0) return 1;
        double bytes = (double)sh->N * sh->K / 2 + 2.0 * sh->N * (sh->K / 64) * 2;
        double t[4];
        for (int k = 0; k < 4; k++) {
            mx_set_cuda_qmv(k < 2);
            t[k] = time_products(xs, wq, sc, bi, reps, k & 1);
            tot[k] += t[k];
        }
        mx_set_cuda_qmv(1);
        printf("%-22s %6d %6d | %9.1f %7.2f %9.1f | %9.1f %7.2f %9.1f | %.2fx (%.2fx)\n", sh->name,
               sh->N, sh->K, t[0] * 1e6, bytes / t[0] / 1e12, t[1] * 1e6, t[2] * 1e6,
               bytes / t[2] / 1e12, t[3] * 1e6, t[2] / t[0], t[3] / t[1]);
        fflush(stdout);
        mx_scope_close(s);
    }
    printf("all: ours %.0f us (chained %.0f), mlx %.0f us (chained %.0f): %.2fx (%.2fx); kernel %s\n",
           tot[0] * 1e6, tot[1] * 1e6, tot[2] * 1e6, tot[3] * 1e6, tot[2] / tot[0], tot[3] / tot[1],
           mx_cuda_qmv_status());
    return 0;
}
