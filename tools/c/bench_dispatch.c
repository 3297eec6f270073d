/* bench_dispatch.c - where a chain of small dependent ops goes on the GPU:
 * the host building the graph, the host handing it to the device (MLX's
 * async_eval: its graph walk, CUDA graph nodes and launches) and the
 * device finishing after that, per node, for views, MLX's own kernels and
 * ours (a node of mx::fast::precompiled_cuda_kernel: our 4-bit mat-vec
 * against MLX's on a small matrix). Chains of 400 steps on one token's worth
 * of data. MLX_MAX_OPS_PER_BUFFER is raised to 250 so a chain is a few
 * command batches: async_eval then never blocks on MLX's limit of 10
 * batches in flight, and its time is the host's alone. A decode step is a
 * chain like these (docs/PERFORMANCE.md). Needs a CUDA GPU.
 *
 *   bench_dispatch [--reps N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlx/mx.h"
#include "util/clock.h"

enum { STEPS = 400, H = 3072 };

typedef mx_array (*step_fn)(mx_array x, mx_array r, mx_array w);

static mx_array add_only(mx_array x, mx_array r, mx_array w) {
    (void)w;
    return mx_add(x, r);
}

static mx_array add_then_norm(mx_array x, mx_array r, mx_array w) {
    return mx_rms_norm(mx_add(x, r), w, 1e-5f);
}

/* x @ w.T for a square 4-bit matrix: w, scales, biases set in main. */
static mx_array qw, qs, qb;
static mx_array qmv(mx_array x, mx_array r, mx_array w) {
    (void)r, (void)w;
    return mx_quantized_matmul(x, qw, qs, qb, 1, 64, 4);
}

static mx_array qmv_ours(mx_array x, mx_array r, mx_array w) {
    mx_set_cuda_qmv(1);
    return qmv(x, r, w);
}

static mx_array qmv_mlx(mx_array x, mx_array r, mx_array w) {
    mx_set_cuda_qmv(0);
    return qmv(x, r, w);
}

static mx_array reshape_pair(mx_array x, mx_array r, mx_array w) {
    (void)r, (void)w;
    return mx_reshape(mx_reshape(x, (int[]){1, H, 1}, 3), (int[]){1, 1, H}, 3);
}

static void run(const char *name, step_fn f, int nodes, mx_array x0, mx_array r, mx_array w, int reps) {
    double build = 0, dispatch = 0, device = 0;
    for (int rep = -1; rep < reps; rep++) { /* rep -1 warms up (compiles) */
        mx_scope *s = mx_scope_open();
        double t0 = gm_now_s();
        mx_array x = x0;
        for (int i = 0; i < STEPS && x; i++) x = f(x, r, w);
        double t1 = gm_now_s();
        int rc = !x || mx_async_eval(&x, 1);
        double t2 = gm_now_s();
        if (rc || mx_eval(&x, 1)) {
            fprintf(stderr, "%s: %s\n", name, mx_error());
            exit(1);
        }
        double t3 = gm_now_s();
        mx_scope_close(s);
        if (rep >= 0) build += t1 - t0, dispatch += t2 - t1, device += t3 - t2;
    }
    double per = 1e6 / ((double)reps * STEPS);
    printf("%-32s %d node(s)/step: build %6.2f, dispatch %6.2f, device after %6.2f us per step\n",
           name, nodes, build * per, dispatch * per, device * per);
}

int main(int argc, char **argv) {
    int reps = 10;
    setenv("GOMLX_CUDA_QMV_MIN", "0", 1);       /* our mat-vec on a small matrix too */
    setenv("MLX_MAX_OPS_PER_BUFFER", "250", 0); /* see the top */
    if (argc == 3 && !strcmp(argv[1], "--reps")) reps = atoi(argv[2]);
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        fprintf(stderr, "bench_dispatch: needs MLX's CUDA backend and a GPU\n");
        return 1;
    }
    float *v = malloc(H * sizeof(float));
    for (int i = 0; i < H; i++) v[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    mx_array x = mx_astype(mx_from_data(v, (int[]){1, 1, H}, 3, MX_FLOAT32), MX_BFLOAT16);
    mx_array w = mx_astype(mx_from_data(v, (int[]){H}, 1, MX_FLOAT32), MX_BFLOAT16);
    float *m = malloc((size_t)H * H * sizeof(float));
    for (size_t i = 0; i < (size_t)H * H; i++) m[i] = (float)((i * 2654435761u) % 1001) / 20000.0f - 0.025f;
    mx_array square = mx_astype(mx_from_data(m, (int[]){H, H}, 2, MX_FLOAT32), MX_BFLOAT16);
    free(m);
    mx_array arrays[5] = {x, w};
    if (!square || mx_quantize(square, 64, 4, &qw, &qs, &qb)) {
        fprintf(stderr, "bench_dispatch: %s\n", mx_error());
        return 1;
    }
    arrays[2] = qw, arrays[3] = qs, arrays[4] = qb;
    if (mx_eval(arrays, 5)) {
        fprintf(stderr, "bench_dispatch: %s\n", mx_error());
        return 1;
    }
    printf("MLX %s, %d dependent steps on [1, 1, %d] bfloat16, mean of %d runs, MLX_MAX_OPS_PER_BUFFER=%s\n",
           mx_version(), STEPS, H, reps, getenv("MLX_MAX_OPS_PER_BUFFER"));
    run("reshape, reshape (views)", reshape_pair, 2, x, x, w, reps);
    run("add (MLX)", add_only, 1, x, x, w, reps);
    run("add, rms_norm (MLX)", add_then_norm, 2, x, x, w, reps);
    run("4-bit mat-vec 3072x3072 (MLX)", qmv_mlx, 1, x, x, w, reps);
    run("4-bit mat-vec 3072x3072 (ours)", qmv_ours, 1, x, x, w, reps);
    free(v);
    return 0;
}
