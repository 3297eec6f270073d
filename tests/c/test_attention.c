/* test_attention.c - our CPU attention kernel (src/kernels/attention.c)
 * against a plain double-precision softmax(q k^T) v written here, over
 * strided views like the KV cache hands it, every dtype and instruction
 * set; then the op plugged into MLX (mx_sdpa with our kernels on) against
 * MLX's own on the same inputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/attention.h"
#include "kernels/half.h"
#include "kernels/pool.h"
#include "mlx/mx.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float rng_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23)) - 1.0);
}

static float round_to(float f, gm_fdtype t) {
    if (t == GM_F16) return gm_f16_to_f32(gm_f32_to_f16(f));
    if (t == GM_BF16) return gm_bf16_to_f32(gm_f32_to_bf16(f));
    return f;
}

static void put(void *buf, size_t i, float f, gm_fdtype t) {
    if (t == GM_F16) ((uint16_t *)buf)[i] = gm_f32_to_f16(f);
    else if (t == GM_BF16) ((uint16_t *)buf)[i] = gm_f32_to_bf16(f);
    else ((float *)buf)[i] = f;
}

static float get(const void *buf, size_t i, gm_fdtype t) {
    if (t == GM_F16) return gm_f16_to_f32(((const uint16_t *)buf)[i]);
    if (t == GM_BF16) return gm_bf16_to_f32(((const uint16_t *)buf)[i]);
    return ((const float *)buf)[i];
}

static size_t dsize(gm_fdtype t) { return t == GM_F32 ? 4 : 2; }

/* The reference: q/k/v given as float arrays indexed by strides (values
 * already rounded to the dtype), sums in double. out [B, Hq, Tq, D]. */
/* Sliding window and soft-capping of the next kernel_case (0: off). */
static int g_window;
static double g_softcap;

static void reference(const float *q, const int64_t *qs, const float *k, const int64_t *ks,
                      const float *v, const int64_t *vs, int B, int Hq, int Hkv, int Tq, int Tk,
                      int D, double scale, int causal, double *out) {
    double *p = malloc((size_t)Tk * sizeof(double));
    int group = Hq / Hkv;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int t = 0; t < Tq; t++) {
                int hk = h / group, n = causal ? Tk - Tq + t + 1 : Tk;
                int j0 = causal && g_window > 0 && n > g_window ? n - g_window : 0;
                const float *qr = q + b * qs[0] + h * qs[1] + t * qs[2];
                double mx = -1e300, sum = 0;
                for (int j = j0; j < n; j++) {
                    const float *kr = k + b * ks[0] + hk * ks[1] + j * ks[2];
                    double s = 0;
                    for (int d = 0; d < D; d++) s += (double)qr[d * qs[3]] * kr[d * ks[3]];
                    p[j] = s * scale;
                    if (g_softcap > 0) p[j] = g_softcap * tanh(p[j] / g_softcap);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = j0; j < n; j++) sum += p[j] = exp(p[j] - mx);
                double *o = out + (((size_t)b * Hq + h) * Tq + t) * D;
                for (int d = 0; d < D; d++) {
                    double acc = 0;
                    for (int j = j0; j < n; j++)
                        acc += p[j] * v[b * vs[0] + hk * vs[1] + j * vs[2] + d * vs[3]];
                    o[d] = acc / sum;
                }
            }
    free(p);
}

/* Worst |ours - reference| / max|v| (the output is a convex combination of
 * rows of v, so that is its scale). Tolerances: float32 sums over up to a
 * few hundred terms, 1e-5; float16 and bfloat16 add one rounding of the
 * output (2^-11 and 2^-8 relative), so 1e-3 and 8e-3. */
static double tolerance(gm_fdtype t) { return t == GM_F32 ? 1e-5 : t == GM_F16 ? 1e-3 : 8e-3; }

/* One kernel call: q a transposed view ([B, Tq, Hq, D] storage), k and v
 * slices (from position 3) of a [B, Hkv, cap, D] cache; with kt, k is
 * stored [B, Hkv, D, cap] (stride along D not 1). Returns the error. */
static double kernel_case(int B, int Hq, int Hkv, int Tq, int Tk, int D, int causal, gm_fdtype t,
                          int kt) {
    int cap = Tk + 7, off = 3;
    size_t nq = (size_t)B * Tq * Hq * D, nkv = (size_t)B * Hkv * cap * D;
    size_t nout = (size_t)B * Hq * Tq * D;
    float *qf = malloc(nq * sizeof(float)), *kf = malloc(nkv * sizeof(float));
    float *vf = malloc(nkv * sizeof(float));
    void *qb = malloc(nq * dsize(t)), *kb = malloc(nkv * dsize(t)), *vb = malloc(nkv * dsize(t));
    void *ob = malloc(nout * dsize(t));
    double *ref = malloc(nout * sizeof(double));
    /* Scores spread over a few units, as in a real model. */
    for (size_t i = 0; i < nq; i++) put(qb, i, qf[i] = round_to(2.0f * rng_uniform(), t), t);
    for (size_t i = 0; i < nkv; i++) put(kb, i, kf[i] = round_to(2.0f * rng_uniform(), t), t);
    for (size_t i = 0; i < nkv; i++) put(vb, i, vf[i] = round_to(rng_uniform(), t), t);
    int64_t qs[4] = {(int64_t)Tq * Hq * D, D, (int64_t)Hq * D, 1};
    int64_t vs[4] = {(int64_t)Hkv * cap * D, (int64_t)cap * D, D, 1};
    int64_t ks[4] = {vs[0], vs[1], kt ? 1 : D, kt ? cap : 1};
    double scale = 1.0 / sqrt((double)D);
    reference(qf, qs, kf + off * ks[2], ks, vf + off * vs[2], vs, B, Hq, Hkv, Tq, Tk, D, scale,
              causal, ref);

    gm_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = qb;
    a.k = (const char *)kb + off * ks[2] * dsize(t);
    a.v = (const char *)vb + off * vs[2] * dsize(t);
    a.out = ob;
    memcpy(a.q_strides, qs, sizeof qs);
    memcpy(a.k_strides, ks, sizeof ks);
    memcpy(a.v_strides, vs, sizeof vs);
    a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.Tq = Tq, a.Tk = Tk, a.D = D;
    a.scale = (float)scale;
    a.causal = causal;
    a.window = g_window;
    a.softcap = (float)g_softcap;
    a.dtype = t;
    double err = 1e9;
    if (gm_attention(&a) == 0) {
        err = 0;
        for (size_t i = 0; i < nout; i++) {
            double e = fabs(get(ob, i, t) - ref[i]);
            if (!(e <= err)) err = e; /* NaN sticks */
        }
    }
    free(qf), free(kf), free(vf), free(qb), free(kb), free(vb), free(ob), free(ref);
    return err;
}

static const int TQS[] = {1, 3, 17, 64};
static const int HS[][2] = {{4, 4}, {4, 2}, {9, 3}};
/* 20: not a multiple of 8 (padded panels); 48: the decode axpy's 32 columns
 * a pass, then 16 */
static const int DS[] = {16, 64, 128, 20, 48};
static const gm_fdtype DTS[] = {GM_F32, GM_F16, GM_BF16};

static void kernel_sweep(void) {
    int n = 0;
    for (int di = 0; di < 3; di++)
        for (int ti = 0; ti < 4; ti++)
            for (int hi = 0; hi < 3; hi++)
                for (int dd = 0; dd < 5; dd++)
                    for (int causal = 0; causal < 2; causal++, n++) {
                        int Tq = TQS[ti], extra = (int[]){0, 13, 70}[n % 3];
                        int Tk = Tq + extra, B = n % 5 == 0 ? 2 : 1;
                        gm_fdtype t = DTS[di];
                        double e = kernel_case(B, HS[hi][0], HS[hi][1], Tq, Tk, DS[dd], causal, t,
                                               n % 4 == 1);
                        CHECK_MSG(e <= tolerance(t),
                                  "isa %s dtype %d B %d Hq %d Hkv %d Tq %d Tk %d D %d causal %d: "
                                  "err %g",
                                  gm_qmm_isa(), (int)t, B, HS[hi][0], HS[hi][1], Tq, Tk, DS[dd],
                                  causal, e);
                    }
}

static void test_kernel_scalar(void) {
    CHECK_EQ_INT(gm_qmm_set_isa("scalar"), 0);
    gm_pool_set_threads(3);
    kernel_sweep();
    gm_qmm_set_isa(NULL);
    gm_pool_set_threads(0);
}

static void test_kernel_best_isa(void) {
    gm_qmm_set_isa(NULL);
    gm_pool_set_threads(1);
    kernel_sweep();
    gm_pool_set_threads(0);
    kernel_sweep();
}

/* Long contexts: several key blocks, a large causal offset, D = 256;
 * decode with the keys cut into several ranges per kv head (more threads
 * than kv heads), uneven ones included. */
static void test_kernel_long(void) {
    static const int threads[] = {1, 2, 4, 7};
    for (int i = 0; i < 4; i++) {
        gm_pool_set_threads(threads[i]);
        double e = kernel_case(1, 9, 3, 1, 1000, 64, 0, GM_F32, 0);
        CHECK_MSG(e <= 1e-5, "decode Tk 1000, %d threads: %g", threads[i], e);
        e = kernel_case(2, 8, 1, 2, 333, 128, 1, GM_F16, 0);
        CHECK_MSG(e <= 1e-3, "decode 2 rows Tk 333, %d threads: %g", threads[i], e);
        e = kernel_case(1, 4, 4, 1, 200, 64, 0, GM_BF16, 0);
        CHECK_MSG(e <= 8e-3, "decode 4 kv heads, %d threads: %g", threads[i], e);
    }
    gm_pool_set_threads(0);
    double e;
    e = kernel_case(1, 4, 2, 40, 300, 256, 1, GM_BF16, 0);
    CHECK_MSG(e <= 8e-3, "chunked prefill D 256: %g", e);
    e = kernel_case(1, 2, 1, 130, 130, 64, 1, GM_F16, 1);
    CHECK_MSG(e <= 1e-3, "prefill 130: %g", e);
}

/* Sliding windows (shorter and longer than a key block, narrower than a
 * chunk) and Gemma 2's soft-capping, on prefill, chunked prefill and
 * decode (keys cut into ranges on several threads), both ISAs. */
static void test_kernel_window_softcap(void) {
    static const struct {
        int window;
        double cap;
    } modes[] = {{5, 0}, {100, 0}, {0, 2.0}, {7, 2.0}, {70, 1.5}};
    static const int shapes[][2] = {{1, 1}, {1, 200}, {17, 17}, {17, 87}, {64, 300}};
    static const char *isas[] = {"scalar", NULL};
    for (int ii = 0; ii < 2; ii++) {
        gm_qmm_set_isa(isas[ii]);
        for (int th = 1; th <= 4; th += 3) {
            gm_pool_set_threads(th);
            for (size_t mi = 0; mi < sizeof modes / sizeof *modes; mi++)
                for (int si = 0; si < 5; si++)
                    for (int di = 0; di < 3; di += 2) {
                        g_window = modes[mi].window;
                        g_softcap = modes[mi].cap;
                        gm_fdtype t = DTS[di];
                        int Tq = shapes[si][0], Tk = shapes[si][1];
                        double e = kernel_case(1, 9, 3, Tq, Tk, 64, 1, t, si == 3);
                        CHECK_MSG(e <= tolerance(t),
                                  "isa %s threads %d window %d cap %g dtype %d Tq %d Tk %d: err %g",
                                  gm_qmm_isa(), th, g_window, g_softcap, (int)t, Tq, Tk, e);
                    }
        }
    }
    g_window = 0;
    g_softcap = 0;
    gm_qmm_set_isa(NULL);
    gm_pool_set_threads(0);
    /* A window without the causal mask is not a thing the kernel knows. */
    g_window = 4;
    CHECK(kernel_case(1, 4, 4, 3, 9, 16, 0, GM_F32, 0) > 1e8);
    g_window = 0;
}

static void test_rejects(void) {
    CHECK(!gm_attention_supported(1, 4, 3, 1, 1, 64, 0)); /* 4 heads over 3 */
    CHECK(!gm_attention_supported(1, 4, 4, 5, 4, 64, 1)); /* causal Tk < Tq */
    CHECK(gm_attention_supported(1, 4, 4, 5, 4, 64, 0));
    CHECK(!gm_attention_supported(1, 4, 4, 1, 1, 257, 0));
    CHECK(!gm_attention_supported(0, 4, 4, 1, 1, 64, 0));
    gm_attn_args a;
    memset(&a, 0, sizeof a);
    a.B = 1, a.Hq = 4, a.Hkv = 3, a.Tq = 1, a.Tk = 1, a.D = 8;
    CHECK_EQ_INT(gm_attention(&a), -1);
}

/* ---- the op plugged into MLX against MLX's own ---- */

static mx_dtype to_mx(gm_fdtype t) {
    return t == GM_F16 ? MX_FLOAT16 : t == GM_BF16 ? MX_BFLOAT16 : MX_FLOAT32;
}

/* q a transposed view, k/v slices of a bigger cache, as the model builds
 * them. Returns max|ours - MLX| / max|v| (or 1e9 on a failure). */
static double mlx_case(int Hq, int Hkv, int Tq, int Tk, int D, int causal, gm_fdtype t) {
    mx_scope *scope = mx_scope_open();
    int cap = Tk + 9, start = 2;
    size_t nq = (size_t)Tq * Hq * D, nkv = (size_t)Hkv * (cap + start) * D;
    size_t nout = (size_t)Hq * Tq * D;
    float *qd = malloc(nq * sizeof(float)), *kd = malloc(nkv * sizeof(float));
    float *vd = malloc(nkv * sizeof(float));
    float *o1 = malloc(nout * sizeof(float)), *o2 = malloc(nout * sizeof(float));
    for (size_t i = 0; i < nq; i++) qd[i] = 2.0f * rng_uniform();
    for (size_t i = 0; i < nkv; i++) kd[i] = 2.0f * rng_uniform();
    for (size_t i = 0; i < nkv; i++) vd[i] = rng_uniform();
    int qshape[4] = {1, Tq, Hq, D}, perm[4] = {0, 2, 1, 3};
    int cshape[4] = {1, Hkv, cap + start, D};
    int s0[4] = {0, 0, start, 0}, s1[4] = {1, Hkv, start + Tk, D};
    mx_array q = mx_transpose(mx_astype(mx_from_data(qd, qshape, 4, MX_FLOAT32), to_mx(t)), perm, 4);
    mx_array k = mx_slice(mx_astype(mx_from_data(kd, cshape, 4, MX_FLOAT32), to_mx(t)), s0, s1,
                          NULL, 4);
    mx_array v = mx_slice(mx_astype(mx_from_data(vd, cshape, 4, MX_FLOAT32), to_mx(t)), s0, s1,
                          NULL, 4);
    float scale = 1.0f / sqrtf((float)D);
    double err = 1e9;
    mx_set_cpu_kernels(1);
    mx_array y1 = mx_sdpa(q, k, v, scale, causal, NULL);
    mx_set_cpu_kernels(0);
    mx_array y2 = mx_sdpa(q, k, v, scale, causal, NULL);
    mx_set_cpu_kernels(1);
    if (y1 && y2 && mx_get_dtype(y1) == to_mx(t) && mx_get_dtype(y2) == to_mx(t) &&
        mx_read(y1, MX_FLOAT32, o1, nout * sizeof(float)) == 0 &&
        mx_read(y2, MX_FLOAT32, o2, nout * sizeof(float)) == 0) {
        err = 0;
        for (size_t i = 0; i < nout; i++) {
            double e = fabs((double)o1[i] - o2[i]);
            if (!(e <= err)) err = e;
        }
    } else {
        fprintf(stderr, "  mlx: %s\n", mx_error());
    }
    free(qd), free(kd), free(vd), free(o1), free(o2);
    mx_scope_close(scope);
    return err;
}

/* Ours vs MLX's CPU op. float32: both sum in float32, 1e-5 of max|v|.
 * float16/bfloat16: MLX's fallback rounds the scores and the
 * probabilities to the half type between its matmuls (ours keeps them in
 * float32), so the two differ by a few roundings of that type: 4e-3
 * (2^-11 over ~8 ulp) and 3e-2 (2^-8). The kernel test above holds ours
 * to the exact result much tighter. */
static void test_mlx_plugged(void) {
    static const int cases[][5] = {
        /* Hq, Hkv, Tq, Tk, D */
        {4, 4, 1, 1, 16},  {4, 2, 1, 77, 64}, {9, 3, 1, 300, 64},  {9, 3, 17, 17, 64},
        {9, 3, 3, 40, 64}, {4, 2, 64, 64, 128}, {4, 4, 17, 150, 128}, {9, 3, 64, 200, 64},
    };
    for (int di = 0; di < 3; di++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int causal = 0; causal < 2; causal++) {
                const int *s = cases[c];
                gm_fdtype t = DTS[di];
                double tol = t == GM_F32 ? 1e-5 : t == GM_F16 ? 4e-3 : 3e-2;
                double e = mlx_case(s[0], s[1], s[2], s[3], s[4], causal, t);
                CHECK_MSG(e <= tol, "dtype %d Hq %d Hkv %d Tq %d Tk %d D %d causal %d: %g",
                          (int)t, s[0], s[1], s[2], s[3], s[4], causal, e);
            }
}

int main(void) {
    RUN(test_rejects);
    RUN(test_kernel_scalar);
    RUN(test_kernel_best_isa);
    RUN(test_kernel_long);
    RUN(test_kernel_window_softcap);
    RUN(test_mlx_plugged);
    return check_summary();
}
