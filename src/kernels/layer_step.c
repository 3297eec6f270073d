/* layer_step.c - one decoder layer for one token (see layer_step.h).
 *
 * Every intermediate lives in a float32 buffer holding values already
 * rounded to the activation dtype, at the points where MLX's graph
 * materializes an array (after each op of its CPU fallbacks for RMSNorm,
 * RoPE and the gated MLP). The matmuls and attention are the same kernels
 * the op-by-op path runs, so float32 models get the same sums and the
 * half-precision ones the same roundings. */
#include "kernels/layer_step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/gated.h"
#include "kernels/mlx_math.h"
#include "kernels/half.h"
#include "kernels/pool.h"
#include "kernels/qmm_impl.h" /* qmm_load, qmm_store */

static size_t dtype_size(gm_fdtype t) { return t == GM_F32 ? 4 : 2; }

/* MLX's RMSNorm fallback: x * rsqrt(mean(x^2) + eps) in float32, rounded,
 * then times the weight, rounded again. */
static void rms_norm(const float *x, const void *w, int n, float eps, gm_fdtype t, float *out) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss * (1.0f / (float)n) + eps);
    for (int i = 0; i < n; i++)
        out[i] = gm_round_to(gm_round_to(x[i] * r, t) * qmm_load(w, (size_t)i, t), t);
}

static int linear(const gm_step_linear *l, const float *x, float *y, gm_fdtype t) {
    gm_qmm_args q = {
        .x = x, .w = l->w, .scales = l->scales, .biases = l->biases, .y = y,
        .M = 1, .N = l->N, .K = l->K, .bits = l->bits, .group_size = l->group_size,
        .x_dtype = GM_F32, .sb_dtype = l->sb_dtype, .y_dtype = GM_F32,
    };
    if (gm_qmm(&q) != 0) return -1;
    for (int i = 0; i < l->N; i++) {
        y[i] = gm_round_to(y[i], t);
        if (l->bias) y[i] = gm_round_to(y[i] + qmm_load(l->bias, (size_t)i, t), t);
    }
    return 0;
}

/* MLX's RoPE fallback, one position: cos and sin (MLX's own, not libm's:
 * kernels/mlx_math.h) rounded to the dtype, and each product and sum
 * rounded as its own op. q's and k's heads (x holds them back to back, as
 * the stacked projection does) share the angles. */
static void rope(float *x, int n_heads, int d, const gm_layer_step_args *a) {
    int half = d / 2;
    float c[GM_ATTN_MAX_D / 2], s[GM_ATTN_MAX_D / 2];
    for (int i = 0; i < half; i++) {
        float theta = a->position * a->inv_freq[i];
        c[i] = gm_round_to(gm_mlx_cosf(theta), a->dtype);
        s[i] = gm_round_to(gm_mlx_sinf(theta), a->dtype);
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * d;
        for (int i = 0; i < half; i++) {
            int i1 = a->rope_traditional ? 2 * i : i, i2 = a->rope_traditional ? 2 * i + 1 : i + half;
            float x1 = v[i1], x2 = v[i2];
            float x1c = gm_round_to(x1 * c[i], a->dtype), x2s = gm_round_to(x2 * s[i], a->dtype);
            float x1s = gm_round_to(x1 * s[i], a->dtype), x2c = gm_round_to(x2 * c[i], a->dtype);
            v[i1] = gm_round_to(x1c - x2s, a->dtype);
            v[i2] = gm_round_to(x1s + x2c, a->dtype);
        }
    }
}

/* The token over cache slots first..slot, through the same kernel (and
 * soft-capping) as a prompt's attention. */
static int attention(const gm_layer_step_args *a, const float *q, float *out, void *scratch) {
    int hq = a->n_heads, d = a->head_dim, n = a->slot - a->first + 1;
    /* The kernel wants q and out in the cache's dtype. */
    size_t qn = (size_t)hq * d, es = dtype_size(a->dtype);
    char *qt = scratch, *ot = qt + qn * es;
    for (size_t i = 0; i < qn; i++) qmm_store(qt, i, q[i], a->dtype);
    int64_t cap = a->capacity;
    size_t first = (size_t)a->first * d * es;
    gm_attn_args at = {
        .q = qt, .k = (const char *)a->k_cache + first, .v = (const char *)a->v_cache + first,
        .out = ot,
        .q_strides = {(int64_t)qn, d, d, 1},
        .k_strides = {a->n_kv_heads * cap * d, cap * d, d, 1},
        .v_strides = {a->n_kv_heads * cap * d, cap * d, d, 1},
        .B = 1, .Hq = hq, .Hkv = a->n_kv_heads, .Tq = 1, .Tk = n, .D = d,
        .scale = a->attn_scale, .causal = 0, .softcap = a->softcap, .dtype = a->dtype,
    };
    if (gm_attention(&at) != 0) return -1;
    for (size_t i = 0; i < qn; i++) out[i] = qmm_load(ot, i, a->dtype);
    return 0;
}

static int linear_ok(const gm_step_linear *l, int n, int k) {
    return l->N == n && l->K == k && gm_qmm_supported(l->bits, l->group_size, l->K);
}

int gm_layer_step_supported(const gm_layer_step_args *a) {
    if (!a || a->hidden <= 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 ||
        a->head_dim % 2 || a->head_dim > GM_ATTN_MAX_D || a->n_heads % a->n_kv_heads)
        return 0;
    int qd = a->n_heads * a->head_dim, kvd = a->n_kv_heads * a->head_dim, ff = a->down.K;
    return linear_ok(&a->qkv, qd + 2 * kvd, a->hidden) && linear_ok(&a->o, a->hidden, qd) &&
           linear_ok(&a->gate_up, 2 * ff, a->hidden) && linear_ok(&a->down, a->hidden, ff) &&
           a->slot >= a->first && a->first >= 0 && a->slot < a->capacity &&
           a->softcap >= 0 &&
           gm_attention_supported(1, a->n_heads, a->n_kv_heads, 1, a->slot - a->first + 1, a->head_dim, 0);
}

int gm_layer_step(const gm_layer_step_args *a) {
    if (!gm_layer_step_supported(a) || !a->h_in || !a->h_out || !a->k_cache || !a->v_cache ||
        !a->inv_freq || !a->attn_norm || !a->mlp_norm)
        return -1;
    const gm_step_linear *lins[4] = {&a->qkv, &a->o, &a->gate_up, &a->down};
    for (int i = 0; i < 4; i++)
        if (!lins[i]->w || !lins[i]->scales || !lins[i]->biases) return -1;
    gm_fdtype t = a->dtype;
    int H = a->hidden, d = a->head_dim, qd = a->n_heads * d, kvd = a->n_kv_heads * d,
        ff = a->down.K;
    size_t floats = (size_t)H * 4 + (size_t)(qd + 2 * kvd) + (size_t)qd + 3 * (size_t)ff;
    float *buf = malloc(sizeof(float) * floats + 2 * (size_t)qd * dtype_size(t));
    if (!buf) return -1;
    float *h = buf, *xn = h + H, *o = xn + H, *h1 = o + H, *qkv = h1 + H, *att = qkv + qd + 2 * kvd,
          *gu = att + qd, *act = gu + 2 * (size_t)ff;
    void *scratch = act + ff;
    int rc = -1;
    gm_pool_burst_begin();

    for (int i = 0; i < H; i++) h[i] = qmm_load(a->h_in, (size_t)i, t);
    rms_norm(h, a->attn_norm, H, a->eps, t, xn);
    if (linear(&a->qkv, xn, qkv, t)) goto done;
    float *q = qkv, *k = qkv + qd, *v = k + kvd;
    rope(q, a->n_heads + a->n_kv_heads, d, a); /* k follows q */
    for (int hk = 0; hk < a->n_kv_heads; hk++) {
        size_t row = ((size_t)hk * a->capacity + (size_t)a->slot) * d;
        for (int i = 0; i < d; i++) {
            qmm_store(a->k_cache, row + i, k[(size_t)hk * d + i], t);
            qmm_store(a->v_cache, row + i, v[(size_t)hk * d + i], t);
        }
    }
    if (attention(a, q, att, scratch)) goto done;
    if (linear(&a->o, att, o, t)) goto done;
    if (a->post_attn_norm) {
        rms_norm(o, a->post_attn_norm, H, a->eps, t, xn);
        memcpy(o, xn, sizeof(float) * (size_t)H);
    }
    for (int i = 0; i < H; i++) h1[i] = gm_round_to(h[i] + o[i], t);

    rms_norm(h1, a->mlp_norm, H, a->eps, t, xn);
    if (linear(&a->gate_up, xn, gu, t)) goto done;
    gm_gated(gu, gu + ff, act, ff, a->gelu, t);
    if (linear(&a->down, act, o, t)) goto done;
    if (a->post_mlp_norm) {
        rms_norm(o, a->post_mlp_norm, H, a->eps, t, xn);
        memcpy(o, xn, sizeof(float) * (size_t)H);
    }
    for (int i = 0; i < H; i++) qmm_store(a->h_out, (size_t)i, h1[i] + o[i], t);
    rc = 0;
done:
    gm_pool_burst_end();
    free(buf);
    return rc;
}
