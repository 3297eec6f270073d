/* test_cuda_layer.c - our decoder-layer kernels (src/mlx/cuda_layer.cpp)
 * against the MLX ops they replace on the same inputs: RMSNorm then the
 * 4-bit product (+ bias), the product added to a residual, and the stacked
 * gate|up product through SwiGLU. The products sum in another order than
 * MLX's kernel, so values may differ by a rounding or two of the element
 * type at the scale of the largest output; nothing more. Needs an NVIDIA
 * GPU and MLX's CUDA backend; elsewhere it exits 77, which ctest reports
 * as skipped (not passed). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "mlx/mx.h"

static uint32_t rng_state = 99;
static float rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static mx_array random_array(const int *shape, int ndim, mx_dtype dt, float scale) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = scale * rnd();
    mx_array a = mx_astype(mx_from_data(v, shape, ndim, MX_FLOAT32), dt);
    free(v);
    return a;
}

/* Largest |ours - ref| over the largest |ref|. */
static double rel_diff(mx_array ours, mx_array ref) {
    size_t n = mx_size(ref);
    if (!ours || mx_size(ours) != n) return INFINITY;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    double e = INFINITY;
    if (!mx_read(ours, MX_FLOAT32, a, n * sizeof(float)) && !mx_read(ref, MX_FLOAT32, b, n * sizeof(float))) {
        double d = 0, m = 0;
        for (size_t i = 0; i < n; i++) {
            double x = fabs((double)a[i] - b[i]);
            if (!(x <= d)) d = x;
            if (fabs(b[i]) > m) m = fabs(b[i]);
        }
        e = m > 0 ? d / m : d;
    }
    free(a);
    free(b);
    return e;
}

enum { PLAIN, NORMED, RESIDUAL, SWIGLU };

/* One product of kind `kind` with N outputs of K inputs. */
static void check_case(int kind, int N, int K, int gs, mx_dtype dt, int with_bias) {
    mx_scope *s = mx_scope_open();
    mx_array w = random_array((int[]){N, K}, 2, dt, 0.05f);
    mx_qlinear l = {0};
    CHECK(mx_quantize(w, gs, 4, &l.w, &l.scales, &l.biases) == 0);
    l.bits = 4, l.group_size = gs;
    if (with_bias) l.bias = random_array((int[]){N}, 1, dt, 0.5f);
    mx_array x = random_array((int[]){1, 1, K}, 3, dt, kind == NORMED || kind == SWIGLU ? 3.0f : 1.0f);
    mx_array nw = random_array((int[]){K}, 1, dt, 1.5f);
    mx_array res = random_array((int[]){1, 1, N}, 3, dt, 2.0f);
    int normed = kind == NORMED || kind == SWIGLU;

    long calls = mx_cuda_layer_calls();
    mx_array ours = mx_cuda_layer_qmv(x, normed ? nw : NULL, 1e-5f, &l, kind == RESIDUAL ? res : NULL,
                                      kind == SWIGLU);
    CHECK_MSG(ours != NULL, "%s", mx_error());
    CHECK(mx_cuda_layer_calls() == calls + 1);

    /* MLX's ops (its own mat-vec: ours off) */
    mx_set_cuda_qmv(0);
    mx_array in = normed ? mx_rms_norm(x, nw, 1e-5f) : x;
    mx_array ref = mx_quantized_matmul(in, l.w, l.scales, l.biases, 1, gs, 4);
    if (with_bias) ref = mx_add(ref, l.bias);
    if (kind == RESIDUAL) ref = mx_add(res, ref);
    if (kind == SWIGLU) ref = mx_gated_stacked(ref, 0);
    CHECK(ref != NULL);
    mx_set_cuda_qmv(1);
    CHECK(ours && mx_ndim(ours) == 3 && mx_dim(ours, 2) == (kind == SWIGLU ? N / 2 : N) &&
          mx_get_dtype(ours) == dt);
    double e = rel_diff(ours, ref);
    double tol = dt == MX_BFLOAT16 ? 2.0 / 256 : 2.0 / 1024; /* two roundings at the largest output */
    static const char *names[] = {"plain", "normed", "residual", "swiglu"};
    CHECK_MSG(e <= tol, "%s N %d K %d gs %d %s bias %d: %.3g from MLX's ops", names[kind], N, K, gs,
              mx_dtype_name(dt), with_bias, e);
    fprintf(stderr, "  %-8s N %5d K %5d gs %3d %-8s bias %d: %.2e of the largest output from MLX's ops\n",
            names[kind], N, K, gs, mx_dtype_name(dt), with_bias, e);
    mx_scope_close(s);
}

static void test_layer_products(void) {
    static const mx_dtype dts[] = {MX_BFLOAT16, MX_FLOAT16};
    static const int gss[] = {32, 64, 128};
    for (int d = 0; d < 2; d++)
        for (int g = 0; g < 3; g++) {
            check_case(NORMED, 5120, 3072, gss[g], dts[d], 0); /* Llama-3.2-3B q|k|v */
            check_case(NORMED, 2560, 2048, gss[g], dts[d], 1); /* Qwen2.5-3B q|k|v: bias */
            check_case(RESIDUAL, 3072, 3072, gss[g], dts[d], 0);
            check_case(RESIDUAL, 1000, 8192, gss[g], dts[d], 1); /* ragged rows, wide K */
            check_case(SWIGLU, 16384, 3072, gss[g], dts[d], 0);
            check_case(SWIGLU, 600, 256, gss[g], dts[d], 1);
            check_case(PLAIN, 8195, 1024, gss[g], dts[d], 0); /* four rows a warp, ragged */
            check_case(NORMED, 32000, 4096, gss[g], dts[d], 0); /* a vocabulary */
        }
}

/* What the kernel does not take is refused with a reason, and the call
 * fails with an error instead of running. */
static void test_misfits(void) {
    mx_scope *s = mx_scope_open();
    mx_array w = random_array((int[]){64, 256}, 2, MX_BFLOAT16, 0.05f);
    mx_qlinear l8 = {0}, l4 = {0};
    CHECK(mx_quantize(w, 64, 8, &l8.w, &l8.scales, &l8.biases) == 0);
    l8.bits = 8, l8.group_size = 64;
    CHECK(mx_cuda_layer_misfit(&l8, MX_BFLOAT16, 0) != NULL);
    CHECK(mx_quantize(w, 64, 4, &l4.w, &l4.scales, &l4.biases) == 0);
    l4.bits = 4, l4.group_size = 64;
    CHECK(mx_cuda_layer_misfit(&l4, MX_BFLOAT16, 0) == NULL);
    CHECK(mx_cuda_layer_misfit(&l4, MX_FLOAT32, 0) != NULL);
    mx_array x = random_array((int[]){1, 1, 128}, 3, MX_BFLOAT16, 1.0f);
    CHECK(mx_cuda_layer_qmv(x, NULL, 0, &l4, NULL, 0) == NULL); /* K 256, x 128 */
    mx_clear_error();
    mx_array wide = random_array((int[]){8, 32768}, 2, MX_BFLOAT16, 0.05f);
    mx_qlinear lw = {0};
    CHECK(mx_quantize(wide, 64, 4, &lw.w, &lw.scales, &lw.biases) == 0);
    lw.bits = 4, lw.group_size = 64;
    CHECK(mx_cuda_layer_misfit(&lw, MX_BFLOAT16, 0) != NULL); /* x beyond shared memory */
    mx_scope_close(s);
}

int main(void) {
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        printf("skipped: no CUDA backend here\n");
        return 77;
    }
    CHECK_MSG(mx_cuda_layer_ready(MX_BFLOAT16, 64) == 1, "not ready: %s", mx_cuda_layer_status());
    RUN(test_layer_products);
    RUN(test_misfits);
    CHECK_STR(mx_cuda_layer_status(), "in use");
    return check_summary();
}
