/* layers.c - shared transformer blocks over the MLX shim: linear layers
 * (dense or affine-quantized), embeddings, RMSNorm, RoPE, attention with a
 * KV cache and gated MLPs. Model files compose these. */
#include "models/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "util/env.h"
#include "util/error.h"

static int shape_error(const char *name, mx_array a, int rows, int cols) {
    return gm_fail(GOMLX_ERR_FORMAT, "tensor %s has shape [%d, %d], expected [%d, %d]", name,
                   mx_dim(a, 0), mx_ndim(a) > 1 ? mx_dim(a, 1) : 0, rows, cols);
}

int gm_linear_load(gm_linear *l, gm_weights *w, const gm_config *cfg, const char *prefix, int in,
                   int out, int want_bias) {
    char name[256];
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    snprintf(name, sizeof name, "%s.weight", prefix);
    l->w = gm_weights_take(w, name);
    if (!l->w) return gm_fail(GOMLX_ERR_FORMAT, "missing tensor %s", name);
    snprintf(name, sizeof name, "%s.scales", prefix);
    l->scales = gm_weights_take(w, name);
    snprintf(name, sizeof name, "%s.biases", prefix);
    l->biases = gm_weights_take(w, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    l->bias = gm_weights_take(w, name);
    snprintf(name, sizeof name, "%s.weight", prefix);

    if (mx_ndim(l->w) != 2) return gm_fail(GOMLX_ERR_FORMAT, "tensor %s must be 2-D, has %d dims", name, mx_ndim(l->w));
    if (l->scales) {
        if (!l->biases) return gm_fail(GOMLX_ERR_FORMAT, "%s.scales without %s.biases", prefix, prefix);
        if (mx_ndim(l->scales) != 2 || mx_dim(l->scales, 0) != out || mx_get_dtype(l->w) != MX_UINT32)
            return gm_fail(GOMLX_ERR_FORMAT, "quantized tensor %s has inconsistent scales or packing", name);
        int bits, group;
        if (!gm_config_quant_for(cfg, prefix, &bits, &group)) {
            /* No config entry (GGUF, or a config that omits it): MLX's
             * GGUF reader packs groups of 32, so the packing ratio gives bits. */
            group = 32;
            bits = 0;
        }
        if (!bits) {
            int packed = mx_dim(l->w, 1), groups = mx_dim(l->scales, 1);
            bits = groups ? packed * 32 / (groups * group) : 0;
        }
        if (bits <= 0 || mx_dim(l->scales, 1) * group != in || mx_dim(l->w, 1) * 32 != in * bits ||
            mx_dim(l->w, 0) != out)
            return gm_fail(GOMLX_ERR_FORMAT,
                           "quantized tensor %s: packed shape [%d, %d] with %d groups does not fit [%d, %d] at %d bits, group %d",
                           name, mx_dim(l->w, 0), mx_dim(l->w, 1), mx_dim(l->scales, 1), out, in, bits, group);
        l->bits = bits;
        l->group_size = group;
    } else if (mx_dim(l->w, 0) != out || mx_dim(l->w, 1) != in) {
        return shape_error(name, l->w, out, in);
    }
    if (want_bias && !l->bias) return gm_fail(GOMLX_ERR_FORMAT, "missing tensor %s.bias", prefix);
    if (l->bias && (mx_ndim(l->bias) != 1 || mx_dim(l->bias, 0) != out))
        return gm_fail(GOMLX_ERR_FORMAT, "tensor %s.bias has the wrong shape (expected [%d])", prefix, out);
    return 0;
}

/* Stacks linears that read the same input into one along the output
 * axis: affine-quantized rows are independent, so stacking w, scales and
 * biases row-wise gives exactly the same products. Leaves the parts as
 * they are when they differ in format. */
static int stack_linears(gm_linear *out, gm_linear **parts, int n) {
    int outs = 0, biased = 0;
    for (int k = 0; k < n; k++) {
        const gm_linear *p = parts[k];
        if (p->bits != parts[0]->bits || p->group_size != parts[0]->group_size || p->in != parts[0]->in ||
            mx_get_dtype(p->w) != mx_get_dtype(parts[0]->w) ||
            (p->scales && mx_get_dtype(p->scales) != mx_get_dtype(parts[0]->scales)))
            return 0;
        outs += p->out;
        biased += p->bias != NULL;
    }
    if (biased && biased != n) return 0;
    mx_array w[3], s[3], b[3], bias[3];
    for (int k = 0; k < n; k++) {
        w[k] = parts[k]->w, s[k] = parts[k]->scales, b[k] = parts[k]->biases, bias[k] = parts[k]->bias;
    }
    memset(out, 0, sizeof *out);
    out->bits = parts[0]->bits;
    out->group_size = parts[0]->group_size;
    out->in = parts[0]->in;
    out->out = outs;
    out->w = mx_keep(mx_concat(w, n, 0));
    if (out->bits) {
        out->scales = mx_keep(mx_concat(s, n, 0));
        out->biases = mx_keep(mx_concat(b, n, 0));
    }
    if (biased) out->bias = mx_keep(mx_concat(bias, n, 0));
    if (!out->w || (out->bits && (!out->scales || !out->biases)) || (biased && !out->bias)) {
        gm_linear_free(out);
        return gm_fail_mlx("stacking projections");
    }
    for (int k = 0; k < n; k++) gm_linear_free(parts[k]);
    return 0;
}

int gm_layer_load_linears(gm_layer *l, gm_weights *w, const gm_config *c, int i) {
    int hidden = c->hidden_size, q_dim = c->num_heads * c->head_dim,
        kv_dim = c->num_kv_heads * c->head_dim, ff = c->intermediate_size;
    const struct {
        gm_linear *field;
        const char *name;
        int in, out, bias;
    } parts[] = {
        {&l->wq, "self_attn.q_proj", hidden, q_dim, c->attention_bias},
        {&l->wk, "self_attn.k_proj", hidden, kv_dim, c->attention_bias},
        {&l->wv, "self_attn.v_proj", hidden, kv_dim, c->attention_bias},
        /* o_proj's bias is optional: Llama has it with attention_bias, Qwen2 never. */
        {&l->wo, "self_attn.o_proj", q_dim, hidden, 0},
        {&l->w_gate, "mlp.gate_proj", hidden, ff, c->mlp_bias},
        {&l->w_up, "mlp.up_proj", hidden, ff, c->mlp_bias},
        {&l->w_down, "mlp.down_proj", ff, hidden, c->mlp_bias},
    };
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "model.layers.%d.%s", i, parts[k].name);
        int rc = gm_linear_load(parts[k].field, w, c, prefix, parts[k].in, parts[k].out, parts[k].bias);
        if (rc) return rc;
    }
    /* GOMLX_STACK_PROJECTIONS=0 keeps them apart (A/B runs). */
    if (gm_env_off("GOMLX_STACK_PROJECTIONS")) return 0;
    gm_linear *qkv[3] = {&l->wq, &l->wk, &l->wv}, *gate_up[2] = {&l->w_gate, &l->w_up};
    int rc = stack_linears(&l->wqkv, qkv, 3);
    return rc ? rc : stack_linears(&l->w_gate_up, gate_up, 2);
}

void gm_linear_free(gm_linear *l) {
    mx_free(l->w);
    mx_free(l->scales);
    mx_free(l->biases);
    mx_free(l->bias);
    memset(l, 0, sizeof *l);
}

mx_array gm_linear_apply(const gm_linear *l, mx_array x) {
    mx_array y;
    if (l->bits)
        y = mx_quantized_matmul(x, l->w, l->scales, l->biases, 1, l->group_size, l->bits);
    else
        y = mx_matmul(x, mx_swapaxes(l->w, 0, 1));
    if (l->bias) y = mx_add(y, l->bias);
    return y;
}

mx_array gm_embedding_lookup(const gm_linear *table, mx_array ids, mx_dtype dtype) {
    if (!table->bits) return mx_astype(mx_take(table->w, ids, 0), dtype);
    mx_array w = mx_take(table->w, ids, 0);
    /* MLX dequantizes in the scales' dtype: widen the gathered rows first so
     * float16 GGUF scales do not round float32 embeddings. */
    mx_array s = mx_astype(mx_take(table->scales, ids, 0), dtype);
    mx_array b = mx_astype(mx_take(table->biases, ids, 0), dtype);
    return mx_dequantize(w, s, b, table->group_size, table->bits, dtype);
}

int gm_norm_load(mx_array *out, gm_weights *w, const char *name, int n) {
    *out = gm_weights_take(w, name);
    if (!*out) return gm_fail(GOMLX_ERR_FORMAT, "missing tensor %s", name);
    if (mx_ndim(*out) != 1 || mx_dim(*out, 0) != n)
        return gm_fail(GOMLX_ERR_FORMAT, "tensor %s has the wrong shape (expected [%d])", name, n);
    return 0;
}

int gm_decoder_load(gm_model *m, gm_weights *w, gm_layer_loader load_layer, gm_norm_loader load_norm) {
    const gm_config *c = &m->cfg;
    int rc = gm_linear_load(&m->embed, w, c, "model.embed_tokens", c->hidden_size, c->vocab_size, 0);
    if (rc) return rc;
    for (int i = 0; i < c->num_layers; i++)
        if ((rc = load_layer(m, w, i))) return rc;
    if ((rc = load_norm(&m->final_norm, w, "model.norm.weight", c->hidden_size))) return rc;
    if (gm_weights_get(w, "lm_head.weight"))
        return gm_linear_load(&m->lm_head, w, c, "lm_head", c->hidden_size, c->vocab_size, 0);
    if (!c->tie_word_embeddings)
        return gm_fail(GOMLX_ERR_FORMAT, "missing tensor lm_head.weight (tie_word_embeddings is false)");
    return 0;
}

mx_array gm_rms_norm(const gm_model *m, mx_array x, mx_array weight) {
    return mx_rms_norm(x, weight, m->cfg.rms_norm_eps);
}

mx_array gm_rope_freqs(const gm_config *c) {
    if (c->rope_scaling != GM_ROPE_LLAMA3) return NULL;
    /* Llama 3.1 scaling: long wavelengths are stretched by `factor`, short
     * ones kept, and the band between blended smoothly (Meta's recipe as
     * implemented by mlx-lm and transformers). */
    int half = c->head_dim / 2;
    float periods[512];
    if (half > 512) return NULL;
    double old_ctx = c->rope_original_max_position;
    double low_wavelen = old_ctx / c->rope_low_freq_factor;
    double high_wavelen = old_ctx / c->rope_high_freq_factor;
    for (int i = 0; i < half; i++) {
        double f = pow(c->rope_theta, (2.0 * i) / c->head_dim);
        double wavelen = 2.0 * M_PI * f;
        double scaled = wavelen > low_wavelen ? f * c->rope_factor : f;
        if (wavelen > high_wavelen && wavelen < low_wavelen) {
            double smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
            scaled = f / ((1.0 - smooth) / c->rope_factor + smooth);
        }
        periods[i] = (float)scaled;
    }
    int shape[1] = {half};
    return mx_from_data(periods, shape, 1, MX_FLOAT32);
}

static mx_array heads(mx_array x, int n_heads, int head_dim) {
    int t = mx_dim(x, 1);
    /* One position: [1, 1, n, d] and [1, n, 1, d] are the same memory, so
     * one op instead of two (graph building is per-op host time). */
    if (t == 1) return mx_reshape(x, (int[]){1, n_heads, 1, head_dim}, 4);
    int shape[4] = {1, t, n_heads, head_dim};
    int perm[4] = {0, 2, 1, 3};
    return mx_transpose(mx_reshape(x, shape, 4), perm, 4);
}

/* Boolean keep-mask [T, S] for queries at offset..offset+T-1 over keys at
 * key_start..key_start+S-1: causal, and within `window` positions when
 * window > 0. */
static mx_array attention_mask(int offset, int t, int key_start, int s, int window) {
    mx_array q = mx_reshape(mx_arange(offset, offset + t, 1, MX_INT32), (int[]){t, 1}, 2);
    mx_array k = mx_reshape(mx_arange(key_start, key_start + s, 1, MX_INT32), (int[]){1, s}, 2);
    mx_array keep = mx_greater_equal(q, k);
    if (window > 0) keep = mx_logical_and(keep, mx_less(mx_subtract(q, k), mx_scalar(window, MX_INT32)));
    return keep;
}

/* Attention by hand, for what the fused kernel cannot do (logit soft-capping). */
static mx_array attention_softcapped(const gm_model *m, mx_array q, mx_array k, mx_array v,
                                     float scale, mx_array keep) {
    int h = m->cfg.num_heads, kvh = m->cfg.num_kv_heads, d = m->cfg.head_dim;
    int t = mx_dim(q, 2), s = mx_dim(k, 2), rep = h / kvh;
    float cap = m->cfg.attn_logit_softcapping;
    q = mx_reshape(mx_scale(q, scale), (int[]){1, kvh, rep, t, d}, 5);
    k = mx_expand_dims(k, 2);
    v = mx_expand_dims(v, 2);
    mx_array scores = mx_matmul(q, mx_swapaxes(k, -1, -2)); /* [1, kvh, rep, t, s] */
    scores = mx_softcap_masked(scores, cap, keep);
    mx_array p = mx_softmax(scores, -1, 1);
    mx_array o = mx_matmul(p, v);
    (void)s;
    return mx_reshape(o, (int[]){1, h, t, d}, 4);
}

/* The stacked projection's columns [from, to) as heads [1, n, T, d]. */
static mx_array qkv_heads(mx_array qkv, int from, int to, int d) {
    int t = mx_dim(qkv, 1);
    return heads(mx_slice(qkv, (int[]){0, 0, from}, (int[]){1, t, to}, NULL, 3), (to - from) / d, d);
}

static mx_array rope_at(const gm_model *m, mx_array x, int offset) {
    const gm_config *c = &m->cfg;
    return mx_rope(x, c->head_dim, c->rope_traditional, c->rope_theta, m->rope_scale, offset,
                   m->rope_freqs);
}

/* q, k (rotated to start at offset) and v of x, as heads [1, n, T, d]. */
static void project_qkv(const gm_model *m, const gm_layer *layer, mx_array x, int offset,
                        mx_array *q, mx_array *k, mx_array *v) {
    const gm_config *c = &m->cfg;
    int d = c->head_dim, hq = c->num_heads, hkv = c->num_kv_heads, qd = hq * d, kvd = hkv * d;
    if (!layer->wqkv.w) {
        *q = rope_at(m, heads(gm_linear_apply(&layer->wq, x), hq, d), offset);
        *k = rope_at(m, heads(gm_linear_apply(&layer->wk, x), hkv, d), offset);
        *v = heads(gm_linear_apply(&layer->wv, x), hkv, d);
        return;
    }
    mx_array qkv = gm_linear_apply(&layer->wqkv, x);
    *v = qkv_heads(qkv, qd + kvd, qd + 2 * kvd, d);
    if (mx_device_is_gpu()) {
        /* q and k rotated by one RoPE call: one kernel fewer per layer on
         * the GPU. (MLX's CPU RoPE is a fallback of a dozen ops whose
         * temporaries span its whole input: there two calls peak lower.) */
        mx_array qk = rope_at(m, qkv_heads(qkv, 0, qd + kvd, d), offset);
        *q = mx_slice(qk, (int[]){0, 0}, (int[]){1, hq}, NULL, 2);
        *k = mx_slice(qk, (int[]){0, hq}, (int[]){1, hq + hkv}, NULL, 2);
    } else {
        *q = rope_at(m, qkv_heads(qkv, 0, qd, d), offset);
        *k = rope_at(m, qkv_heads(qkv, qd, qd + kvd, d), offset);
    }
}

float gm_attention_scale(const gm_config *c) {
    return c->query_pre_attn_scalar > 0 ? 1.0f / sqrtf(c->query_pre_attn_scalar)
                                        : 1.0f / sqrtf((float)c->head_dim);
}

int gm_layer_window(const gm_model *m, const gm_layer *l) {
    return l->sliding ? m->cfg.sliding_window : 0;
}

mx_array gm_self_attention(const gm_model *m, const gm_layer *layer, int li, mx_array x,
                      gm_kv_cache *cache) {
    const gm_config *c = &m->cfg;
    int t = mx_dim(x, 1), d = c->head_dim, offset = cache->offset;
    mx_array q, k, v;
    project_qkv(m, layer, x, offset, &q, &k, &v);
    mx_array keys, values;
    int window = gm_layer_window(m, layer), key_start;
    if (!q || !k || !v) return NULL;
    if (gm_kv_cache_update(cache, m, li, k, v, window, &keys, &values, &key_start)) return NULL;
    int s = offset + t - key_start;
    float scale = gm_attention_scale(c);
    /* Some held key is outside some query's window. */
    int windowed = window > 0 && s > window;
    float cap = c->attn_logit_softcapping > 0 ? c->attn_logit_softcapping : 0.0f;
    mx_array o;
    if ((cap > 0 || windowed) && mx_cpu_sdpa_on() &&
        gm_attention_supported(1, c->num_heads, c->num_kv_heads, t, s, d, 1)) {
        /* Our CPU kernel masks and caps as it goes: MLX's way builds the
         * [T, S] scores through the reference BLAS (Gemma 2 prefill). */
        o = mx_cpu_sdpa(q, keys, values, scale, 1, windowed ? window : 0, cap);
    } else if (cap > 0) {
        mx_array keep = (t > 1 || windowed) ? attention_mask(offset, t, key_start, s, window) : NULL;
        o = attention_softcapped(m, q, keys, values, scale, keep);
    } else if (windowed) {
        o = mx_sdpa(q, keys, values, scale, 0, attention_mask(offset, t, key_start, s, window));
    } else {
        o = mx_sdpa(q, keys, values, scale, t > 1, NULL);
    }
    int perm[4] = {0, 2, 1, 3};
    if (t > 1) o = mx_transpose(o, perm, 4);
    o = mx_reshape(o, (int[]){1, t, c->num_heads * d}, 3);
    return gm_linear_apply(&layer->wo, o);
}

mx_array gm_mlp(const gm_layer *l, mx_array x, int gelu) {
    /* gelu: the tanh approximation Gemma was trained with */
    if (l->w_gate_up.w)
        return gm_linear_apply(&l->w_down, mx_gated_stacked(gm_linear_apply(&l->w_gate_up, x), gelu));
    mx_array g = gm_linear_apply(&l->w_gate, x), u = gm_linear_apply(&l->w_up, x);
    return gm_linear_apply(&l->w_down, gelu ? mx_geglu(g, u) : mx_swiglu(g, u));
}

mx_array gm_unembed(const gm_model *m, mx_array h) {
    h = gm_rms_norm(m, h, m->final_norm);
    return gm_linear_apply(m->lm_head.w ? &m->lm_head : &m->embed, h);
}

/* Layers between evaluations of a GPU prefill: few enough that a batch
 * holds little, enough that the device rarely waits for the host. On an
 * H100 (512-token prompt) every 4 peaked at 1.06-1.09 x needed and now and
 * then 1.13 (Mistral-7B); every 2 at 1.03-1.04 for 1-4% of prompt tok/s
 * (docs/bench/h100-2026-11-27-s15-prefill-eval.txt). */
enum { WALK_EVAL_EVERY = 2 };

void gm_walk_eval_every(gm_layer_walk *w, int n) {
    if (!w->eval_every) return; /* not a GPU prefill */
    /* GOMLX_PREFILL_EVAL_EVERY overrides (A/B runs). */
    const char *e = getenv("GOMLX_PREFILL_EVAL_EVERY");
    w->eval_every = e && atoi(e) > 0 ? atoi(e) : n;
}

void gm_walk_begin(gm_layer_walk *w, mx_array h, int tokens, int layers) {
    memset(w, 0, sizeof *w);
    w->h = h;
    w->layers = layers;
    w->eval_every = tokens > 1 && mx_device_is_gpu();
    gm_walk_eval_every(w, WALK_EVAL_EVERY);
}

void gm_walk_open(gm_layer_walk *w) { w->scope = mx_scope_open(); }

int gm_walk_close(gm_layer_walk *w, mx_array out, int i) {
    out = mx_keep(out);
    mx_scope_close(w->scope);
    w->scope = NULL;
    if (w->owned) mx_free(w->h);
    w->h = out;
    w->owned = 1;
    if (out && w->eval_every && (i + 1) % w->eval_every == 0 && i + 1 < w->layers && mx_eval(&w->h, 1)) {
        mx_free(w->h);
        w->h = NULL;
    }
    return w->h ? 0 : -1;
}

mx_array gm_walk_end(gm_layer_walk *w) {
    if (!w->owned) return w->h;
    mx_array h = mx_copy_ref(w->h);
    mx_free(w->h);
    w->h = NULL;
    return h;
}

mx_array gm_walk_finish(gm_layer_walk *w, gm_kv_cache *cache, int t, int logits) {
    mx_array h = gm_walk_end(w);
    if (!h) return NULL;
    cache->offset += t;
    if (logits == GM_LOGITS_LAST) h = mx_slice(h, (int[]){0, t - 1}, (int[]){1, t}, NULL, 2);
    return h;
}
