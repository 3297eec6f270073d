/* test_mx.c - the MLX shim (src/mlx/mx.h) against values worked out by hand
 * or by naive C loops: lifetimes, errors, ops, fused kernels, quantization,
 * random sampling and file I/O. */
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "kernels/half.h"
#include "kernels/mlx_math.h"
#include "kernels/qmm.h"
#include "mlx/mx.h"

/* Deterministic values in [-1, 1) so failures reproduce. */
static uint32_t rng_state = 12345;
static float rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}
static void fill(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = rnd();
}

static mx_array f32(const float *v, const int *shape, int ndim) {
    return mx_from_data(v, shape, ndim, MX_FLOAT32);
}

/* Reads a whole array as float32 into out (n elements); 0 on success. */
static int readf(mx_array a, float *out, size_t n) {
    if (!a) return -1;
    if (mx_size(a) != n) {
        fprintf(stderr, "  size %zu, expected %zu\n", mx_size(a), n);
        return -1;
    }
    return mx_read(a, MX_FLOAT32, out, n * sizeof(float));
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

static void test_scope_memory(void) {
    mx_clear_cache();
    size_t base = mx_active_memory();
    int sh[] = {256, 256};

    mx_scope *s = mx_scope_open();
    mx_array a = mx_full(sh, 2, 2.0, MX_FLOAT32);
    mx_array b = mx_exp(mx_add(a, a));
    mx_array c = mx_matmul(b, a);
    mx_array outs[] = {a, b, c};
    CHECK(mx_eval(outs, 3) == 0);
    CHECK(mx_active_memory() >= base + 3 * 256 * 256 * 4);
    mx_array early = mx_negative(c); /* freed while its scope is open */
    CHECK(mx_eval(&early, 1) == 0);
    mx_free(early);
    mx_scope_close(s);
    mx_settle(); /* on a GPU MLX releases buffers on a worker thread */
    CHECK_EQ_INT(mx_active_memory(), base);

    /* Kept arrays outlive the scope until mx_free; nested scopes nest. */
    s = mx_scope_open();
    mx_array kept = mx_keep(mx_full(sh, 2, 1.0, MX_FLOAT32));
    mx_scope *inner = mx_scope_open();
    mx_array tmp = mx_add(kept, kept);
    CHECK(mx_eval(&tmp, 1) == 0);
    mx_scope_close(inner);
    mx_array ref = mx_keep(mx_copy_ref(kept));
    CHECK(mx_eval(&kept, 1) == 0);
    mx_scope_close(s);
    CHECK(mx_active_memory() >= base + 256 * 256 * 4);
    double v = 0;
    mx_array one = mx_slice(ref, (int[]){0, 0}, (int[]){1, 1}, NULL, 2); /* no scope: ours */
    CHECK(mx_item_float(one, &v) == 0);
    CHECK_NEAR(v, 1.0, 0);
    mx_free(one);
    mx_free(kept);
    mx_free(ref);
    mx_settle();
    CHECK_EQ_INT(mx_active_memory(), base);
    mx_free(NULL);
    CHECK(mx_keep(NULL) == NULL);
}

static void test_errors(void) {
    mx_scope *s = mx_scope_open();
    mx_clear_error();
    CHECK_STR(mx_error(), "");
    float v[6] = {0};
    mx_array x = f32(v, (int[]){2, 3}, 2);
    mx_array bad = mx_reshape(x, (int[]){4, 4}, 2);
    CHECK(bad == NULL);
    CHECK(strlen(mx_error()) > 0);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", mx_error());
    /* A chain after the failure stays NULL and keeps the first message. */
    mx_array chain = mx_sum(mx_exp(mx_add(bad, x)), 0, 0);
    CHECK(chain == NULL);
    CHECK(mx_eval(&chain, 1) == -1);
    CHECK(mx_read(chain, MX_FLOAT32, v, sizeof v) == -1);
    CHECK_STR(mx_error(), saved);

    mx_clear_error();
    CHECK(mx_add(x, f32(v, (int[]){4}, 1)) == NULL); /* shapes do not broadcast */
    CHECK(strlen(mx_error()) > 0);
    float small[2];
    CHECK(mx_read(x, MX_FLOAT32, small, sizeof small) == -1);
    CHECK(mx_dim(x, 5) == -1);
    CHECK_EQ_INT(mx_dim(x, -1), 3);
    CHECK(mx_astype(x, MX_OTHER) == NULL);
    CHECK(mx_transpose(x, (int[]){0, 0}, 2) == NULL);
    mx_scope_close(s);
}

static void test_info_and_device(void) {
    CHECK(strlen(mx_version()) > 0);
    CHECK_STR(mx_dtype_name(MX_BFLOAT16), "bfloat16");
    CHECK_EQ_INT(mx_dtype_size(MX_INT64), 8);
    CHECK_EQ_INT(mx_dtype_size(MX_FLOAT16), 2);
    if (!mx_gpu_available()) {
        mx_clear_error();
        CHECK(mx_set_device(1) == -1);
        CHECK(strstr(mx_error(), "GPU") != NULL);
        CHECK_EQ_INT(mx_device_is_gpu(), 0);
    }
    CHECK(mx_set_device(0) == 0);
    CHECK_EQ_INT(mx_device_is_gpu(), 0);
    mx_set_wired_limit(0); /* must not throw on the CPU */
    size_t old = mx_set_cache_limit(1 << 20);
    mx_set_cache_limit(old);
    mx_reset_peak_memory();
    (void)mx_peak_memory();
    (void)mx_cache_memory();
}

static void test_creation_and_dtypes(void) {
    mx_scope *s = mx_scope_open();
    mx_array a = mx_arange(2, 11, 3, MX_INT32); /* 2 5 8 */
    CHECK_EQ_INT(mx_ndim(a), 1);
    CHECK_EQ_INT(mx_dim(a, 0), 3);
    CHECK_EQ_INT(mx_get_dtype(a), MX_INT32);
    int32_t iv[3];
    CHECK(mx_read(a, MX_INT32, iv, sizeof iv) == 0);
    CHECK(iv[0] == 2 && iv[1] == 5 && iv[2] == 8);

    int64_t big = 0;
    CHECK(mx_item_int(mx_scalar(123456789.0, MX_INT64), &big) == 0);
    CHECK_EQ_INT(big, 123456789);
    double d = 0;
    CHECK(mx_item_float(mx_scalar(1.5, MX_BFLOAT16), &d) == 0);
    CHECK_NEAR(d, 1.5, 0);
    CHECK(mx_item_float(a, &d) == -1); /* not a scalar */

    /* bfloat16 and float16 bit patterns come out as MLX converts them. */
    float src[2] = {1.5f, -2.0f};
    mx_array x = f32(src, (int[]){2}, 1);
    uint16_t bits[2];
    CHECK(mx_read(x, MX_BFLOAT16, bits, sizeof bits) == 0);
    CHECK_EQ_INT(bits[0], 0x3FC0);
    CHECK_EQ_INT(bits[1], 0xC000);
    CHECK(mx_read(x, MX_FLOAT16, bits, sizeof bits) == 0);
    CHECK_EQ_INT(bits[0], 0x3E00);
    CHECK_EQ_INT(bits[1], 0xC000);
    mx_array h = mx_from_data(bits, (int[]){2}, 1, MX_FLOAT16);
    CHECK_EQ_INT(mx_get_dtype(h), MX_FLOAT16);
    CHECK_EQ_INT(mx_nbytes(h), 4);
    float back[2];
    CHECK(readf(h, back, 2) == 0);
    CHECK_NEAR(back[0], 1.5, 0);
    CHECK_NEAR(back[1], -2.0, 0);

    mx_array z = mx_zeros((int[]){2, 2}, 2, MX_UINT8);
    uint8_t zb[4] = {9, 9, 9, 9};
    CHECK(mx_read(z, MX_UINT8, zb, sizeof zb) == 0);
    CHECK(zb[0] == 0 && zb[3] == 0);
    bool bv[3] = {true, false, true};
    mx_array b = mx_from_data(bv, (int[]){3}, 1, MX_BOOL);
    int32_t bi[3];
    CHECK(mx_read(b, MX_INT32, bi, sizeof bi) == 0);
    CHECK(bi[0] == 1 && bi[1] == 0 && bi[2] == 1);
    mx_array f = mx_full((int[]){3}, 1, 7.0, MX_INT64);
    int64_t fv[3];
    CHECK(mx_read(f, MX_INT64, fv, sizeof fv) == 0);
    CHECK(fv[0] == 7 && fv[2] == 7);
    mx_array u = mx_astype(mx_arange(0, 4, 1, MX_INT32), MX_UINT32);
    CHECK_EQ_INT(mx_get_dtype(u), MX_UINT32);
    mx_scope_close(s);
}

static void test_elementwise(void) {
    mx_scope *s = mx_scope_open();
    float av[4] = {1, 4, 9, 16}, bv[4] = {2, -1, 3, 0.5f};
    int sh[] = {4};
    mx_array a = f32(av, sh, 1), b = f32(bv, sh, 1);
    float r[4];
#define EXPECT4(expr, e0, e1, e2, e3)                                     \
    do {                                                                  \
        CHECK(readf((expr), r, 4) == 0);                                  \
        float e_[4] = {(e0), (e1), (e2), (e3)};                           \
        for (int i_ = 0; i_ < 4; i_++) CHECK_NEAR(r[i_], e_[i_], 1e-5 * (1 + fabsf(e_[i_]))); \
    } while (0)
    EXPECT4(mx_add(a, b), 3, 3, 12, 16.5f);
    EXPECT4(mx_subtract(a, b), -1, 5, 6, 15.5f);
    EXPECT4(mx_multiply(a, b), 2, -4, 27, 8);
    EXPECT4(mx_divide(a, b), 0.5f, -4, 3, 32);
    EXPECT4(mx_maximum(a, b), 2, 4, 9, 16);
    EXPECT4(mx_minimum(a, b), 1, -1, 3, 0.5f);
    EXPECT4(mx_power(a, b), 1, 0.25f, 729, 4);
    EXPECT4(mx_negative(b), -2, 1, -3, -0.5f);
    EXPECT4(mx_sqrt(a), 1, 2, 3, 4);
    EXPECT4(mx_rsqrt(a), 1, 0.5f, 1.0f / 3, 0.25f);
    EXPECT4(mx_square(b), 4, 1, 9, 0.25f);
    EXPECT4(mx_abs(b), 2, 1, 3, 0.5f);
    EXPECT4(mx_exp(b), expf(2), expf(-1), expf(3), expf(0.5f));
    EXPECT4(mx_log(a), 0, logf(4), logf(9), logf(16));
    EXPECT4(mx_tanh(b), tanhf(2), tanhf(-1), tanhf(3), tanhf(0.5f));
    EXPECT4(mx_sigmoid(b), 1 / (1 + expf(-2)), 1 / (1 + expf(1)), 1 / (1 + expf(-3)),
            1 / (1 + expf(-0.5f)));
    EXPECT4(mx_erf(b), erff(2), erff(-1), erff(3), erff(0.5f));
    EXPECT4(mx_scale(a, 0.5), 0.5f, 2, 4.5f, 8);
    EXPECT4(mx_greater(a, b), 0, 1, 1, 1);
    EXPECT4(mx_greater_equal(a, mx_scalar(4, MX_FLOAT32)), 0, 1, 1, 1);
    EXPECT4(mx_less(a, b), 1, 0, 0, 0);
    EXPECT4(mx_less_equal(a, mx_scalar(4, MX_FLOAT32)), 1, 1, 0, 0);
    EXPECT4(mx_equal(a, mx_scalar(9, MX_FLOAT32)), 0, 0, 1, 0);
    mx_array gt = mx_greater(a, b), big = mx_greater(a, mx_scalar(5, MX_FLOAT32));
    EXPECT4(mx_logical_and(gt, big), 0, 0, 1, 1);
    EXPECT4(mx_logical_not(gt), 1, 0, 0, 0);
    EXPECT4(mx_where(gt, a, b), 2, 4, 9, 16);
    /* mx_scale keeps the dtype of x. */
    mx_array hb = mx_scale(mx_astype(a, MX_BFLOAT16), 0.25);
    CHECK_EQ_INT(mx_get_dtype(hb), MX_BFLOAT16);
    EXPECT4(hb, 0.25f, 1, 2.25f, 4);
#undef EXPECT4
    mx_scope_close(s);
}

static void test_reductions(void) {
    mx_scope *s = mx_scope_open();
    float v[6] = {3, -1, 2, 0.5f, 5, -4};
    mx_array x = f32(v, (int[]){2, 3}, 2);
    float r[6];
    CHECK(readf(mx_sum(x, 1, 0), r, 2) == 0);
    CHECK_NEAR(r[0], 4, 1e-6);
    CHECK_NEAR(r[1], 1.5, 1e-6);
    mx_array m = mx_mean(x, 0, 1);
    CHECK_EQ_INT(mx_ndim(m), 2);
    CHECK(readf(m, r, 3) == 0);
    CHECK_NEAR(r[0], 1.75, 1e-6);
    CHECK_NEAR(r[1], 2, 1e-6);
    CHECK_NEAR(r[2], -1, 1e-6);
    CHECK(readf(mx_max(x, -1, 0), r, 2) == 0);
    CHECK(r[0] == 3 && r[1] == 5);
    CHECK(readf(mx_min(x, -1, 0), r, 2) == 0);
    CHECK(r[0] == -1 && r[1] == -4);
    int32_t idx[3];
    mx_array am = mx_argmax(x, 1, 0);
    CHECK(mx_read(am, MX_INT32, idx, 2 * sizeof(int32_t)) == 0);
    CHECK(idx[0] == 0 && idx[1] == 1);
    CHECK(readf(mx_logsumexp(x, 1, 0), r, 2) == 0);
    CHECK_NEAR(r[0], logf(expf(3) + expf(-1) + expf(2)), 1e-5);
    CHECK_NEAR(r[1], logf(expf(0.5f) + expf(5) + expf(-4)), 1e-5);
    for (int precise = 0; precise < 2; precise++) {
        CHECK(readf(mx_softmax(x, 1, precise), r, 6) == 0);
        for (int i = 0; i < 2; i++) {
            float z = 0;
            for (int j = 0; j < 3; j++) z += expf(v[i * 3 + j]);
            for (int j = 0; j < 3; j++) CHECK_NEAR(r[i * 3 + j], expf(v[i * 3 + j]) / z, 1e-6);
        }
    }
    CHECK(readf(mx_cumsum(x, 1, 0, 1), r, 6) == 0);
    CHECK(r[0] == 3 && r[1] == 2 && r[2] == 4 && r[5] == 1.5f);
    CHECK(readf(mx_cumsum(x, 1, 1, 0), r, 6) == 0); /* reverse, exclusive */
    CHECK(r[0] == 1 && r[1] == 2 && r[2] == 0);
    CHECK(readf(mx_sort(x, 1), r, 6) == 0);
    CHECK(r[0] == -1 && r[1] == 2 && r[2] == 3 && r[3] == -4 && r[5] == 5);
    int32_t as[6];
    CHECK(mx_read(mx_argsort(x, 1), MX_INT32, as, sizeof as) == 0);
    CHECK(as[0] == 1 && as[1] == 2 && as[2] == 0 && as[3] == 2 && as[4] == 0 && as[5] == 1);
    /* argpartition: the kth index holds the kth smallest, smaller ones before it. */
    float pv[6] = {9, 1, 8, 2, 7, 3};
    CHECK(mx_read(mx_argpartition(f32(pv, (int[]){6}, 1), 2, 0), MX_INT32, as, sizeof as) == 0);
    CHECK(pv[as[2]] == 3);
    CHECK(pv[as[0]] < 3 && pv[as[1]] < 3);
    mx_scope_close(s);
}

static void test_layout(void) {
    mx_scope *s = mx_scope_open();
    mx_array x = mx_reshape(mx_arange(0, 12, 1, MX_FLOAT32), (int[]){3, 4}, 2);
    float r[12];
    /* Rows 1..2, columns 1..end (stop clamped from 100). */
    mx_array sl = mx_slice(x, (int[]){1, 1}, (int[]){3, 100}, NULL, 2);
    CHECK_EQ_INT(mx_dim(sl, 0), 2);
    CHECK_EQ_INT(mx_dim(sl, 1), 3);
    CHECK(readf(sl, r, 6) == 0);
    CHECK(r[0] == 5 && r[1] == 6 && r[2] == 7 && r[3] == 9 && r[5] == 11);
    /* First axis only, stride 2: rows 0 and 2 whole. */
    mx_array st = mx_slice(x, (int[]){0}, (int[]){3}, (int[]){2}, 1);
    CHECK(readf(st, r, 8) == 0);
    CHECK(r[0] == 0 && r[3] == 3 && r[4] == 8 && r[7] == 11);
    CHECK(mx_slice(x, (int[]){0, 0, 0}, (int[]){1, 1, 1}, NULL, 3) == NULL);

    float ones[4] = {-1, -2, -3, -4};
    mx_array up = mx_slice_update(x, f32(ones, (int[]){2, 2}, 2), (int[]){1, 2}, (int[]){3, 4}, 2);
    CHECK(readf(up, r, 12) == 0);
    CHECK(r[5] == 5 && r[6] == -1 && r[7] == -2 && r[10] == -3 && r[11] == -4 && r[0] == 0);
    /* The first axes only: row 0 replaced whole. */
    float row[4] = {7, 7, 7, 7};
    up = mx_slice_update(x, f32(row, (int[]){1, 4}, 2), (int[]){0}, (int[]){1}, 1);
    CHECK(readf(up, r, 12) == 0);
    CHECK(r[0] == 7 && r[3] == 7 && r[4] == 4);

    mx_array parts[2] = {x, mx_scale(x, 10)};
    mx_array c = mx_concat(parts, 2, 1);
    CHECK_EQ_INT(mx_dim(c, 1), 8);
    float cr[24];
    CHECK(readf(c, cr, 24) == 0);
    CHECK(cr[3] == 3 && cr[4] == 0 && cr[5] == 10 && cr[8] == 4 && cr[12] == 40);

    int32_t ids[3] = {2, 0, 2};
    mx_array ix = mx_from_data(ids, (int[]){3}, 1, MX_INT32);
    mx_array t = mx_take(x, ix, 0);
    CHECK(readf(t, r, 12) == 0);
    CHECK(r[0] == 8 && r[4] == 0 && r[11] == 11);
    int32_t col[3] = {3, 0, 1};
    mx_array ci = mx_from_data(col, (int[]){3, 1}, 2, MX_INT32);
    CHECK(readf(mx_take_along_axis(x, ci, 1), r, 3) == 0);
    CHECK(r[0] == 3 && r[1] == 4 && r[2] == 9);
    mx_array put = mx_put_along_axis(x, ci, mx_full((int[]){3, 1}, 2, -5, MX_FLOAT32), 1);
    CHECK(readf(put, r, 12) == 0);
    CHECK(r[3] == -5 && r[4] == -5 && r[9] == -5 && r[0] == 0);

    mx_array tr = mx_transpose(x, (int[]){1, 0}, 2);
    CHECK(readf(tr, r, 12) == 0);
    CHECK(r[1] == 4 && r[3] == 1);
    CHECK(readf(mx_contiguous(mx_swapaxes(x, 0, 1)), r, 12) == 0);
    CHECK(r[1] == 4 && r[3] == 1);
    mx_array e = mx_expand_dims(x, 0);
    CHECK_EQ_INT(mx_ndim(e), 3);
    CHECK_EQ_INT(mx_ndim(mx_squeeze(e, 0)), 2);
    mx_array rep = mx_repeat(mx_arange(0, 2, 1, MX_FLOAT32), 2, 0);
    CHECK(readf(rep, r, 4) == 0);
    CHECK(r[0] == 0 && r[1] == 0 && r[2] == 1 && r[3] == 1);
    mx_array bc = mx_broadcast_to(mx_arange(0, 3, 1, MX_FLOAT32), (int[]){2, 3}, 2);
    CHECK(readf(bc, r, 6) == 0);
    CHECK(r[3] == 0 && r[5] == 2);
    mx_scope_close(s);
}

static void test_rms_norm(void) {
    mx_scope *s = mx_scope_open();
    enum { R = 3, D = 16 };
    float x[R * D], w[D], got[R * D], want[R * D];
    fill(x, R * D);
    fill(w, D);
    const float eps = 1e-5f;
    for (int i = 0; i < R; i++) {
        float ss = 0;
        for (int j = 0; j < D; j++) ss += x[i * D + j] * x[i * D + j];
        float inv = 1.0f / sqrtf(ss / D + eps);
        for (int j = 0; j < D; j++) want[i * D + j] = x[i * D + j] * inv * w[j];
    }
    mx_array xa = f32(x, (int[]){R, D}, 2);
    CHECK(readf(mx_rms_norm(xa, f32(w, (int[]){D}, 1), eps), got, R * D) == 0);
    CHECK_NEAR(max_abs_diff(got, want, R * D), 0, 1e-5);
    /* Without a weight: the plain normalization. */
    CHECK(readf(mx_rms_norm(xa, NULL, eps), got, R * D) == 0);
    CHECK_NEAR(got[1] * w[1], want[1], 1e-5);

    /* layer_norm against its formula. */
    float b[D];
    fill(b, D);
    for (int i = 0; i < R; i++) {
        float mu = 0, var = 0;
        for (int j = 0; j < D; j++) mu += x[i * D + j] / D;
        for (int j = 0; j < D; j++) var += (x[i * D + j] - mu) * (x[i * D + j] - mu) / D;
        for (int j = 0; j < D; j++)
            want[i * D + j] = (x[i * D + j] - mu) / sqrtf(var + eps) * w[j] + b[j];
    }
    CHECK(readf(mx_layer_norm(xa, f32(w, (int[]){D}, 1), f32(b, (int[]){D}, 1), eps), got,
                R * D) == 0);
    CHECK_NEAR(max_abs_diff(got, want, R * D), 0, 1e-4);
    mx_scope_close(s);
}

/* Rotate-half RoPE on [B*H, T, D] (the non-traditional layout), rotating
 * the first `dims` features, position offset+t; inv_freq given per pair. */
static void naive_rope(const float *x, float *out, int bh, int t, int d, int dims, int offset,
                       const float *inv_freq, int traditional) {
    int half = dims / 2;
    for (int b = 0; b < bh; b++)
        for (int p = 0; p < t; p++) {
            const float *xi = x + ((size_t)b * t + p) * d;
            float *oi = out + ((size_t)b * t + p) * d;
            for (int j = 0; j < d; j++) oi[j] = xi[j];
            for (int i = 0; i < half; i++) {
                float ang = (float)(offset + p) * inv_freq[i];
                float c = cosf(ang), sn = sinf(ang);
                int i1 = traditional ? 2 * i : i, i2 = traditional ? 2 * i + 1 : i + half;
                oi[i1] = xi[i1] * c - xi[i2] * sn;
                oi[i2] = xi[i2] * c + xi[i1] * sn;
            }
        }
}

static void test_rope(void) {
    mx_scope *s = mx_scope_open();
    enum { B = 1, H = 2, T = 3, D = 8 };
    const float base = 10000.0f;
    float x[B * H * T * D], got[B * H * T * D], want[B * H * T * D], inv[D / 2];
    fill(x, B * H * T * D);
    mx_array xa = f32(x, (int[]){B, H, T, D}, 4);
    for (int trad = 0; trad < 2; trad++) {
        for (int i = 0; i < D / 2; i++) inv[i] = powf(base, -2.0f * i / D);
        naive_rope(x, want, B * H, T, D, D, 5, inv, trad);
        CHECK(readf(mx_rope(xa, D, trad, base, 1.0f, 5, NULL), got, B * H * T * D) == 0);
        CHECK_MSG(max_abs_diff(got, want, B * H * T * D) < 1e-4, "traditional=%d", trad);
    }
    /* Partial rotation: only the first 4 features turn, the rest pass. */
    for (int i = 0; i < 2; i++) inv[i] = powf(base, -2.0f * i / 4);
    naive_rope(x, want, B * H, T, D, 4, 0, inv, 0);
    CHECK(readf(mx_rope(xa, 4, 0, base, 1.0f, 0, NULL), got, B * H * T * D) == 0);
    CHECK_NEAR(max_abs_diff(got, want, B * H * T * D), 0, 1e-4);
    /* freqs (MLX takes periods: angle = position / freqs[i]) replace base;
     * scale multiplies the position. */
    float periods[D / 2];
    for (int i = 0; i < D / 2; i++) {
        periods[i] = powf(500.0f, 2.0f * i / D);
        inv[i] = 0.5f / periods[i];
    }
    naive_rope(x, want, B * H, T, D, D, 2, inv, 0);
    CHECK(readf(mx_rope(xa, D, 0, base, 0.5f, 2, f32(periods, (int[]){D / 2}, 1)), got,
                B * H * T * D) == 0);
    CHECK_NEAR(max_abs_diff(got, want, B * H * T * D), 0, 1e-4);
    mx_scope_close(s);
}

/* Attention on [1, H, T, D] with kv heads shared by hq/hkv query heads;
 * causal aligns the queries to the end of the keys; mask is additive
 * [tq, tk] or NULL. */
static void naive_sdpa(const float *q, const float *k, const float *v, float *out, int hq, int hkv,
                       int tq, int tk, int d, float scale, int causal, const float *mask) {
    int group = hq / hkv;
    float sc[64];
    for (int h = 0; h < hq; h++)
        for (int i = 0; i < tq; i++) {
            const float *qi = q + ((size_t)h * tq + i) * d;
            int kh = h / group;
            float mx = -INFINITY;
            for (int j = 0; j < tk; j++) {
                const float *kj = k + ((size_t)kh * tk + j) * d;
                float dot = 0;
                for (int c = 0; c < d; c++) dot += qi[c] * kj[c];
                sc[j] = dot * scale + (mask ? mask[i * tk + j] : 0);
                if (causal && j > i + (tk - tq)) sc[j] = -INFINITY;
                if (sc[j] > mx) mx = sc[j];
            }
            float z = 0;
            for (int j = 0; j < tk; j++) z += (sc[j] = expf(sc[j] - mx));
            float *oi = out + ((size_t)h * tq + i) * d;
            for (int c = 0; c < d; c++) {
                float acc = 0;
                for (int j = 0; j < tk; j++) acc += sc[j] / z * v[((size_t)kh * tk + j) * d + c];
                oi[c] = acc;
            }
        }
}

static void test_sdpa(void) {
    mx_scope *s = mx_scope_open();
    enum { HQ = 4, HKV = 2, TQ = 3, TK = 5, D = 8 };
    float q[HQ * TQ * D], k[HKV * TK * D], v[HKV * TK * D], m[TQ * TK];
    float got[HQ * TQ * D], want[HQ * TQ * D];
    fill(q, sizeof q / sizeof *q);
    fill(k, sizeof k / sizeof *k);
    fill(v, sizeof v / sizeof *v);
    for (int i = 0; i < TQ * TK; i++) m[i] = (i % 3 == 1) ? -1e9f : 0.25f * (float)(i % 4);
    const float scale = 1.0f / sqrtf(D);
    mx_array qa = f32(q, (int[]){1, HQ, TQ, D}, 4);
    mx_array ka = f32(k, (int[]){1, HKV, TK, D}, 4);
    mx_array va = f32(v, (int[]){1, HKV, TK, D}, 4);
    const size_t n = HQ * TQ * D;

    naive_sdpa(q, k, v, want, HQ, HKV, TQ, TK, D, scale, 1, NULL);
    CHECK(readf(mx_sdpa(qa, ka, va, scale, 1, NULL), got, n) == 0);
    CHECK_MSG(max_abs_diff(got, want, n) < 1e-5, "causal GQA");

    naive_sdpa(q, k, v, want, HQ, HKV, TQ, TK, D, scale, 0, NULL);
    CHECK(readf(mx_sdpa(qa, ka, va, scale, 0, NULL), got, n) == 0);
    CHECK_MSG(max_abs_diff(got, want, n) < 1e-5, "no mask");

    naive_sdpa(q, k, v, want, HQ, HKV, TQ, TK, D, scale, 0, m);
    CHECK(readf(mx_sdpa(qa, ka, va, scale, 0, f32(m, (int[]){TQ, TK}, 2)), got, n) == 0);
    CHECK_MSG(max_abs_diff(got, want, n) < 1e-5, "additive mask");

    /* A boolean keep-mask equals the causal mode. */
    bool keep[TQ * TK];
    for (int i = 0; i < TQ; i++)
        for (int j = 0; j < TK; j++) keep[i * TK + j] = j <= i + (TK - TQ);
    naive_sdpa(q, k, v, want, HQ, HKV, TQ, TK, D, scale, 1, NULL);
    mx_array bm = mx_from_data(keep, (int[]){TQ, TK}, 2, MX_BOOL);
    CHECK(readf(mx_sdpa(qa, ka, va, scale, 0, bm), got, n) == 0);
    CHECK_MSG(max_abs_diff(got, want, n) < 1e-5, "boolean mask");
    mx_scope_close(s);
}

/* act(g) * u in double: SiLU, or GELU's tanh approximation. */
static double gated_ref(double g, double u, int gelu) {
    if (!gelu) return g / (1.0 + exp(-g)) * u;
    return 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
}

/* gm_mlx_sinf/cosf (the fused decode step's RoPE angles) and gm_mlx_expf
 * (the gated activation's sigmoid) against MLX's own ops on the CPU, bit
 * for bit. sin and cos: RoPE's angles (positions up to
 * 8191 times Llama/Qwen-style frequencies), both signs, the quadrant
 * boundaries, tiny values, and arguments past 2^23 that MLX hands to libm. */
static void test_mlx_math(void) {
    enum { N = 8192 * 4 + 64 };
    static float x[N], ms[N], mc[N];
    int n = 0;
    for (int p = 0; p < 8192; p++) {
        x[n++] = (float)p * 1.0f;             /* inv_freq 1 */
        x[n++] = (float)p * 0.1778279410f;    /* 10000^(-3/16) */
        x[n++] = -(float)p * 0.0131352139f;   /* a later frequency, negative */
        x[n++] = (float)p * 2.31012970e-5f;   /* the slowest of base 500000 */
    }
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-20f, 0.78539816f, 1.57079633f, 2.35619449f, 3.14159265f,
                             -3.14159265f, 4.71238898f, 6.28318531f, 100.0f, 1e5f, -7e6f, 8388607.0f, 8388609.0f,
                             1e9f, -3e10f, 123456.789f, 0.5f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) x[n++] = special[i];
    mx_scope *scope = mx_scope_open();
    mx_array a = f32(x, (int[]){n}, 1);
    CHECK(readf(mx_sin(a), ms, (size_t)n) == 0);
    CHECK(readf(mx_cos(a), mc, (size_t)n) == 0);
    mx_scope_close(scope);
    int bad_s = 0, bad_c = 0, libm_differs = 0;
    for (int i = 0; i < n; i++) {
        float s = gm_mlx_sinf(x[i]), c = gm_mlx_cosf(x[i]);
        if (memcmp(&s, &ms[i], 4)) bad_s++;
        if (memcmp(&c, &mc[i], 4)) bad_c++;
        if (cosf(x[i]) != mc[i]) libm_differs++;
    }
    CHECK_MSG(bad_s == 0 && bad_c == 0, "%d sines and %d cosines of %d differ from MLX's", bad_s, bad_c, n);
    /* Why this exists: libm is not MLX (the check above is not vacuous). */
    CHECK_MSG(libm_differs > n / 50, "libm's cosf differs from MLX's on only %d of %d", libm_differs, n);

    /* exp: a sweep of [-90, 90] (both cut-offs), tiny values, infinities. */
    enum { E = 36000 + 8 };
    static float ex[E], me[E];
    int ne = 0;
    for (int i = 0; i < 36000; i++) ex[ne++] = -90.0f + (float)i * 0.005f + 1e-4f * (float)(i % 7);
    const float es[] = {0.0f, -0.0f, 88.0f, -88.0f, 88.000008f, -88.000008f, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof es / sizeof *es; i++) ex[ne++] = es[i];
    scope = mx_scope_open();
    CHECK(readf(mx_exp(f32(ex, (int[]){ne}, 1)), me, (size_t)ne) == 0);
    mx_scope_close(scope);
    int bad_e = 0, libm_e = 0;
    for (int i = 0; i < ne; i++) {
        float e = gm_mlx_expf(ex[i]);
        if (memcmp(&e, &me[i], 4)) bad_e++;
        if (expf(ex[i]) != me[i]) libm_e++;
    }
    CHECK_MSG(bad_e == 0, "%d of %d exponentials differ from MLX's", bad_e, ne);
    CHECK_MSG(libm_e > ne / 50, "libm's expf differs from MLX's on only %d of %d", libm_e, ne);
}

/* Elements of a and b whose bits differ (n of them), a NaN matching any
 * NaN: x86 hands on the first operand's NaN when both are NaN, and which
 * operand of a product is first is each compiler's choice (MLX's, ours),
 * so the sign and payload of a NaN are not part of the contract. Prints
 * the first few. */
static int bits_differ(const float *a, const float *b, size_t n, const char *what) {
    int d = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) && !(isnan(a[i]) && isnan(b[i])) && d++ < 3)
            fprintf(stderr, "  %s [%zu]: %a (0x%08x) vs MLX's %a (0x%08x)\n", what, i, a[i], gm_f32_bits(a[i]),
                    b[i], gm_f32_bits(b[i]));
    return d;
}

/* mx_gated_stacked(x, gelu) by MLX's ops into want, then by our kernel on
 * the ISA this machine picks (AVX2 on x86-64, the scalar code elsewhere)
 * and on the scalar one, each checked against want bit for bit. */
static void gated_vs_mlx(mx_array x, int gelu, float *want, float *got, size_t n, const char *what) {
    int saved = mx_cpu_kernels();
    const char *isa = gm_qmm_isa();
    mx_set_cpu_kernels(0);
    CHECK(readf(mx_gated_stacked(x, gelu), want, n) == 0);
    mx_set_cpu_kernels(1);
    const char *isas[] = {isa, "scalar"};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(gm_qmm_set_isa(isas[k]), 0);
        CHECK(readf(mx_gated_stacked(x, gelu), got, n) == 0);
        char tag[96];
        snprintf(tag, sizeof tag, "%s gelu %d dtype %d isa %s", what, gelu, (int)mx_get_dtype(x), isas[k]);
        int d = bits_differ(got, want, n, tag);
        CHECK_MSG(d == 0, "%s: %d of %zu differ from MLX's ops", tag, d, n);
    }
    gm_qmm_set_isa(isa);
    mx_set_cpu_kernels(saved);
}

/* mx_gated_stacked: MLX's ops against the double-precision formula, and our
 * CPU kernel (one pass over [.., 2*ff]; its vector and scalar code) against
 * MLX's ops bit for bit, in every float dtype: random values over 200 rows
 * of ff = 1100 (several pool tasks, a chunk and a tail that is not a
 * multiple of 8), then special values (signed zeros, subnormals, the exp
 * cut-offs at +-88, float16's overflow, infinities, NaN) and a sweep of
 * [-100, 100] in rows of 37. A non-contiguous input; an odd last dimension
 * is refused. */
static void test_gated(void) {
    mx_scope *s = mx_scope_open();
    static const mx_dtype dts[] = {MX_FLOAT32, MX_FLOAT16, MX_BFLOAT16};
    /* relative error of one rounding of the dtype, a few roundings deep */
    static const double tol[] = {4e-6, 4e-3, 3e-2};
    enum { ROWS = 200, FF = 1100 }; /* ff past one 1024-element chunk */
    static float gu[ROWS * 2 * FF], got[ROWS * FF], ref[ROWS * FF], want[ROWS * FF];
    for (size_t i = 0; i < (size_t)ROWS * 2 * FF; i++) gu[i] = 4.0f * rnd();
    for (int di = 0; di < 3; di++)
        for (int gelu = 0; gelu < 2; gelu++) {
            mx_array x = mx_astype(f32(gu, (int[]){2, ROWS / 2, 2 * FF}, 3), dts[di]);
            static float xr[ROWS * 2 * FF]; /* the inputs as the dtype holds them */
            CHECK(readf(x, xr, (size_t)ROWS * 2 * FF) == 0);
            for (int r = 0; r < ROWS; r++)
                for (int i = 0; i < FF; i++)
                    ref[r * FF + i] = (float)gated_ref(xr[r * 2 * FF + i], xr[r * 2 * FF + FF + i], gelu);
            gated_vs_mlx(x, gelu, want, got, (size_t)ROWS * FF, "random");
            int bad = 0;
            for (int r = 0; r < ROWS; r++)
                for (int i = 0; i < FF; i++) {
                    /* GELU's 1 + tanh cancels for negative g: one rounding
                     * of it is relative to g*u, not to the result. */
                    double gu_mag = fabs((double)xr[r * 2 * FF + i] * xr[r * 2 * FF + FF + i]);
                    double e = fabs(want[r * FF + i] - ref[r * FF + i]);
                    if (!(e <= tol[di] * (fabs(ref[r * FF + i]) + (gelu ? 0.5 * gu_mag : 0) + 1e-2))) bad++;
                }
            CHECK_MSG(bad == 0, "dtype %d gelu %d: MLX's ops %d off the formula", di, gelu, bad);
        }

    static const float sg[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f, 1.17549435e-38f, -1.17549435e-38f,
                               6e-8f, -6e-8f, 1e-5f, -1e-5f, 0.34657359f, -0.34657359f, 0.5f, -0.5f, 1.0f,
                               -1.0f, 11.089866f, -11.089866f, 11.1f, -11.1f, 16.6355323f, -16.6355323f, 87.99f,
                               -87.99f, 88.0f, -88.0f, 88.000008f, -88.000008f, 88.5f, -88.5f, 89.0f, -89.0f,
                               100.0f, -100.0f, 65504.0f, -65504.0f, 1e30f, -1e30f, 3.4028235e38f, -3.4028235e38f,
                               INFINITY, -INFINITY, NAN, -NAN};
    static const float su[] = {1.0f, -1.0f, 0.0f, -0.0f, 0.75f, 3e-5f,
                               1e-40f, 65504.0f, 1e30f, INFINITY, -INFINITY, NAN};
    enum { NG = sizeof sg / sizeof *sg, NU = sizeof su / sizeof *su, SW = 14600, SF = 37 };
    enum { SN = NG * NU + SW, SR = (SN + SF - 1) / SF };
    static float sx[SR * 2 * SF];
    for (int k = 0; k < SR * SF; k++) {
        float g = 4.0f * rnd(), u = rnd();
        if (k < NG * NU) {
            g = sg[k % NG];
            u = su[k / NG];
        } else if (k < SN) {
            g = -100.0f + 0.0137f * (float)(k - NG * NU);
            u = k % 2 ? 1.0f : u;
        }
        sx[k / SF * 2 * SF + k % SF] = g;
        sx[k / SF * 2 * SF + SF + k % SF] = u;
    }
    for (int di = 0; di < 3; di++)
        gated_vs_mlx(mx_astype(f32(sx, (int[]){SR, 2 * SF}, 2), dts[di]), 0, want, got, (size_t)SR * SF,
                     "special");

    /* A transposed view [ff*2, rows]^T: the primitive packs it first. */
    mx_array t = mx_transpose(f32(gu, (int[]){2 * 4, 3}, 2), (int[]){1, 0}, 2);
    float tr[3 * 2 * 4], tg[3 * 4];
    CHECK(readf(t, tr, 24) == 0);
    CHECK(readf(mx_gated_stacked(t, 0), tg, 12) == 0);
    int bad = 0;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++)
            if (!(fabs(tg[r * 4 + i] - gated_ref(tr[r * 8 + i], tr[r * 8 + 4 + i], 0)) < 1e-5)) bad++;
    CHECK_EQ_INT(bad, 0);

    CHECK(mx_gated_stacked(f32(gu, (int[]){2, 3}, 2), 0) == NULL);
    CHECK(strstr(mx_error(), "even") != NULL);
    mx_clear_error();
    mx_scope_close(s);
}

static void test_quantize(void) {
    mx_scope *s = mx_scope_open();
    enum { O = 8, I = 64, G = 32 };
    float w[O * I], dq[O * I];
    fill(w, O * I);
    mx_array wa = f32(w, (int[]){O, I}, 2);
    for (int bits = 4; bits <= 8; bits += 4) {
        mx_array wq, sc, bi;
        CHECK(mx_quantize(wa, G, bits, &wq, &sc, &bi) == 0);
        CHECK_EQ_INT(mx_get_dtype(wq), MX_UINT32);
        CHECK_EQ_INT(mx_dim(wq, 1), I * bits / 32);
        CHECK_EQ_INT(mx_dim(sc, 1), I / G);
        CHECK(readf(mx_dequantize(wq, sc, bi, G, bits, MX_FLOAT32), dq, O * I) == 0);
        /* MLX shifts each group's grid so its larger-magnitude end is exact
         * (that moves the step a little), so the error stays within one
         * step of the group's range rather than half of one. */
        int levels = (1 << bits) - 1;
        for (int g = 0; g < O * I / G; g++) {
            float lo = w[g * G], hi = w[g * G];
            for (int j = 0; j < G; j++) {
                lo = fminf(lo, w[g * G + j]);
                hi = fmaxf(hi, w[g * G + j]);
            }
            float bound = (hi - lo) / levels;
            CHECK_MSG(max_abs_diff(w + g * G, dq + g * G, G) <= bound, "bits %d group %d", bits, g);
        }

        /* quantized_matmul equals dequantize + matmul, with both kernels. */
        enum { M = 3 };
        float x[M * I], got[M * O], want[M * O];
        fill(x, M * I);
        mx_array xa = f32(x, (int[]){M, I}, 2);
        mx_array ref = mx_matmul(xa, mx_transpose(mx_dequantize(wq, sc, bi, G, bits, MX_FLOAT32),
                                                   (int[]){1, 0}, 2));
        CHECK(readf(ref, want, M * O) == 0);
        int saved = mx_cpu_kernels();
        for (int ours = 0; ours < 2; ours++) {
            mx_set_cpu_kernels(ours);
            CHECK_EQ_INT(mx_cpu_kernels(), ours);
            CHECK(readf(mx_quantized_matmul(xa, wq, sc, bi, 1, G, bits), got, M * O) == 0);
            CHECK_MSG(max_abs_diff(got, want, M * O) < 1e-3, "bits %d cpu kernels %d", bits, ours);
        }
        mx_set_cpu_kernels(saved);
    }
    mx_array a, b, c;
    CHECK(mx_quantize(NULL, G, 4, &a, &b, &c) == -1);
    CHECK(a == NULL && b == NULL && c == NULL);
    CHECK(mx_quantize(wa, 7, 4, &a, &b, &c) == -1); /* bad group size */
    mx_scope_close(s);
}

static void test_random(void) {
    mx_scope *s = mx_scope_open();
    float logits[4 * 10];
    fill(logits, 40);
    logits[7] = 50; /* row 0 is all but certain */
    mx_array l = f32(logits, (int[]){4, 10}, 2);
    int32_t a[4], b[4];
    mx_array key = mx_random_key(42);
    CHECK(mx_read(mx_random_categorical(l, -1, key), MX_INT32, a, sizeof a) == 0);
    CHECK(mx_read(mx_random_categorical(l, -1, mx_random_key(42)), MX_INT32, b, sizeof b) == 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_EQ_INT(a[0], 7);
    for (int i = 0; i < 4; i++) CHECK(a[i] >= 0 && a[i] < 10);
    mx_array k1, k2;
    CHECK(mx_random_split(key, &k1, &k2) == 0);
    uint32_t kb1[2], kb2[2];
    CHECK(mx_read(k1, MX_UINT32, kb1, sizeof kb1) == 0);
    CHECK(mx_read(k2, MX_UINT32, kb2, sizeof kb2) == 0);
    CHECK(memcmp(kb1, kb2, sizeof kb1) != 0);
    /* Many draws from flat logits cover every class. */
    mx_array flat = mx_zeros((int[]){2000, 4}, 2, MX_FLOAT32);
    int32_t draws[2000];
    CHECK(mx_read(mx_random_categorical(flat, 1, k1), MX_INT32, draws, sizeof draws) == 0);
    int seen[4] = {0};
    for (int i = 0; i < 2000; i++) seen[draws[i] & 3]++;
    for (int i = 0; i < 4; i++) CHECK(seen[i] > 350 && seen[i] < 650);
    mx_scope_close(s);
}

static void test_eval_async(void) {
    mx_scope *s = mx_scope_open();
    mx_array x = mx_sum(mx_arange(0, 100, 1, MX_FLOAT32), 0, 0);
    CHECK(mx_async_eval(&x, 1) == 0);
    double v;
    CHECK(mx_item_float(x, &v) == 0);
    CHECK_NEAR(v, 4950, 0);
    CHECK(mx_eval(NULL, 0) == 0);
    mx_scope_close(s);

    /* Work left running and let go of (as the step queued past a stop):
     * once mx_settle returns, MLX has released its buffers. */
    for (int round = 0; round < 20; round++) {
        size_t base = mx_active_memory();
        int sh[] = {512, 512};
        s = mx_scope_open();
        mx_array y = mx_exp(mx_matmul(mx_full(sh, 2, 1.0, MX_FLOAT32), mx_full(sh, 2, 0.001, MX_FLOAT32)));
        CHECK(mx_async_eval(&y, 1) == 0);
        mx_scope_close(s);
        CHECK_EQ_INT(mx_settle(), 0);
        CHECK_EQ_INT(mx_active_memory(), base);
    }
}

/* ---- files ---- */

static char tmp_dir[64];

static const char *tmp_path(const char *name) {
    static char p[128];
    snprintf(p, sizeof p, "%s/%s", tmp_dir, name);
    return p;
}

typedef struct {
    int n;
    char names[8][32];
    float first[8];
    mx_dtype dtype[8];
    int stop_after;
    int n_meta;
} load_log;

static int log_tensor(const char *name, mx_array a, void *user) {
    load_log *l = user;
    if (l->n < 8) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
        l->dtype[l->n] = mx_get_dtype(a);
        mx_array f = mx_reshape(mx_astype(a, MX_FLOAT32), (int[]){-1}, 1);
        mx_array one = mx_slice(f, (int[]){0}, (int[]){1}, NULL, 1);
        float v = NAN;
        mx_read(one, MX_FLOAT32, &v, sizeof v);
        l->first[l->n] = v;
        mx_free(one);
        mx_free(f);
    }
    l->n++;
    mx_free(a);
    return l->stop_after && l->n >= l->stop_after;
}

static int log_meta_str(const char *key, const char *value, void *user) {
    (void)key;
    (void)value;
    ((load_log *)user)->n_meta++;
    return 0;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_safetensors(void) {
    mx_scope *s = mx_scope_open();
    const char *path = tmp_path("t.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[3] = {-7, 8, 9};
    mx_array arrs[3] = {f32(a, (int[]){2, 3}, 2), mx_from_data(b, (int[]){3}, 1, MX_INT32),
                        mx_astype(f32(a, (int[]){6}, 1), MX_BFLOAT16)};
    const char *names[3] = {"zeta.weight", "alpha", "mid.bf16"};
    CHECK(mx_save_safetensors(path, names, arrs, 3) == 0);

    load_log l = {0};
    CHECK(mx_load_safetensors(path, log_tensor, log_meta_str, &l) == 0);
    CHECK_EQ_INT(l.n, 3);
    CHECK_STR(l.names[0], "alpha"); /* sorted order */
    CHECK_STR(l.names[1], "mid.bf16");
    CHECK_STR(l.names[2], "zeta.weight");
    CHECK_EQ_INT(l.dtype[0], MX_INT32);
    CHECK_EQ_INT(l.dtype[1], MX_BFLOAT16);
    CHECK_EQ_INT(l.dtype[2], MX_FLOAT32);
    CHECK(l.first[0] == -7 && l.first[1] == 1 && l.first[2] == 1);

    /* The callback can stop the load; what is left is freed. */
    load_log stop = {.stop_after = 1};
    mx_set_error("stale");
    CHECK_EQ_INT(mx_load_safetensors(path, log_tensor, NULL, &stop), 1); /* the callback's value */
    CHECK_EQ_INT(stop.n, 1);
    CHECK_STR(mx_error(), ""); /* the reason is the callback's to give */

    /* Truncated: the header is fine but data is missing. */
    FILE *f = fopen(path, "rb");
    char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 40);
    const char *tpath = tmp_path("trunc.safetensors");
    write_file(tpath, buf, n - 10);
    load_log t = {0};
    mx_clear_error();
    CHECK(mx_load_safetensors(tpath, log_tensor, NULL, &t) == -1);
    CHECK(strlen(mx_error()) > 0);
    CHECK_EQ_INT(t.n, 0);
    write_file(tpath, buf, 20); /* cut inside the header */
    CHECK(mx_load_safetensors(tpath, log_tensor, NULL, &t) == -1);
    const char garbage[] = "\xff\xff\xff\xff\xff\xff\xff\x7fthis is not a safetensors file";
    write_file(tpath, garbage, sizeof garbage);
    CHECK(mx_load_safetensors(tpath, log_tensor, NULL, &t) == -1);
    CHECK(mx_load_safetensors(tmp_path("missing.safetensors"), log_tensor, NULL, &t) == -1);
    CHECK(strlen(mx_error()) > 0);
    CHECK_EQ_INT(t.n, 0);
    unlink(tpath);
    unlink(path);

    const char *npy = tmp_path("a.npy");
    CHECK(mx_save_npy(npy, arrs[0]) == 0);
    f = fopen(npy, "rb");
    char magic[6] = {0};
    if (f) {
        CHECK(fread(magic, 1, 6, f) == 6);
        fclose(f);
    }
    CHECK(memcmp(magic, "\x93NUMPY", 6) == 0);
    unlink(npy);
    mx_scope_close(s);
}

typedef struct {
    char arch[32];
    size_t n_tokens;
    int saw_array;
    int n_tensors;
    int q_weight, q_scales, q_biases;
    int stop_after;
} gguf_log;

static int gguf_meta(const char *key, const mx_meta_value *v, void *user) {
    gguf_log *g = user;
    if (!strcmp(key, "general.architecture") && v->kind == MX_META_STRING)
        snprintf(g->arch, sizeof g->arch, "%s", v->string);
    if (!strcmp(key, "tokenizer.ggml.tokens") && v->kind == MX_META_STRINGS) {
        g->n_tokens = v->n_strings;
        if (v->n_strings < 1 || !v->strings[0]) g->n_tokens = 0;
    }
    if (v->kind == MX_META_ARRAY && v->array && mx_size(v->array) > 0) g->saw_array = 1;
    return 0;
}

static int gguf_tensor(const char *name, mx_array a, void *user) {
    gguf_log *g = user;
    g->n_tensors++;
    if (!strcmp(name, "blk.0.attn_q.weight")) g->q_weight = mx_get_dtype(a) == MX_UINT32;
    if (!strcmp(name, "blk.0.attn_q.scales")) g->q_scales = 1;
    if (!strcmp(name, "blk.0.attn_q.biases")) g->q_biases = 1;
    mx_free(a);
    return g->stop_after && g->n_tensors >= g->stop_after;
}

static void test_gguf(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_root());
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "%s is missing: run `make setup`", path);
    if (!f) return;
    fclose(f);
    gguf_log g = {0};
    CHECK(mx_load_gguf(path, gguf_tensor, gguf_meta, &g) == 0);
    CHECK_STR(g.arch, "llama");
    CHECK(g.n_tokens > 1000);
    CHECK(g.saw_array);
    CHECK(g.n_tensors > 0);
    CHECK(g.q_weight && g.q_scales && g.q_biases);

    gguf_log stop = {.stop_after = 2};
    CHECK_EQ_INT(mx_load_gguf(path, gguf_tensor, NULL, &stop), 1);
    CHECK_EQ_INT(stop.n_tensors, 2);
    CHECK_STR(mx_error(), "");

    /* Broken files fail cleanly (MLX's own reader would crash on them). */
    const char *bad = tmp_path("bad.gguf");
    const char garbage[] = "GGUF\x03\0\0\0 then nothing sensible at all";
    write_file(bad, garbage, sizeof garbage);
    gguf_log b = {0};
    mx_clear_error();
    CHECK(mx_load_gguf(bad, gguf_tensor, gguf_meta, &b) == -1);
    CHECK(strlen(mx_error()) > 0);
    CHECK(mx_load_gguf(tmp_path("missing.gguf"), gguf_tensor, gguf_meta, &b) == -1);
    /* Cut inside the metadata, inside the tensor infos and inside the data. */
    static char head[4 << 20];
    f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    CHECK(n == sizeof head);
    size_t cuts[] = {30, 4000, 1 << 20, sizeof head};
    for (int i = 0; i < 4; i++) {
        write_file(bad, head, cuts[i]);
        mx_clear_error();
        CHECK_MSG(mx_load_gguf(bad, gguf_tensor, gguf_meta, &b) == -1, "cut at %zu", cuts[i]);
        CHECK(strlen(mx_error()) > 0);
    }
    /* A huge tensor count in an otherwise valid header. */
    memset(head + 8, 0x7f, 8);
    write_file(bad, head, sizeof head);
    CHECK(mx_load_gguf(bad, gguf_tensor, gguf_meta, &b) == -1);
    CHECK_EQ_INT(b.n_tensors, 0);
    unlink(bad);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_mx_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_scope_memory);
    RUN(test_errors);
    RUN(test_info_and_device);
    RUN(test_creation_and_dtypes);
    RUN(test_elementwise);
    RUN(test_reductions);
    RUN(test_layout);
    RUN(test_rms_norm);
    RUN(test_rope);
    RUN(test_sdpa);
    RUN(test_mlx_math);
    RUN(test_gated);
    RUN(test_quantize);
    RUN(test_random);
    RUN(test_eval_async);
    RUN(test_safetensors);
    RUN(test_gguf);
    rmdir(tmp_dir);
    return check_summary();
}
