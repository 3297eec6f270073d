/* bench_cuda_layer.c - where the device time of the GPU layers kernel
 * (src/mlx/cuda_layer.cpp) goes: a model's worth of distinct random 4-bit
 * layers of a real shape chained as in a decode step (weights streaming
 * from HBM), evaluated as one graph, as a kernel a layer and as one kernel
 * for all layers (runs alternating); prints the time per layer of each and
 * the split of a one-layer kernel and of the second layer of the kernel for
 * all into their phases (block 0's clock at each
 * phase's end after its barrier), when the last block arrived at each
 * barrier, and in the attention when the last block had started, had its
 * keys done, had written its chunk's partials and had merged (from the
 * phase's start on block 0's clock). Run with GOMLX_CUDA_LAYER_TIMING=1 for the split (the stamps cost
 * a few stores and atomics); on an NVIDIA GPU with MLX's CUDA backend.
 *
 *     GOMLX_CUDA_LAYER_TIMING=1 bench_cuda_layer [KEYS [SHAPE]]
 *
 * SHAPE picks one shape by the start of its name (e.g. Llama). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlx/mx.h"
#include "util/clock.h"

typedef struct shape {
    const char *name;
    int hidden, n_heads, n_kv, head_dim, ff, layers, bias;
    int gemma; /* Gemma 2's post-norms, GeGLU and soft-capped scores */
} shape;

static uint32_t rng_state = 11;
static float rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

/* Random bfloat16 values; a matrix repeats a random block of 64 rows (a
 * fresh buffer per layer all the same, and quick to make). */
static mx_array random_array(const int *shape, int ndim, float scale, float offset) {
    int rows = ndim == 2 && shape[0] % 64 == 0 ? 64 : 0;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (rows) n = (size_t)rows * shape[1];
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = offset + scale * rnd();
    mx_array a = rows ? mx_repeat(mx_from_data(v, (int[]){rows, shape[1]}, 2, MX_FLOAT32), shape[0] / rows, 0)
                      : mx_from_data(v, shape, ndim, MX_FLOAT32);
    free(v);
    return mx_astype(a, MX_BFLOAT16);
}

static mx_qlinear quantized(int out, int in, int bias) {
    mx_qlinear l = {0};
    if (mx_quantize(random_array((int[]){out, in}, 2, 0.04f, 0.0f), 64, 4, &l.w, &l.scales, &l.biases)) return l;
    mx_array parts[3] = {l.w, l.scales, l.biases};
    mx_eval(parts, 3);
    l.bits = 4, l.group_size = 64;
    if (bias) l.bias = random_array((int[]){out}, 1, 0.5f, 0.0f);
    return l;
}

static int run(const shape *sh, int keys) {
    mx_scope *scope = mx_scope_open();
    int d = sh->head_dim, qd = sh->n_heads * d, kvd = sh->n_kv * d, cap = keys + 64, half = d / 2;
    mx_layer_step *L = calloc((size_t)sh->layers, sizeof *L);
    float step = logf(500000.0f) / (float)half;
    mx_array inv_freq = mx_exp(mx_multiply(mx_arange(0, -half, -1, MX_FLOAT32), mx_scalar(step, MX_FLOAT32)));
    mx_eval(&inv_freq, 1);
    for (int i = 0; i < sh->layers; i++) {
        mx_layer_step s = {
            .attn_norm = random_array((int[]){sh->hidden}, 1, 0.2f, 1.0f),
            .mlp_norm = random_array((int[]){sh->hidden}, 1, 0.2f, 1.0f),
            .qkv = quantized(qd + 2 * kvd, sh->hidden, sh->bias), .o = quantized(sh->hidden, qd, 0),
            .gate_up = quantized(2 * sh->ff, sh->hidden, 0), .down = quantized(sh->hidden, sh->ff, 0),
            .n_heads = sh->n_heads, .n_kv_heads = sh->n_kv, .head_dim = d, .eps = 1e-5f,
            .inv_freq = inv_freq, .attn_scale = 1.0f / sqrtf((float)d),
            .k_cache = random_array((int[]){1, sh->n_kv, cap, d}, 4, 1.0f, 0.0f),
            .v_cache = random_array((int[]){1, sh->n_kv, cap, d}, 4, 1.0f, 0.0f),
            .slot = keys - 1, .first = 0, .position = (float)(keys - 1),
        };
        if (sh->gemma) {
            s.post_attn_norm = random_array((int[]){sh->hidden}, 1, 0.2f, 1.0f);
            s.post_mlp_norm = random_array((int[]){sh->hidden}, 1, 0.2f, 1.0f);
            s.gelu = 1, s.softcap = 50.0f;
        }
        mx_array e[6] = {s.attn_norm, s.mlp_norm, s.k_cache, s.v_cache, s.post_attn_norm, s.post_mlp_norm};
        if (!s.qkv.w || !s.o.w || !s.gate_up.w || !s.down.w || mx_eval(e, sh->gemma ? 6 : 4)) {
            fprintf(stderr, "%s: could not make layer %d: %s\n", sh->name, i, mx_error());
            goto fail;
        }
        L[i] = s;
    }
    const char *why = mx_cuda_layers_ready(&L[0], 1);
    if (!why) why = mx_cuda_layers_ready(L, sh->layers);
    if (why) {
        fprintf(stderr, "%s: layers kernel not ready: %s\n", sh->name, why);
        goto fail;
    }
    /* a kernel a layer, and one for all layers */
    mx_cuda_layers *one = mx_cuda_layers_new(&L[0], 1), *all = mx_cuda_layers_new(L, sh->layers);
    if (!one || !all) {
        fprintf(stderr, "%s: %s\n", sh->name, mx_error());
        mx_cuda_layers_free(one);
        mx_cuda_layers_free(all);
        goto fail;
    }
    mx_array h0 = random_array((int[]){1, 1, sh->hidden}, 3, 2.0f, 0.0f);
    mx_eval(&h0, 1);
    enum { REPS = 20 };
    /* [0]: the one-layer kernel's layer, [1]: the second layer of the kernel for all */
    double best[2] = {1e9, 1e9}, phase[2][5] = {{0}}, arrived[2][5] = {{0}}, attn[2][4] = {{0}};
    int stamped[2] = {0};
    for (int r = 0; r < 2 * (REPS + 2); r++) {
        int whole = r % 2;
        mx_scope *inner = mx_scope_open();
        mx_array h = h0;
        double t0 = gm_now_s();
        if (whole) h = mx_cuda_layers_step(all, h, L, sh->layers);
        for (int i = 0; !whole && i < sh->layers && h; i++) h = mx_cuda_layers_step(one, h, &L[i], 1);
        if (!h || mx_eval(&h, 1)) {
            fprintf(stderr, "%s: %s\n", sh->name, mx_error());
            mx_scope_close(inner);
            mx_cuda_layers_free(one);
            mx_cuda_layers_free(all);
            goto fail;
        }
        double t = gm_now_s() - t0;
        if (r >= 4 && t < best[whole]) best[whole] = t;
        /* the last layer's phases, one kernel a layer; the second layer's in one kernel */
        uint64_t ts[16];
        if (r >= 4 && !mx_cuda_layers_stamps(whole ? all : one, ts) && ts[5] > ts[0] && ts[9] > ts[1]) {
            for (int k = 0; k < 5; k++) {
                phase[whole][k] += (double)(ts[k + 1] - ts[k]) * 1e-3;
                arrived[whole][k] += ((double)ts[10 + k] - (double)ts[k]) * 1e-3;
            }
            for (int k = 0; k < 4; k++) attn[whole][k] += ((double)ts[6 + k] - (double)ts[1]) * 1e-3;
            stamped[whole]++;
        }
        mx_scope_close(inner);
    }
    printf("%-14s %2d layers, %4d keys: %7.1f us a layer with a kernel a layer, %7.1f in one kernel "
           "(best chain of %d, wall)",
           sh->name, sh->layers, keys, best[0] * 1e6 / sh->layers, best[1] * 1e6 / sh->layers, REPS);
    for (int w = 0; w < 2; w++) {
        static const char *names[5] = {"A qkv+rope", "B attention", "C o-proj", "D norm+gate|up", "E down"};
        const int n = stamped[w];
        if (!n) continue;
        printf(w ? "\n  one kernel, its second layer:" : "; a kernel a layer, block 0:");
        for (int k = 0; k < 5; k++) printf(" %s %.1f", names[k], phase[w][k] / n);
        printf(" us\n  the last block at each barrier, from its phase's start:");
        for (int k = 0; k < 5; k++) printf(" %c %.1f", 'A' + k, arrived[w][k] / n);
        printf(" us; attention, the last block's start %.1f, keys %.1f, partials %.1f, merge %.1f us",
               attn[w][0] / n, attn[w][1] / n, attn[w][2] / n, attn[w][3] / n);
    }
    printf("\n  layers kernel: %s\n", mx_cuda_layer_status());
    mx_cuda_layers_free(one);
    mx_cuda_layers_free(all);
    free(L);
    mx_scope_close(scope);
    return 0;
fail:
    free(L);
    mx_scope_close(scope);
    return 1;
}

int main(int argc, char **argv) {
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        fprintf(stderr, "bench_cuda_layer: needs MLX's CUDA backend\n");
        return 1;
    }
    int keys = argc > 1 ? atoi(argv[1]) : 600;
    if (keys < 1 || keys > 100000) {
        fprintf(stderr, "usage: bench_cuda_layer [KEYS [SHAPE]]\n");
        return 2;
    }
    static const shape shapes[] = {
        {"Llama-3.2-3B", 3072, 24, 8, 128, 8192, 28, 0, 0},
        {"Qwen2.5-3B", 2048, 16, 2, 128, 11008, 36, 1, 0},
        {"Mistral-7B", 4096, 32, 8, 128, 14336, 32, 0, 0},
        {"Gemma-2-2B", 2304, 8, 4, 256, 9216, 26, 0, 1},
    };
    int rc = 0;
    const char *only = argc > 2 ? argv[2] : NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!only || strncmp(shapes[i].name, only, strlen(only)) == 0) rc |= run(&shapes[i], keys);
    return rc;
}
