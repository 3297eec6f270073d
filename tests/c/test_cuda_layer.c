/* test_cuda_layer.c - the one-kernel decoder layers for one token on NVIDIA
 * GPUs (src/mlx/cuda_layer.cpp) against MLX's op-by-op layers on the same
 * inputs: rms_norm, quantized matmuls, RoPE, the cache write, sdpa,
 * residuals, SwiGLU. Both are compared with the same ops run in float32
 * (same quantized weights): ours must be no further from that than MLX's
 * own bfloat16/float16 graph is (times 2, plus one rounding of the element
 * type), at several steps in a row (the barrier and counters reset between
 * kernels), with GQA, a q|k|v bias, traditional RoPE, a sliding window and
 * float16; with the MLP zeroed and h small the output is the attention's
 * alone, over up to 2000+ keys (every chunk the blocks allow, one empty).
 * The cache row written in place is checked too, and the rows around it
 * are left as they were. Three layers in one kernel are checked against
 * three op-by-op layers, with a cache moved to a new buffer between steps
 * (the kernel's table of addresses must follow). Gemma 2 layers (post-norms,
 * GeGLU, soft-capped scores, a score scale of its own) likewise, three of
 * them with windows and slots of their own (a sliding layer whose cache
 * dropped its oldest keys). Needs an NVIDIA GPU and MLX's CUDA
 * backend; elsewhere it exits 77, which ctest reports as skipped. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mlx/mx.h"

static uint32_t rng_state = 7;
static float rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static float *random_values(size_t n, float scale, float offset) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = offset + scale * rnd();
    return v;
}

/* Evaluated array of dtype dt from float values (a buffer of its own). */
static mx_array from_values(const float *v, const int *shape, int ndim, mx_dtype dt) {
    mx_array a = mx_astype(mx_from_data(v, shape, ndim, MX_FLOAT32), dt);
    if (a && mx_eval(&a, 1)) return NULL;
    return a;
}

static mx_array random_array(const int *shape, int ndim, mx_dtype dt, float scale, float offset) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *v = random_values(n, scale, offset);
    mx_array a = from_values(v, shape, ndim, dt);
    free(v);
    return a;
}

static float *read_all(mx_array a) {
    size_t n = a ? mx_size(a) : 0;
    float *v = malloc((n ? n : 1) * sizeof(float));
    if (!a || mx_read(a, MX_FLOAT32, v, n * sizeof(float))) {
        free(v);
        return NULL;
    }
    return v;
}

/* Largest |a - ref| over the largest |ref|. */
static double rel_diff(mx_array a, mx_array ref) {
    float *x = read_all(a), *y = read_all(ref);
    double e = INFINITY;
    if (x && y && mx_size(a) == mx_size(ref)) {
        double d = 0, m = 0;
        for (size_t i = 0; i < mx_size(ref); i++) {
            double v = fabs((double)x[i] - y[i]);
            if (!(v <= d)) d = v;
            if (fabs(y[i]) > m) m = fabs(y[i]);
        }
        e = m > 0 ? d / m : d;
    }
    free(x);
    free(y);
    return e;
}

typedef struct shape {
    const char *name;
    int hidden, n_heads, n_kv, head_dim, ff, gs, bias, trad, window;
    mx_dtype dt;
    int keys;      /* keys in the cache before the first step (0: 200) */
    int attn_only; /* MLP weights zero and h small: the output is the attention's */
    int gemma;     /* Gemma 2: post-norms, GeGLU, scores soft-capped at 50 */
    float qscalar; /* scores scaled by 1/sqrt(this) (0: head_dim) */
} shape;

typedef struct layer {
    mx_qlinear qkv, o, gu, down;
    mx_array attn_norm, mlp_norm;
    mx_array freqs, inv_freq; /* a RoPE table: powers of two and their reciprocals */
    mx_array post_attn_norm, post_mlp_norm; /* gemma */
} layer;

static float score_scale(const shape *sh) {
    return 1.0f / sqrtf(sh->qscalar > 0 ? sh->qscalar : (float)sh->head_dim);
}

static mx_qlinear quantize_rows(mx_array w, int out, const shape *sh, int bias) {
    mx_qlinear l = {0};
    CHECK(mx_quantize(w, sh->gs, 4, &l.w, &l.scales, &l.biases) == 0);
    mx_array parts[3] = {l.w, l.scales, l.biases};
    CHECK(mx_eval(parts, 3) == 0);
    l.bits = 4, l.group_size = sh->gs;
    if (bias) l.bias = random_array((int[]){out}, 1, sh->dt, 0.5f, 0.0f);
    return l;
}

static mx_qlinear quantized(int out, int in, const shape *sh, int bias, float scale) {
    return quantize_rows(random_array((int[]){out, in}, 2, sh->dt, scale, 0.0f), out, sh, bias);
}

/* q|k|v with the k rows (and bias) a copy of the v rows: the new key is
 * then the value row the kernel writes, rotated, which MLX's own RoPE on
 * that row must reproduce bit for bit (check_shape). */
static mx_qlinear qkv_k_as_v(const shape *sh) {
    int qd = sh->n_heads * sh->head_dim, kvd = sh->n_kv * sh->head_dim;
    mx_array q = random_array((int[]){qd, sh->hidden}, 2, sh->dt, 0.04f, 0.0f);
    mx_array v = random_array((int[]){kvd, sh->hidden}, 2, sh->dt, 0.04f, 0.0f);
    mx_qlinear l = quantize_rows(mx_concat((mx_array[]){q, v, v}, 3, 0), qd + 2 * kvd, sh, 0);
    if (sh->bias) {
        mx_array qb = random_array((int[]){qd}, 1, sh->dt, 0.5f, 0.0f);
        mx_array vb = random_array((int[]){kvd}, 1, sh->dt, 0.5f, 0.0f);
        l.bias = mx_concat((mx_array[]){qb, vb, vb}, 3, 0);
        CHECK(mx_eval(&l.bias, 1) == 0);
    }
    return l;
}

static layer make_layer(const shape *sh) {
    layer L;
    int qd = sh->n_heads * sh->head_dim, half = sh->head_dim / 2;
    L.qkv = qkv_k_as_v(sh);
    L.o = quantized(sh->hidden, qd, sh, 0, 0.04f);
    L.gu = quantized(2 * sh->ff, sh->hidden, sh, 0, 0.04f);
    L.down = quantized(sh->hidden, sh->ff, sh, 0, sh->attn_only ? 0.0f : 0.04f);
    L.attn_norm = random_array((int[]){sh->hidden}, 1, sh->dt, 0.3f, 1.0f);
    L.mlp_norm = random_array((int[]){sh->hidden}, 1, sh->dt, 0.3f, 1.0f);
    L.post_attn_norm = sh->gemma ? random_array((int[]){sh->hidden}, 1, sh->dt, 0.3f, 1.0f) : NULL;
    L.post_mlp_norm = sh->gemma ? random_array((int[]){sh->hidden}, 1, sh->dt, 0.3f, 1.0f) : NULL;
    /* A table of frequencies (Llama 3's kind) whose reciprocals are exact:
     * 2^(j mod 13); without it the angles come from base 10000. */
    float *f = malloc((size_t)half * sizeof(float));
    for (int j = 0; j < half; j++) f[j] = ldexpf(1.0f, j % 13);
    L.freqs = mx_from_data(f, (int[]){half}, 1, MX_FLOAT32);
    free(f);
    L.inv_freq = mx_divide(mx_scalar(1.0, MX_FLOAT32), L.freqs);
    mx_array tables[2] = {L.freqs, L.inv_freq};
    CHECK(mx_eval(tables, 2) == 0);
    return L;
}

static mx_array as(mx_array a, mx_dtype t) { return a ? mx_astype(a, t) : NULL; }

static mx_array linear(const mx_qlinear *l, mx_array x, mx_dtype t) {
    mx_array y = mx_quantized_matmul(x, l->w, as(l->scales, t), as(l->biases, t), 1, l->group_size, 4);
    return l->bias ? mx_add(y, as(l->bias, t)) : y;
}

/* Gemma 2's attention as gomlx's graph builds it (layers.c): q scaled,
 * scores soft-capped in the dtype, then softmax in float32. */
static mx_array softcapped_attention(const shape *sh, mx_array q, mx_array k, mx_array v, float scale) {
    int rep = sh->n_heads / sh->n_kv, d = sh->head_dim;
    q = mx_reshape(mx_multiply(q, mx_scalar(scale, mx_get_dtype(q))), (int[]){1, sh->n_kv, rep, 1, d}, 5);
    mx_array scores = mx_matmul(q, mx_swapaxes(mx_expand_dims(k, 2), -1, -2));
    mx_array cap = mx_scalar(50.0, mx_get_dtype(scores));
    scores = mx_multiply(mx_tanh(mx_divide(scores, cap)), cap);
    mx_array o = mx_matmul(mx_softmax(scores, -1, 1), mx_expand_dims(v, 2));
    return mx_reshape(o, (int[]){1, sh->n_heads, 1, d}, 4);
}

/* RoPE at pos from base 10000 or, with `table`, from L's frequencies. */
static mx_array rope(const shape *sh, const layer *L, mx_array x, int pos, int table) {
    return mx_rope(x, sh->head_dim, sh->trad, 10000.0f, 1.0f, pos, table ? L->freqs : NULL);
}

/* MLX's op-by-op layer in dtype t for the token at `pos`; *kc, *vc are
 * replaced by the updated caches; *k_new is the rotated key [1, n_kv, 1, d]. */
static mx_array reference_at(const shape *sh, const layer *L, mx_array h, mx_array *kc, mx_array *vc,
                             int slot, int first, int pos, int table, mx_dtype t, mx_array *k_new) {
    int d = sh->head_dim, qd = sh->n_heads * d, kvd = sh->n_kv * d;
    float eps = 1e-5f, scale = score_scale(sh);
    h = as(h, t);
    mx_array x = mx_rms_norm(h, as(L->attn_norm, t), eps);
    mx_array qkv = linear(&L->qkv, x, t);
    mx_array q = mx_reshape(mx_slice(qkv, (int[]){0, 0, 0}, (int[]){1, 1, qd}, NULL, 3),
                            (int[]){1, sh->n_heads, 1, d}, 4);
    mx_array k = mx_reshape(mx_slice(qkv, (int[]){0, 0, qd}, (int[]){1, 1, qd + kvd}, NULL, 3),
                            (int[]){1, sh->n_kv, 1, d}, 4);
    mx_array v = mx_reshape(mx_slice(qkv, (int[]){0, 0, qd + kvd}, (int[]){1, 1, qd + 2 * kvd}, NULL, 3),
                            (int[]){1, sh->n_kv, 1, d}, 4);
    q = rope(sh, L, q, pos, table);
    k = rope(sh, L, k, pos, table);
    *k_new = k;
    *kc = mx_slice_update(as(*kc, t), k, (int[]){0, 0, slot, 0}, (int[]){1, sh->n_kv, slot + 1, d}, 4);
    *vc = mx_slice_update(as(*vc, t), v, (int[]){0, 0, slot, 0}, (int[]){1, sh->n_kv, slot + 1, d}, 4);
    mx_array keys = mx_slice(*kc, (int[]){0, 0, first}, (int[]){1, sh->n_kv, slot + 1}, NULL, 3);
    mx_array vals = mx_slice(*vc, (int[]){0, 0, first}, (int[]){1, sh->n_kv, slot + 1}, NULL, 3);
    mx_array o = sh->gemma ? softcapped_attention(sh, q, keys, vals, scale) : mx_sdpa(q, keys, vals, scale, 0, NULL);
    mx_array a = linear(&L->o, mx_reshape(o, (int[]){1, 1, qd}, 3), t);
    if (sh->gemma) a = mx_rms_norm(a, as(L->post_attn_norm, t), eps);
    mx_array h1 = mx_add(h, a);
    mx_array act = mx_gated_stacked(linear(&L->gu, mx_rms_norm(h1, as(L->mlp_norm, t), eps), t), sh->gemma);
    mx_array f = linear(&L->down, act, t);
    if (sh->gemma) f = mx_rms_norm(f, as(L->post_mlp_norm, t), eps);
    return mx_add(h1, f);
}

static mx_array reference(const shape *sh, const layer *L, mx_array h, mx_array *kc, mx_array *vc,
                          int slot, int first, int table, mx_dtype t, mx_array *k_new) {
    return reference_at(sh, L, h, kc, vc, slot, first, slot, table, t, k_new);
}

static mx_layer_step step_of(const shape *sh, const layer *L) {
    mx_layer_step s = {
        .attn_norm = L->attn_norm, .mlp_norm = L->mlp_norm,
        .post_attn_norm = L->post_attn_norm, .post_mlp_norm = L->post_mlp_norm,
        .qkv = L->qkv, .o = L->o, .gate_up = L->gu, .down = L->down, .gelu = sh->gemma,
        .n_heads = sh->n_heads, .n_kv_heads = sh->n_kv, .head_dim = sh->head_dim, .eps = 1e-5f,
        .inv_freq = L->inv_freq, .rope_base = 10000.0f, .rope_traditional = sh->trad,
        .attn_scale = score_scale(sh), .softcap = sh->gemma ? 50.0f : 0.0f,
    };
    return s;
}

static void check_shape(const shape *sh) {
    mx_scope *scope = mx_scope_open();
    int slot0 = sh->keys ? sh->keys : 200, d = sh->head_dim, cap = slot0 + 120;
    layer L = make_layer(sh);
    size_t cache_n = (size_t)sh->n_kv * cap * d;
    float *kv0 = random_values(cache_n, 1.0f, 0.0f), *vv0 = random_values(cache_n, 1.0f, 0.0f);
    const int cshape[4] = {1, sh->n_kv, cap, d};
    /* Ours is written in place; the references keep their own copies. */
    mx_array k_ours = from_values(kv0, cshape, 4, sh->dt), v_ours = from_values(vv0, cshape, 4, sh->dt);
    mx_array k_mlx = from_values(kv0, cshape, 4, sh->dt), v_mlx = from_values(vv0, cshape, 4, sh->dt);
    mx_array k_f32 = from_values(kv0, cshape, 4, MX_FLOAT32), v_f32 = from_values(vv0, cshape, 4, MX_FLOAT32);
    mx_layer_step s = step_of(sh, &L);
    s.k_cache = k_ours, s.v_cache = v_ours;
    const char *why = mx_cuda_layers_ready(&s, 1);
    CHECK_MSG(why == NULL, "%s: not ready: %s", sh->name, why ? why : "");
    mx_cuda_layers *c = mx_cuda_layers_new(&s, 1);
    CHECK_MSG(c != NULL, "%s", mx_error());
    if (why || !c) {
        mx_scope_close(scope);
        return;
    }
    for (int step = 0; step < 3; step++) {
        int slot = slot0 + step * 50, first = sh->window ? slot - sh->window + 1 : 0;
        mx_array h = random_array((int[]){1, 1, sh->hidden}, 3, sh->dt, sh->attn_only ? 0.01f : 2.0f, 0.0f);
        /* the middle step's angles from the table, the others' from the base */
        int table = step == 1;
        s.slot = slot, s.first = first, s.position = (float)slot, s.rope_base = table ? 0.0f : 10000.0f;
        long calls = mx_cuda_layer_calls();
        mx_array ours = mx_cuda_layers_step(c, h, &s, 1);
        CHECK_MSG(ours != NULL, "%s", mx_error());
        CHECK(mx_cuda_layer_calls() == calls + 1);
        mx_array kn_mlx, kn_f32;
        mx_array mlx = reference(sh, &L, h, &k_mlx, &v_mlx, slot, first, table, sh->dt, &kn_mlx);
        mx_array f32 = reference(sh, &L, h, &k_f32, &v_f32, slot, first, table, MX_FLOAT32, &kn_f32);
        mx_array all[7] = {ours, mlx, f32, k_mlx, v_mlx, k_f32, v_f32};
        CHECK(mx_eval(all, 7) == 0);
        CHECK(mx_cuda_layers_timed_out(c) == 0);
        CHECK(mx_get_dtype(ours) == sh->dt && mx_size(ours) == (size_t)sh->hidden);
        double e_ours = rel_diff(ours, f32), e_mlx = rel_diff(mlx, f32);
        double ulp = sh->dt == MX_BFLOAT16 ? 1.0 / 256 : 1.0 / 2048;
        CHECK_MSG(e_ours <= 2 * e_mlx + ulp, "%s step %d: ours %.3g from float32, MLX's ops %.3g", sh->name,
                  step, e_ours, e_mlx);
        /* The cache rows: the new one as MLX's float32 RoPE gives it (one
         * rounding, plus the products' order), the others untouched. */
        mx_array row_ours = mx_slice(k_ours, (int[]){0, 0, slot}, (int[]){1, sh->n_kv, slot + 1}, NULL, 3);
        double e_k = rel_diff(row_ours, kn_f32), e_k_mlx = rel_diff(kn_mlx, kn_f32);
        CHECK_MSG(e_k <= 2 * e_k_mlx + ulp, "%s step %d: key %.3g, MLX's %.3g", sh->name, step, e_k, e_k_mlx);
        mx_array vrow_ours = mx_slice(v_ours, (int[]){0, 0, slot}, (int[]){1, sh->n_kv, slot + 1}, NULL, 3);
        mx_array vrow_mlx = mx_slice(v_mlx, (int[]){0, 0, slot}, (int[]){1, sh->n_kv, slot + 1}, NULL, 3);
        mx_array vrow_f32 = mx_slice(v_f32, (int[]){0, 0, slot}, (int[]){1, sh->n_kv, slot + 1}, NULL, 3);
        CHECK(rel_diff(vrow_ours, vrow_f32) <= 2 * rel_diff(vrow_mlx, vrow_f32) + ulp);
        /* k's weights are v's: the key is the value row rotated, as MLX's
         * CUDA RoPE rotates it, bit for bit */
        mx_array k_of_v = rope(sh, &L, mx_reshape(vrow_ours, (int[]){1, sh->n_kv, 1, d}, 4), slot, table);
        CHECK_MSG(rel_diff(row_ours, k_of_v) == 0, "%s step %d: the key is not MLX's RoPE of its row (%s)",
                  sh->name, step, table ? "table" : "base");
        mx_array before = mx_slice(k_ours, (int[]){0, 0, slot - 1}, (int[]){1, sh->n_kv, slot}, NULL, 3);
        mx_array before_mlx = mx_slice(k_mlx, (int[]){0, 0, slot - 1}, (int[]){1, sh->n_kv, slot}, NULL, 3);
        mx_array after = mx_slice(v_ours, (int[]){0, 0, slot + 1}, (int[]){1, sh->n_kv, slot + 2}, NULL, 3);
        mx_array after_mlx = mx_slice(v_mlx, (int[]){0, 0, slot + 1}, (int[]){1, sh->n_kv, slot + 2}, NULL, 3);
        CHECK(rel_diff(before, before_mlx) == 0 && rel_diff(after, after_mlx) == 0);
        fprintf(stderr, "  %-26s step %d: to float32 ours %.2e, MLX's ops %.2e; key ours %.2e, MLX's %.2e\n",
                sh->name, step, e_ours, e_mlx, e_k, e_k_mlx);
    }
    mx_cuda_layers_free(c);
    free(kv0);
    free(vv0);
    mx_scope_close(scope);
}

/* Three layers of different weights in one kernel against three MLX
 * layers, three steps; before the last, layer 1's caches move to new
 * buffers (as when the cache grows). One bias is still lazy at the first
 * step. With `window`, layers 0 and 2 see only the last `window` keys and
 * layer 0's cache has dropped its oldest 40 (its slot is 40 lower), as
 * Gemma 2's sliding layers do. */
static void three_layers(const shape *sh, int window) {
    enum { N = 3 };
    mx_scope *scope = mx_scope_open();
    int d = sh->head_dim, cap = 300;
    const int cshape[4] = {1, sh->n_kv, cap, d};
    size_t cache_n = (size_t)sh->n_kv * cap * d;
    layer L[N];
    mx_layer_step s[N];
    mx_array k_mlx[N], v_mlx[N], k_f32[N], v_f32[N];
    for (int i = 0; i < N; i++) {
        L[i] = make_layer(sh);
        /* a weight not computed yet: the step must compute it first */
        if (i == 2 && L[i].qkv.bias) L[i].qkv.bias = mx_add(L[i].qkv.bias, mx_scalar(0.0, MX_BFLOAT16));
        float *kv0 = random_values(cache_n, 1.0f, 0.0f), *vv0 = random_values(cache_n, 1.0f, 0.0f);
        s[i] = step_of(sh, &L[i]);
        s[i].k_cache = from_values(kv0, cshape, 4, sh->dt), s[i].v_cache = from_values(vv0, cshape, 4, sh->dt);
        k_mlx[i] = from_values(kv0, cshape, 4, sh->dt), v_mlx[i] = from_values(vv0, cshape, 4, sh->dt);
        k_f32[i] = from_values(kv0, cshape, 4, MX_FLOAT32), v_f32[i] = from_values(vv0, cshape, 4, MX_FLOAT32);
        free(kv0);
        free(vv0);
    }
    const char *why = mx_cuda_layers_ready(s, N);
    CHECK_MSG(why == NULL, "%s: not ready: %s", sh->name, why ? why : "");
    mx_cuda_layers *c = why ? NULL : mx_cuda_layers_new(s, N);
    for (int step = 0; c && step < 3; step++) {
        int pos = 200 + step;
        mx_array old_k = NULL, old_ref = k_mlx[1];
        if (step == 2) {
            /* Same contents, new buffers: the old ones must stay as they were. */
            old_k = s[1].k_cache;
            s[1].k_cache = mx_add(old_k, mx_scalar(0.0, MX_BFLOAT16));
            s[1].v_cache = mx_add(s[1].v_cache, mx_scalar(0.0, MX_BFLOAT16));
            mx_array moved[2] = {s[1].k_cache, s[1].v_cache};
            CHECK(mx_eval(moved, 2) == 0);
        }
        mx_array h = random_array((int[]){1, 1, sh->hidden}, 3, sh->dt, 2.0f, 0.0f);
        for (int i = 0; i < N; i++) {
            int sliding = window && i != 1;
            s[i].slot = window && i == 0 ? pos - 40 : pos;
            s[i].first = sliding && s[i].slot - window + 1 > 0 ? s[i].slot - window + 1 : 0;
            s[i].position = (float)pos;
            s[i].rope_base = step == 1 ? 0.0f : 10000.0f;
        }
        mx_array ours = mx_cuda_layers_step(c, h, s, N);
        CHECK_MSG(ours != NULL, "%s", mx_error());
        mx_array mlx = h, f32 = h, kn_mlx, kn_f32;
        for (int i = 0; i < N; i++) {
            mlx = reference_at(sh, &L[i], mlx, &k_mlx[i], &v_mlx[i], s[i].slot, s[i].first, pos, step == 1, sh->dt,
                               &kn_mlx);
            f32 = reference_at(sh, &L[i], f32, &k_f32[i], &v_f32[i], s[i].slot, s[i].first, pos, step == 1,
                               MX_FLOAT32, &kn_f32);
        }
        mx_array all[3] = {ours, mlx, f32};
        CHECK(mx_eval(all, 3) == 0);
        CHECK(mx_cuda_layers_timed_out(c) == 0);
        if (old_k) {
            mx_array row = mx_slice(old_k, (int[]){0, 0, pos}, (int[]){1, sh->n_kv, pos + 1}, NULL, 3);
            mx_array row_ref = mx_slice(old_ref, (int[]){0, 0, pos}, (int[]){1, sh->n_kv, pos + 1}, NULL, 3);
            CHECK_MSG(rel_diff(row, row_ref) == 0, "the old cache buffer was written");
        }
        double e_ours = rel_diff(ours, f32), e_mlx = rel_diff(mlx, f32);
        CHECK_MSG(e_ours <= 2 * e_mlx + 1.0 / 256, "%s step %d: ours %.3g from float32, MLX's ops %.3g", sh->name,
                  step, e_ours, e_mlx);
        for (int i = 0; i < N; i++) {
            int sl = s[i].slot;
            mx_array vo = mx_slice(s[i].v_cache, (int[]){0, 0, sl}, (int[]){1, sh->n_kv, sl + 1}, NULL, 3);
            mx_array vf = mx_slice(v_f32[i], (int[]){0, 0, sl}, (int[]){1, sh->n_kv, sl + 1}, NULL, 3);
            mx_array vm = mx_slice(v_mlx[i], (int[]){0, 0, sl}, (int[]){1, sh->n_kv, sl + 1}, NULL, 3);
            CHECK_MSG(rel_diff(vo, vf) <= 2 * rel_diff(vm, vf) + 1.0 / 256, "%s step %d: layer %d's value row",
                      sh->name, step, i);
        }
        fprintf(stderr, "  %-26s step %d: to float32 ours %.2e, MLX's ops %.2e\n", sh->name, step, e_ours, e_mlx);
    }
    mx_cuda_layers_free(c);
    mx_scope_close(scope);
}

static void test_three_layers(void) {
    const shape llama = {"three layers", 1024, 8, 2, 128, 2816, 64, 1, 0, 0, MX_BFLOAT16, 0, 0, 0, 0};
    three_layers(&llama, 0);
    /* windows of 150: at slot 160 layer 0 drops keys, the others not yet */
    const shape gemma = {"three gemma layers", 1152, 4, 1, 256, 2304, 64, 0, 0, 0, MX_BFLOAT16, 0, 0, 1, 256};
    three_layers(&gemma, 150);
}

static void test_shapes(void) {
    static const shape shapes[] = {
        /* name, hidden, heads, kv heads, head dim, ff, group, bias, trad, window, dtype, keys,
         * attention only, gemma, query_pre_attn_scalar */
        {"llama-3.2-3b-like", 3072, 24, 8, 128, 8192, 64, 0, 0, 0, MX_BFLOAT16, 0, 0, 0, 0},
        {"qwen2.5-3b-like (bias)", 2048, 16, 2, 128, 11008, 64, 1, 0, 0, MX_BFLOAT16, 0, 0, 0, 0},
        {"qwen2.5-0.5b-like", 896, 14, 2, 64, 4864, 32, 1, 0, 0, MX_BFLOAT16, 0, 0, 0, 0},
        {"window 37, traditional", 1024, 8, 8, 128, 2816, 128, 0, 1, 37, MX_BFLOAT16, 0, 0, 0, 0},
        {"float16, MHA", 1024, 8, 8, 128, 2048, 64, 0, 0, 0, MX_FLOAT16, 0, 0, 0, 0},
        {"float16, GQA 4", 2048, 16, 4, 128, 5632, 32, 1, 0, 0, MX_FLOAT16, 0, 0, 0, 0},
        /* the attention alone (a dropped key or chunk shows), and 2112+ keys
         * over 2 kv heads: as many chunks as blocks allow, the last empty */
        {"attention only, 8 kv heads", 3072, 24, 8, 128, 1024, 64, 0, 0, 0, MX_BFLOAT16, 300, 1, 0, 0},
        {"attention only, 2112 keys", 2048, 16, 2, 128, 1024, 64, 1, 0, 0, MX_BFLOAT16, 2112, 1, 0, 0},
        {"2112 keys, window 1000", 2048, 16, 2, 128, 1024, 64, 1, 0, 1000, MX_BFLOAT16, 2112, 1, 0, 0},
        /* Gemma 2: gemma-2-2b's shape; 27b's head dim 128 with scores scaled
         * by 1/sqrt(144); float16; the attention alone over 2112 keys */
        {"gemma-2-2b-like", 2304, 8, 4, 256, 9216, 64, 0, 0, 0, MX_BFLOAT16, 0, 0, 1, 256},
        {"gemma, head dim 128, 1/12", 1152, 8, 4, 128, 3072, 64, 0, 0, 0, MX_BFLOAT16, 0, 0, 1, 144},
        {"gemma, float16", 1024, 8, 8, 128, 2048, 32, 0, 0, 0, MX_FLOAT16, 0, 0, 1, 0},
        {"gemma, attention only", 2304, 8, 4, 256, 1024, 64, 0, 0, 0, MX_BFLOAT16, 2112, 1, 1, 256},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) check_shape(&shapes[i]);
    /* "in use", or "in use (its code goes with every call)" with an MLX
     * that keys its module cache by the code (0.32.4) */
    CHECK_MSG(strncmp(mx_cuda_layer_status(), "in use", 6) == 0, "%s", mx_cuda_layer_status());
}

/* What the kernel does not take is refused with a reason, and a step
 * with a slot outside the cache fails with an error instead of running. */
static void test_misfits(void) {
    mx_scope *scope = mx_scope_open();
    shape sh = {"misfit", 256, 4, 2, 64, 512, 64, 0, 0, 0, MX_BFLOAT16, 0, 0, 0, 0};
    layer L = make_layer(&sh);
    mx_layer_step s = {
        .attn_norm = L.attn_norm, .mlp_norm = L.mlp_norm,
        .qkv = L.qkv, .o = L.o, .gate_up = L.gu, .down = L.down,
        .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .eps = 1e-5f,
        .inv_freq = L.inv_freq, .attn_scale = 0.125f,
    };
    CHECK(mx_cuda_layers_ready(&s, 1) == NULL);
    mx_layer_step bad = s;
    bad.gelu = 1;
    CHECK(mx_cuda_layers_ready(&bad, 1) != NULL);
    bad = s;
    bad.n_kv_heads = 3; /* 4 heads do not share 3 kv heads */
    CHECK(mx_cuda_layers_ready(&bad, 1) != NULL);
    bad = s;
    bad.o.bits = 8;
    CHECK(mx_cuda_layers_ready(&bad, 1) != NULL);
    bad = s;
    bad.head_dim = 32, bad.n_heads = 8, bad.n_kv_heads = 4; /* same widths, head dim 32: refused */
    CHECK(mx_cuda_layers_ready(&bad, 1) != NULL);
    mx_layer_step two[2] = {s, s};
    two[1].rope_traditional = 1; /* each fits, but they differ */
    const char *why = mx_cuda_layers_ready(two, 2);
    CHECK_MSG(why && strstr(why, "differ"), "%s", why ? why : "accepted");
    two[1] = s;
    two[1].rope_base = 500000.0f; /* angles from another base than layer 0's table */
    why = mx_cuda_layers_ready(two, 2);
    CHECK_MSG(why && strstr(why, "RoPE base"), "%s", why ? why : "accepted");
    CHECK(mx_cuda_layers_ready(&s, 0) != NULL);
    CHECK(strncmp(mx_cuda_layer_status(), "not used: ", 10) == 0);
    mx_cuda_layers *c = mx_cuda_layers_new(&s, 1);
    CHECK(c != NULL);
    s.k_cache = random_array((int[]){1, 2, 16, 64}, 4, MX_BFLOAT16, 1.0f, 0.0f);
    s.v_cache = random_array((int[]){1, 2, 16, 64}, 4, MX_BFLOAT16, 1.0f, 0.0f);
    mx_array h = random_array((int[]){1, 1, 256}, 3, MX_BFLOAT16, 1.0f, 0.0f);
    s.slot = 16;
    CHECK(mx_cuda_layers_step(c, h, &s, 1) == NULL);
    CHECK(strstr(mx_error(), "slot") != NULL);
    mx_clear_error();
    s.slot = 3;
    mx_array f32h = mx_astype(h, MX_FLOAT32);
    CHECK(mx_cuda_layers_step(c, f32h, &s, 1) == NULL);
    mx_clear_error();
    /* two layers for a state made for one; the second layer's slot past its
     * cache (each layer has its own); the layers at different positions */
    two[0] = s, two[1] = s;
    CHECK(mx_cuda_layers_step(c, h, two, 2) == NULL);
    CHECK(strstr(mx_error(), "not the layers") != NULL);
    mx_clear_error();
    mx_cuda_layers *c2 = mx_cuda_layers_new(two, 2);
    CHECK(c2 != NULL);
    two[1].slot = 16;
    CHECK(mx_cuda_layers_step(c2, h, two, 2) == NULL);
    CHECK(strstr(mx_error(), "slot") != NULL);
    mx_clear_error();
    two[1].slot = 4, two[1].position = 5;
    CHECK(mx_cuda_layers_step(c2, h, two, 2) == NULL);
    CHECK(strstr(mx_error(), "positions") != NULL);
    mx_clear_error();
    bad = s;
    bad.post_attn_norm = L.mlp_norm, bad.post_mlp_norm = L.attn_norm; /* post-norms without GeGLU */
    CHECK(mx_cuda_layers_ready(&bad, 1) != NULL);
    mx_array ok = mx_cuda_layers_step(c, h, &s, 1);
    CHECK(ok != NULL && mx_eval(&ok, 1) == 0);
    mx_cuda_layers_free(c2);
    mx_cuda_layers_free(c);
    mx_scope_close(scope);
}

int main(void) {
    if (!mx_cuda_available() || mx_set_device(1) != 0) {
        printf("skipped: no CUDA backend here\n");
        return 77;
    }
    RUN(test_shapes);
    RUN(test_three_layers);
    RUN(test_misfits);
    return check_summary();
}
