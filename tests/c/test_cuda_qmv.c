/* test_cuda_qmv.c - our CUDA 4-bit matrix-vector kernel (src/mlx/cuda_qmv.cpp)
 * against a float64 product of the dequantized weights, next to MLX's own
 * kernel on the same inputs. Needs an NVIDIA GPU and MLX's CUDA backend;
 * elsewhere it exits 77, which ctest reports as skipped (not passed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mlx/mx.h"

static uint32_t rng_state = 2024;
static float rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static int readf(mx_array a, float *out, size_t n) {
    if (!a || mx_size(a) != n) return -1;
    return mx_read(a, MX_FLOAT32, out, n * sizeof(float));
}

/* Largest |got - ref| over the largest |ref|. */
static double rel_err(const float *got, const double *ref, int n) {
    double e = 0, m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]);
        if (!(d <= e)) e = d;
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    return m > 0 ? e / m : e;
}

/* Whether the tensor-core kernel must take an N-row product of this test
 * (all its weights qualify on an sm_80+ GPU): GOMLX_CUDA_QMV_TC=1 every
 * one, 0 none; by default those of at least 4 tiles of 16 rows an SM,
 * certain from N = 65536 on (4096 tiles) and left to the rule below it (-1). */
static int expect_tensor_cores(int N) {
    const char *e = getenv("GOMLX_CUDA_QMV_TC");
    if (mx_cuda_capability() < 80 || (e && atoi(e) == 0)) return 0;
    if (e && atoi(e) == 1) return 1;
    return N >= 65536 ? 1 : -1;
}

/* One shape, dtype and group size: ours within one rounding of the output
 * dtype (relative to the largest output) or 2x MLX's error, and used.
 * x_offset > 0: x is a view starting that many elements into a buffer,
 * so not 16-byte aligned (the kernel's element-wise load path). */
static void check_case(int N, int K, int gs, mx_dtype dt, int x_ndim, int x_offset) {
    mx_scope *s = mx_scope_open();
    float *wv = malloc((size_t)N * K * sizeof(float)), *xv = malloc((size_t)K * sizeof(float));
    float *wd = malloc((size_t)N * K * sizeof(float)), *got = malloc((size_t)N * sizeof(float));
    double *ref = malloc((size_t)N * sizeof(double));
    for (size_t i = 0; i < (size_t)N * K; i++) wv[i] = 0.02f * rnd();
    for (int i = 0; i < K; i++) xv[i] = rnd();
    mx_array w = mx_astype(mx_from_data(wv, (int[]){N, K}, 2, MX_FLOAT32), dt);
    mx_array wq, sc, bi;
    CHECK(mx_quantize(w, gs, 4, &wq, &sc, &bi) == 0);
    /* evaluated, as a model's weights are: the tensor-core kernel takes
     * only weights whose buffer (and so alignment) is known */
    CHECK(mx_eval((mx_array[]){wq, sc, bi}, 3) == 0);
    int xshape[3] = {1, 1, K};
    mx_array x = mx_astype(mx_from_data(xv, xshape + 3 - x_ndim, x_ndim, MX_FLOAT32), dt);
    /* x through one more kernel first, as in a decode step */
    x = mx_multiply(x, mx_full((int[]){1}, 1, 1.0, dt));
    if (x_offset) {
        mx_array wide = mx_concat((mx_array[]){mx_full((int[]){1, x_offset}, 2, 0.0, dt),
                                               mx_reshape(x, (int[]){1, K}, 2)},
                                  2, 1);
        CHECK(mx_eval(&wide, 1) == 0);
        x = mx_reshape(mx_slice(wide, (int[]){0, x_offset}, (int[]){1, x_offset + K}, NULL, 2),
                       xshape + 3 - x_ndim, x_ndim);
    }
    CHECK(readf(x, xv, (size_t)K) == 0);
    mx_array wdq = mx_dequantize(wq, mx_astype(sc, MX_FLOAT32), mx_astype(bi, MX_FLOAT32), gs, 4,
                                 MX_FLOAT32);
    CHECK(readf(wdq, wd, (size_t)N * K) == 0);
    for (int n = 0; n < N; n++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += (double)wd[(size_t)n * K + k] * xv[k];
        ref[n] = acc;
    }
    double tol = dt == MX_BFLOAT16 ? 1.0 / 256 : 1.0 / 1024; /* one ulp at the largest output */

    /* MLX 0.32.4's CUDA op gives a wrongly sized, garbage result for a 1-D
     * x (seen on an H200), and faults ("misaligned address", which then
     * poisons the CUDA context) on an x view that is not 16-byte aligned
     * (seen on an H100): it is compared only on 2-D and 3-D aligned x. */
    double e_mlx = -1;
    if (x_ndim >= 2 && !x_offset) {
        mx_set_cuda_qmv(0);
        mx_array y0 = mx_quantized_matmul(x, wq, sc, bi, 1, gs, 4);
        CHECK(readf(y0, got, (size_t)N) == 0);
        e_mlx = rel_err(got, ref, N);
        CHECK_MSG(e_mlx <= 4 * tol, "MLX itself off: %.3g", e_mlx);
    }

    mx_set_cuda_qmv(1);
    long calls = mx_cuda_qmv_calls(), tc_calls = mx_cuda_qmv_tc_calls();
    mx_array y1 = mx_quantized_matmul(x, wq, sc, bi, 1, gs, 4);
    CHECK_MSG(mx_cuda_qmv_calls() == calls + 1, "our kernel was not used");
    const long tc_used = mx_cuda_qmv_tc_calls() - tc_calls;
    CHECK_MSG(expect_tensor_cores(N) < 0 || tc_used == expect_tensor_cores(N), "N %d: the tensor-core kernel %s", N,
              tc_used ? "ran, unasked" : "was not used");
    CHECK(y1 && mx_ndim(y1) == x_ndim && mx_dim(y1, -1) == N && mx_get_dtype(y1) == dt);
    CHECK(readf(y1, got, (size_t)N) == 0);
    double e_ours = rel_err(got, ref, N);
    /* "in use", or "in use (its code goes with every call)" (MLX 0.32.4) */
    CHECK_MSG(strncmp(mx_cuda_qmv_status(), "in use", 6) == 0, "%s", mx_cuda_qmv_status());
    CHECK_MSG(e_ours <= tol || e_ours <= 2 * e_mlx, "N %d K %d gs %d dtype %s: ours %.3g, MLX %.3g",
              N, K, gs, mx_dtype_name(dt), e_ours, e_mlx);
    fprintf(stderr, "  N %5d K %5d gs %3d %-8s x ndim %d offset %d: ours %.2e, MLX %.2e%s\n", N, K,
            gs, mx_dtype_name(dt), x_ndim, x_offset, e_ours, e_mlx, tc_used ? " (tensor cores)" : "");
    free(wv);
    free(xv);
    free(wd);
    free(got);
    free(ref);
    mx_scope_close(s);
}

static void test_shapes(void) {
    static const mx_dtype dts[] = {MX_BFLOAT16, MX_FLOAT16};
    static const int gss[] = {32, 64, 128};
    for (int d = 0; d < 2; d++)
        for (int g = 0; g < 3; g++) {
            check_case(1000, 4096, gss[g], dts[d], 2, 0); /* not a multiple of a warp's rows */
            check_case(8195, 1024, gss[g], dts[d], 3, 0); /* four rows a warp, ragged end */
            check_case(256, 3584, gss[g], dts[d], 1, 0);  /* K not a power of two */
            check_case(300, 256, gss[g], dts[d], 2, 0);   /* most lanes without a chunk */
            check_case(700, 2048, gss[g], dts[d], 2, 3);  /* x not 16-byte aligned */
        }
    /* a vocabulary's worth of rows: the tensor-core kernel by default */
    check_case(65536, 1024, 64, MX_BFLOAT16, 2, 0);
    check_case(65540, 768, 128, MX_FLOAT16, 3, 5); /* ragged end, partial windows, x a view */
}

/* Where our kernel does not apply, MLX's runs and gives the same numbers
 * as with ours off. */
static void test_fallbacks(void) {
    mx_scope *s = mx_scope_open();
    enum { N = 64, K = 256 };
    static float wv[N * K], xv[2 * K], a[2 * N], b[2 * N];
    for (int i = 0; i < N * K; i++) wv[i] = 0.02f * rnd();
    for (int i = 0; i < 2 * K; i++) xv[i] = rnd();
    mx_array w = mx_from_data(wv, (int[]){N, K}, 2, MX_FLOAT32);
    mx_array wq, sc, bi;
    CHECK(mx_quantize(mx_astype(w, MX_BFLOAT16), 64, 4, &wq, &sc, &bi) == 0);
    /* two rows of x */
    mx_array x2 = mx_astype(mx_from_data(xv, (int[]){2, K}, 2, MX_FLOAT32), MX_BFLOAT16);
    mx_set_cuda_qmv(1);
    CHECK(readf(mx_quantized_matmul(x2, wq, sc, bi, 1, 64, 4), a, 2 * N) == 0);
    mx_set_cuda_qmv(0);
    CHECK(readf(mx_quantized_matmul(x2, wq, sc, bi, 1, 64, 4), b, 2 * N) == 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* float32 x */
    mx_array xf = mx_from_data(xv, (int[]){1, K}, 2, MX_FLOAT32);
    mx_set_cuda_qmv(1);
    CHECK(readf(mx_quantized_matmul(xf, wq, sc, bi, 1, 64, 4), a, N) == 0);
    mx_set_cuda_qmv(0);
    CHECK(readf(mx_quantized_matmul(xf, wq, sc, bi, 1, 64, 4), b, N) == 0);
    CHECK(memcmp(a, b, N * sizeof(float)) == 0);
    mx_set_cuda_qmv(1);
    mx_scope_close(s);
}

int main(void) {
    setenv("GOMLX_CUDA_QMV_MIN", "0", 1); /* small shapes use our kernel too */
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        printf("skipped: no CUDA backend here\n");
        return 77;
    }
    RUN(test_shapes);
    RUN(test_fallbacks);
    return check_summary();
}
