/* test_cuda_fused.c - the fused decode kernels (src/mlx/cuda_fused.cpp)
 * against the MLX ops they replace, on the same inputs: residual add +
 * RMSNorm, RoPE of a stacked q|k|v (offsets, both pairings, a frequency
 * table, a bias) and SwiGLU of a stacked gate|up. They round at the same
 * points as MLX, so each value is equal or one rounding of the element
 * type apart (a sum in another order, sin/cos of the same angle). Needs
 * an NVIDIA GPU and MLX's CUDA backend; elsewhere it exits 77, which ctest
 * reports as skipped (not passed). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "mlx/mx.h"

static uint32_t rng_state = 77;
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

/* Values of ours and MLX's differ by at most one rounding of dt (relative
 * to the larger magnitude, or for values near zero, where a rotation
 * cancels, to 1/256 of the array's largest) and in few places; returns the
 * count that differ at all, -1 when one is off by more. */
static int compare(mx_array ours, mx_array ref, mx_dtype dt, const char *what) {
    size_t n = mx_size(ref);
    CHECK_MSG(ours && mx_size(ours) == n && mx_get_dtype(ours) == dt, "%s: wrong result", what);
    if (!ours || mx_size(ours) != n) return -1;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    CHECK(mx_read(ours, MX_FLOAT32, a, n * sizeof(float)) == 0);
    CHECK(mx_read(ref, MX_FLOAT32, b, n * sizeof(float)) == 0);
    double ulp = dt == MX_BFLOAT16 ? 1.0 / 128 : 1.0 / 1024; /* at the bottom of a binade */
    double top = 0;
    for (size_t i = 0; i < n; i++) top = fmax(top, fabs(b[i]));
    int differ = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] == b[i]) continue;
        differ++;
        double m = fmax(fmax(fabs(a[i]), fabs(b[i])), top / 256);
        if (fabs(a[i] - b[i]) > ulp * m * 1.001) {
            if (!off) fprintf(stderr, "  %s [%zu]: ours %g, MLX %g\n", what, i, a[i], b[i]);
            off++;
        }
    }
    CHECK_MSG(off == 0, "%s: %d of %zu values more than one rounding apart", what, off, n);
    /* One rounding apart now and then, not everywhere. */
    CHECK_MSG(differ <= (int)(n / 20) + 2, "%s: %d of %zu values differ", what, differ, n);
    free(a);
    free(b);
    return off ? -1 : differ;
}

static void check_add_rms_norm(int rows, int H, mx_dtype dt) {
    mx_scope *s = mx_scope_open();
    mx_array x = random_array((int[]){1, rows, H}, 3, dt, 3.0f);
    mx_array r = random_array((int[]){1, rows, H}, 3, dt, 1.0f);
    mx_array w = random_array((int[]){H}, 1, dt, 2.0f);
    mx_array h, n;
    long calls = mx_cuda_fused_calls();
    CHECK(mx_cuda_add_rms_norm(x, r, w, 1e-5f, &h, &n) == 0);
    CHECK(mx_cuda_fused_calls() == calls + 1);
    mx_array h_ref = mx_add(x, r);
    mx_array n_ref = mx_rms_norm(h_ref, w, 1e-5f);
    CHECK_MSG(compare(h, h_ref, dt, "h") == 0, "the residual sum must equal MLX's add");
    int d = compare(n, n_ref, dt, "norm");
    fprintf(stderr, "  add+rms_norm %d x %5d %-8s: equal to MLX but %d\n", rows, H, mx_dtype_name(dt), d);
    mx_scope_close(s);
}

static void test_add_rms_norm(void) {
    static const mx_dtype dts[] = {MX_BFLOAT16, MX_FLOAT16};
    for (int i = 0; i < 2; i++) {
        check_add_rms_norm(1, 3072, dts[i]);
        check_add_rms_norm(1, 896, dts[i]);  /* not a multiple of the block */
        check_add_rms_norm(3, 4096, dts[i]); /* rows */
        check_add_rms_norm(1, 40, dts[i]);   /* fewer values than threads */
    }
}

/* The llama-3 style table of periods per rotated pair (any positive values do). */
static mx_array periods(int half) {
    float *p = malloc((size_t)half * sizeof(float));
    for (int i = 0; i < half; i++) p[i] = powf(500000.0f, 2.0f * i / (2 * half)) * (i > half / 2 ? 8.0f : 1.0f);
    mx_array a = mx_from_data(p, (int[]){half}, 1, MX_FLOAT32);
    free(p);
    return a;
}

static void check_rope(int hq, int hkv, int d, int offset, int traditional, int with_freqs,
                       int with_bias, mx_dtype dt) {
    mx_scope *s = mx_scope_open();
    int total = (hq + 2 * hkv) * d;
    mx_array qkv = random_array((int[]){1, 1, total}, 3, dt, 4.0f);
    mx_array bias = with_bias ? random_array((int[]){total}, 1, dt, 1.0f) : NULL;
    mx_array freqs = with_freqs ? periods(d / 2) : NULL;
    float base = 10000.0f, scale = offset % 2 ? 0.25f : 1.0f;
    mx_array q, k, v;
    CHECK(mx_cuda_rope_qkv(qkv, bias, freqs, hq, hkv, d, traditional, base, scale, offset, &q, &k,
                           &v) == 0);
    /* MLX's way, as layers.c builds it */
    mx_array all = bias ? mx_add(qkv, bias) : qkv;
    mx_array heads = mx_reshape(all, (int[]){1, hq + 2 * hkv, 1, d}, 4);
    mx_array q_ref = mx_rope(mx_slice(heads, (int[]){0, 0}, (int[]){1, hq}, NULL, 2), d, traditional,
                             base, scale, offset, freqs);
    mx_array k_ref = mx_rope(mx_slice(heads, (int[]){0, hq}, (int[]){1, hq + hkv}, NULL, 2), d,
                             traditional, base, scale, offset, freqs);
    mx_array v_ref = mx_slice(heads, (int[]){0, hq + hkv}, (int[]){1, hq + 2 * hkv}, NULL, 2);
    CHECK(mx_ndim(q) == 4 && mx_dim(q, 1) == hq && mx_dim(q, 3) == d && mx_dim(k, 1) == hkv);
    int dq = compare(q, q_ref, dt, "q"), dk = compare(k, k_ref, dt, "k");
    CHECK_MSG(compare(v, v_ref, dt, "v") == 0, "v must equal MLX's");
    fprintf(stderr, "  rope hq %2d hkv %d d %3d offset %5d trad %d freqs %d bias %d %-8s: q %d, k %d differ\n",
            hq, hkv, d, offset, traditional, with_freqs, with_bias, mx_dtype_name(dt), dq, dk);
    mx_scope_close(s);
}

static void test_rope_qkv(void) {
    static const mx_dtype dts[] = {MX_BFLOAT16, MX_FLOAT16};
    static const int offsets[] = {0, 1, 37, 1000, 30000};
    for (int i = 0; i < 2; i++)
        for (int o = 0; o < 5; o++) {
            check_rope(24, 8, 128, offsets[o], 0, 0, 0, dts[i]); /* Llama 3.2 3B's heads */
            check_rope(14, 2, 64, offsets[o], 0, 0, 1, dts[i]);  /* Qwen2.5-0.5B: q|k|v bias */
            check_rope(8, 8, 64, offsets[o], 1, 0, 0, dts[i]);   /* traditional pairs */
            check_rope(24, 8, 128, offsets[o], 0, 1, 0, dts[i]); /* Llama 3 frequency table */
            check_rope(4, 2, 32, offsets[o], 1, 1, 1, dts[i]);
        }
}

/* Largest error against silu(g) * u in float64 from the same inputs, in
 * units of the output's rounding (half an ulp is the least possible). */
static double swiglu_err(mx_array out, mx_array gu, int F, mx_dtype dt) {
    float *o = malloc((size_t)F * sizeof(float)), *in = malloc((size_t)2 * F * sizeof(float));
    CHECK(mx_read(out, MX_FLOAT32, o, (size_t)F * sizeof(float)) == 0);
    CHECK(mx_read(gu, MX_FLOAT32, in, (size_t)2 * F * sizeof(float)) == 0);
    int mant = dt == MX_BFLOAT16 ? 8 : 11;
    double worst = 0;
    for (int j = 0; j < F; j++) {
        double g = in[j], u = in[F + j], ref = g / (1 + exp(-g)) * u;
        int e;
        frexp(ref, &e);
        double ulp = ldexp(1.0, e - mant);
        if (ref != 0) worst = fmax(worst, fabs(o[j] - ref) / ulp);
    }
    free(o);
    free(in);
    return worst;
}

static void test_swiglu(void) {
    static const mx_dtype dts[] = {MX_BFLOAT16, MX_FLOAT16};
    for (int i = 0; i < 2; i++) {
        static const int widths[] = {8192, 4864, 100};
        for (int j = 0; j < 3; j++) {
            mx_scope *s = mx_scope_open();
            int F = widths[j];
            mx_array gu = random_array((int[]){1, 1, 2 * F}, 3, dts[i], 6.0f);
            long calls = mx_cuda_fused_calls();
            mx_array ours = mx_cuda_swiglu_stacked(gu);
            CHECK(mx_cuda_fused_calls() == calls + 1);
            mx_set_cuda_fused(0);
            mx_array ref = mx_gated_stacked(gu, 0); /* MLX's compiled ops */
            mx_set_cuda_fused(1);
            double e_ours = swiglu_err(ours, gu, F, dts[i]), e_mlx = swiglu_err(ref, gu, F, dts[i]);
            /* rounded once: within half an ulp (and a hair for expf) */
            CHECK_MSG(e_ours <= 0.51, "swiglu: ours %.2f ulp from float64", e_ours);
            CHECK_MSG(e_ours <= e_mlx, "swiglu: ours %.2f ulp, MLX %.2f", e_ours, e_mlx);
            /* mx_gated_stacked takes our kernel for one row when on */
            calls = mx_cuda_fused_calls();
            mx_array routed = mx_gated_stacked(gu, 0);
            CHECK(mx_cuda_fused_calls() == calls + 1);
            CHECK(compare(routed, ours, dts[i], "routed") == 0);
            fprintf(stderr, "  swiglu F %5d %-8s: ours %.2f ulp from float64, MLX %.2f\n", F,
                    mx_dtype_name(dts[i]), e_ours, e_mlx);
            mx_scope_close(s);
        }
    }
}

/* Shapes that do not fit are refused with an error, not run. */
static void test_bad_input(void) {
    mx_scope *s = mx_scope_open();
    mx_array x = random_array((int[]){1, 1, 64}, 3, MX_BFLOAT16, 1.0f);
    mx_array w = random_array((int[]){32}, 1, MX_BFLOAT16, 1.0f);
    mx_array h, n, q, k, v;
    CHECK(mx_cuda_add_rms_norm(x, x, w, 1e-5f, &h, &n) != 0 && h == NULL && n == NULL);
    CHECK(mx_cuda_rope_qkv(x, NULL, NULL, 3, 1, 16, 0, 1e4f, 1.0f, 0, &q, &k, &v) != 0 && q == NULL);
    CHECK(mx_cuda_swiglu_stacked(mx_reshape(x, (int[]){1, 1, 1, 64}, 4)) != NULL);
    CHECK(mx_cuda_swiglu_stacked(mx_slice(x, (int[]){0, 0, 0}, (int[]){1, 1, 63}, NULL, 3)) == NULL);
    mx_clear_error();
    mx_scope_close(s);
}

int main(void) {
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        printf("skipped: no CUDA backend here\n");
        return 77;
    }
    CHECK_MSG(mx_cuda_fused_ready(MX_BFLOAT16) == 1, "not ready: %s", mx_cuda_fused_status());
    RUN(test_add_rms_norm);
    RUN(test_rope_qkv);
    RUN(test_swiglu);
    RUN(test_bad_input);
    CHECK_STR(mx_cuda_fused_status(), "in use");
    return check_summary();
}
