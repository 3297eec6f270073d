/* gemma2.c - the Gemma 2 decoder. What sets it apart from Llama, all
 * following transformers' Gemma2 (the original; mlx-lm's port has no
 * sliding window):
 *
 *   h = embed(ids) * sqrt(hidden)            (scale rounded to the dtype)
 *   per layer i:
 *     h = h + post_attn_norm(attn(input_norm(h)))   sliding window when
 *     h = h + post_mlp_norm(geglu(pre_mlp_norm(h)))  (i+1) % pattern != 0
 *   logits = cap * tanh(embed^T(norm(h)) / cap)
 *
 * Every RMSNorm scales by (1 + w); attention logits are soft-capped and
 * scaled by 1/sqrt(query_pre_attn_scalar), which gm_attention reads from
 * the config. Embeddings are tied. */
#include <math.h>
#include <stdio.h>

#include "models/layers.h"
#include "util/error.h"

/* Loads a norm weight and stores 1 + w once, in the weight's own dtype (as
 * mlx-lm computes it), so the forward pass uses the plain RMSNorm. */
static int load_norm(mx_array *out, gm_weights *w, const char *name, int n) {
    mx_array raw;
    int rc = gm_norm_load(&raw, w, name, n);
    if (rc) {
        *out = raw; /* freed with the model */
        return rc;
    }
    mx_scope *scope = mx_scope_open();
    *out = mx_keep(mx_add(raw, mx_scalar(1.0, mx_get_dtype(raw))));
    mx_scope_close(scope);
    mx_free(raw);
    if (!*out) return gm_fail(GOMLX_ERR_INTERNAL, "computing 1 + %s: %s", name, mx_error());
    return 0;
}

static int gemma2_load_layer(gm_model *m, gm_weights *w, int i) {
    const gm_config *c = &m->cfg;
    gm_layer *l = &m->layers[i];
    int hidden = c->hidden_size;
    char n[160];
    int rc = gm_layer_load_linears(l, w, c, i);
    if (rc) return rc;
#define NORM(field, name)                                                 \
    snprintf(n, sizeof n, "model.layers.%d.%s.weight", i, name);          \
    if ((rc = load_norm(&l->field, w, n, hidden))) return rc;
    NORM(attn_norm, "input_layernorm")
    NORM(post_attn_norm, "post_attention_layernorm")
    NORM(mlp_norm, "pre_feedforward_layernorm")
    NORM(post_mlp_norm, "post_feedforward_layernorm")
#undef NORM
    int pattern = c->sliding_window_pattern > 0 ? c->sliding_window_pattern : 2;
    l->sliding = c->sliding_window > 0 && (i + 1) % pattern != 0;
    return 0;
}

static int gemma2_load(gm_model *m, gm_weights *w) {
    int rc = gm_decoder_load(m, w, gemma2_load_layer, load_norm);
    m->embed_scale = sqrtf((float)m->cfg.hidden_size);
    m->gelu_mlp = 1;
    return rc;
}

static mx_array gemma2_forward(gm_model *m, mx_array ids, gm_kv_cache *cache, int logits) {
    /* mx_scale rounds sqrt(hidden) to the activation dtype first, as
     * transformers and mlx-lm do: it matters in bf16 (sqrt(3584) -> 60). */
    mx_array h = mx_scale(gm_embedding_lookup(&m->embed, ids, m->embed_dtype), m->embed_scale);
    h = mx_astype(h, gm_model_dtype(m));
    int t = mx_dim(ids, 1), fused = gm_fused_step_usable(m, t);
    gm_layer_walk w;
    if (fused == GM_FUSED_ALL) {
        gm_walk_fused_all(&w, m, h, t, cache);
    } else {
        gm_walk_begin(&w, h, t, m->cfg.num_layers);
        /* Its prefill attention materializes the soft-capped scores (heads x
         * T x S, three a layer: MLX has no attention kernel that caps them),
         * all held until their batch has run, and how many of a batch's
         * temporaries are alive at once depends on when MLX's completion
         * handlers free them. Evaluated every 2 layers, Gemma-2-2B's
         * 512-token prefill on an H200 peaked at 1.05 x needed in 58 of 64
         * generations and 0.5-66 MB higher in 6 (two at 1.10 x), each time
         * inside one batch; every layer, 1.02-1.05 in all 64, for ~7% of
         * prompt tok/s (docs/PERFORMANCE.md, twenty-seventh session). */
        gm_walk_eval_every(&w, 1);
        for (int i = 0; i < m->cfg.num_layers && w.h; i++) {
            const gm_layer *l = &m->layers[i];
            gm_walk_open(&w);
            mx_array x = w.h;
            if (fused == GM_FUSED_LAYER) {
                x = gm_fused_layer(m, i, x, cache);
            } else {
                mx_array a = gm_self_attention(m, l, i, gm_rms_norm(m, x, l->attn_norm), cache);
                x = mx_add(x, gm_rms_norm(m, a, l->post_attn_norm));
                mx_array f = gm_mlp(l, gm_rms_norm(m, x, l->mlp_norm), m->gelu_mlp);
                x = mx_add(x, gm_rms_norm(m, f, l->post_mlp_norm));
            }
            if (gm_walk_close(&w, x, i)) break;
        }
    }
    h = gm_walk_finish(&w, cache, t, logits);
    if (!h || logits == GM_LOGITS_NONE) return h;
    mx_array out = gm_unembed(m, h);
    if (m->cfg.final_logit_softcapping > 0) out = mx_softcap_masked(out, m->cfg.final_logit_softcapping, NULL);
    return out;
}

const gm_arch gm_arch_gemma2 = {"gemma2", gemma2_load, gemma2_forward, "gemma"};
