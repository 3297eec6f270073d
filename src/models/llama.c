/* llama.c - the Llama decoder, which also serves Mistral and Qwen2: they
 * differ only by config (q/k/v bias, tied embeddings, rope theta and
 * scaling, sliding window), never by code.
 *
 *   h = embed(ids)
 *   per layer: h += attn(rms_norm(h)); h += mlp(rms_norm(h))
 *   logits = lm_head(rms_norm(h)) */
#include <stdio.h>

#include "models/layers.h"
#include "util/error.h"

static int llama_load_layer(gm_model *m, gm_weights *w, int i) {
    const gm_config *c = &m->cfg;
    gm_layer *l = &m->layers[i];
    int hidden = c->hidden_size;
    char n[160];
    int rc = gm_layer_load_linears(l, w, c, i);
    if (rc) return rc;
    snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", i);
    if ((rc = gm_norm_load(&l->attn_norm, w, n, hidden))) return rc;
    snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", i);
    if ((rc = gm_norm_load(&l->mlp_norm, w, n, hidden))) return rc;
    l->sliding = c->sliding_window > 0;
    return 0;
}

static int llama_load(gm_model *m, gm_weights *w) {
    return gm_decoder_load(m, w, llama_load_layer, gm_norm_load);
}

static mx_array llama_forward(gm_model *m, mx_array ids, gm_kv_cache *cache, int logits) {
    mx_array h = mx_astype(gm_embedding_lookup(&m->embed, ids, m->embed_dtype), gm_model_dtype(m));
    int t = mx_dim(ids, 1), fused = gm_fused_step_usable(m, t);
    gm_layer_walk w;
    if (fused == GM_FUSED_ALL) {
        gm_walk_fused_all(&w, m, h, t, cache);
    } else {
        gm_walk_begin(&w, h, t, m->cfg.num_layers);
        for (int i = 0; i < m->cfg.num_layers && w.h; i++) {
            const gm_layer *l = &m->layers[i];
            gm_walk_open(&w);
            mx_array x = w.h;
            if (fused == GM_FUSED_LAYER) {
                x = gm_fused_layer(m, i, x, cache);
            } else {
                x = mx_add(x, gm_self_attention(m, l, i, gm_rms_norm(m, x, l->attn_norm), cache));
                x = mx_add(x, gm_mlp(l, gm_rms_norm(m, x, l->mlp_norm), 0));
            }
            if (gm_walk_close(&w, x, i)) break;
        }
    }
    h = gm_walk_finish(&w, cache, t, logits);
    if (!h || logits == GM_LOGITS_NONE) return h;
    return gm_unembed(m, h);
}

const gm_arch gm_arch_llama = {"llama", llama_load, llama_forward, "llama3"};
const gm_arch gm_arch_mistral = {"mistral", llama_load, llama_forward, "mistral"};
const gm_arch gm_arch_qwen2 = {"qwen2", llama_load, llama_forward, "chatml"};
