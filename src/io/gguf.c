/* gguf.c - GGUF through MLX's reader (src/mlx): Q4_0/Q4_1/Q8_0 tensors
 * arrive already as MLX affine triples (groups of 32); we map llama.cpp's
 * tensor names onto ours and read the hyperparameters from metadata. */
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "util/error.h"

/* Metadata we keep while the reader streams it to us. */
typedef struct {
    gm_weights *w;
    char arch[32];
    /* numeric keys, by suffix after "<arch>." */
    double embedding_length, feed_forward_length, block_count, head_count, head_count_kv,
        rms_eps, rope_base, context_length, vocab_size, key_length, rope_scale_factor;
    char rope_scaling_type[16];
    /* tokenizer */
    char tok_model[16], tok_pre[32];
    char **tokens, **merges;
    size_t n_tokens, n_merges;
    float *scores;
    int32_t *token_types;
    size_t n_scores, n_types;
    double bos, eos, unk, pad, eot, add_bos, add_eos, add_space_prefix;
    char *chat_template;
    int renamed_failed;
} gguf_meta;

static const struct {
    const char *gguf, *hf;
} layer_names[] = {
    {"attn_norm", "input_layernorm"},   {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

/* "blk.3.attn_q.weight" → "model.layers.3.self_attn.q_proj.weight"; names
 * we do not know keep their GGUF name (reported as unused). */
static void hf_name(const char *g, char *out, size_t cap) {
    const char *suffix = strrchr(g, '.');
    size_t stem_len = suffix ? (size_t)(suffix - g) : strlen(g);
    char stem[128];
    if (!suffix || stem_len >= sizeof stem) {
        snprintf(out, cap, "%s", g);
        return;
    }
    memcpy(stem, g, stem_len);
    stem[stem_len] = 0;
    int layer;
    char part[64];
    if (sscanf(stem, "blk.%d.%63s", &layer, part) == 2) {
        for (size_t i = 0; i < sizeof layer_names / sizeof *layer_names; i++)
            if (!strcmp(part, layer_names[i].gguf)) {
                snprintf(out, cap, "model.layers.%d.%s%s", layer, layer_names[i].hf, suffix);
                return;
            }
    } else if (!strcmp(stem, "token_embd")) {
        snprintf(out, cap, "model.embed_tokens%s", suffix);
        return;
    } else if (!strcmp(stem, "output_norm")) {
        snprintf(out, cap, "model.norm%s", suffix);
        return;
    } else if (!strcmp(stem, "output")) {
        snprintf(out, cap, "lm_head%s", suffix);
        return;
    }
    snprintf(out, cap, "%s", g);
}

static int on_tensor(const char *name, mx_array a, void *user) {
    gguf_meta *g = user;
    char hf[256];
    hf_name(name, hf, sizeof hf);
    return gm_weights_put(g->w, hf, a) ? 1 : 0;
}

static char **copy_strings(const mx_meta_value *v, size_t *n) {
    char **out = calloc(v->n_strings ? v->n_strings : 1, sizeof(char *));
    if (!out) return NULL;
    for (size_t i = 0; i < v->n_strings; i++) {
        out[i] = strdup(v->strings[i]);
        if (!out[i]) {
            for (size_t j = 0; j < i; j++) free(out[j]);
            free(out);
            return NULL;
        }
    }
    *n = v->n_strings;
    return out;
}

static double scalar(const mx_meta_value *v) {
    double d = -1;
    if (v->kind == MX_META_ARRAY && mx_size(v->array) == 1 && mx_item_float(v->array, &d) == 0) return d;
    return -1;
}

static int on_meta(const char *key, const mx_meta_value *v, void *user) {
    gguf_meta *g = user;
    if (!strcmp(key, "general.architecture") && v->kind == MX_META_STRING) {
        snprintf(g->arch, sizeof g->arch, "%s", v->string);
        return 0;
    }
    if (!strncmp(key, "tokenizer.", 10)) {
        const char *k = key + 10;
        if (!strcmp(k, "ggml.model") && v->kind == MX_META_STRING) snprintf(g->tok_model, sizeof g->tok_model, "%s", v->string);
        else if (!strcmp(k, "ggml.pre") && v->kind == MX_META_STRING) snprintf(g->tok_pre, sizeof g->tok_pre, "%s", v->string);
        else if (!strcmp(k, "ggml.tokens") && v->kind == MX_META_STRINGS) g->tokens = copy_strings(v, &g->n_tokens);
        else if (!strcmp(k, "ggml.merges") && v->kind == MX_META_STRINGS) g->merges = copy_strings(v, &g->n_merges);
        else if (!strcmp(k, "ggml.scores") && v->kind == MX_META_ARRAY) {
            g->n_scores = mx_size(v->array);
            g->scores = malloc(sizeof(float) * (g->n_scores ? g->n_scores : 1));
            if (!g->scores || mx_read(v->array, MX_FLOAT32, g->scores, sizeof(float) * g->n_scores)) return 1;
        } else if (!strcmp(k, "ggml.token_type") && v->kind == MX_META_ARRAY) {
            g->n_types = mx_size(v->array);
            g->token_types = malloc(sizeof(int32_t) * (g->n_types ? g->n_types : 1));
            if (!g->token_types || mx_read(v->array, MX_INT32, g->token_types, sizeof(int32_t) * g->n_types)) return 1;
        } else if (!strcmp(k, "ggml.bos_token_id")) g->bos = scalar(v);
        else if (!strcmp(k, "ggml.eos_token_id")) g->eos = scalar(v);
        else if (!strcmp(k, "ggml.unknown_token_id")) g->unk = scalar(v);
        else if (!strcmp(k, "ggml.padding_token_id")) g->pad = scalar(v);
        else if (!strcmp(k, "ggml.eot_token_id")) g->eot = scalar(v);
        else if (!strcmp(k, "ggml.add_bos_token")) g->add_bos = scalar(v);
        else if (!strcmp(k, "ggml.add_eos_token")) g->add_eos = scalar(v);
        else if (!strcmp(k, "ggml.add_space_prefix")) g->add_space_prefix = scalar(v);
        else if (!strcmp(k, "chat_template") && v->kind == MX_META_STRING) g->chat_template = strdup(v->string);
        return 0;
    }
    /* "<arch>.<name>": the architecture key may come later, so match any
     * prefix up to the first dot. */
    const char *dot = strchr(key, '.');
    if (!dot || !strncmp(key, "general.", 8)) return 0;
    const char *k = dot + 1;
    if (!strcmp(k, "rope.scaling.type") && v->kind == MX_META_STRING) {
        snprintf(g->rope_scaling_type, sizeof g->rope_scaling_type, "%s", v->string);
        return 0;
    }
    double d = scalar(v);
    if (!strcmp(k, "embedding_length")) g->embedding_length = d;
    else if (!strcmp(k, "feed_forward_length")) g->feed_forward_length = d;
    else if (!strcmp(k, "block_count")) g->block_count = d;
    else if (!strcmp(k, "attention.head_count")) g->head_count = d;
    else if (!strcmp(k, "attention.head_count_kv")) g->head_count_kv = d;
    else if (!strcmp(k, "attention.layer_norm_rms_epsilon")) g->rms_eps = d;
    else if (!strcmp(k, "rope.freq_base")) g->rope_base = d;
    else if (!strcmp(k, "context_length")) g->context_length = d;
    else if (!strcmp(k, "vocab_size")) g->vocab_size = d;
    else if (!strcmp(k, "attention.key_length")) g->key_length = d;
    else if (!strcmp(k, "rope.scaling.factor")) g->rope_scale_factor = d;
    return 0;
}

static void free_meta(gguf_meta *g) {
    for (size_t i = 0; g->tokens && i < g->n_tokens; i++) free(g->tokens[i]);
    for (size_t i = 0; g->merges && i < g->n_merges; i++) free(g->merges[i]);
    free(g->tokens);
    free(g->merges);
    free(g->scores);
    free(g->token_types);
    free(g->chat_template);
}

static int to_id(double d) { return d >= 0 ? (int)d : -1; }

static int fill_config(gm_model *m, const gguf_meta *g, const char *path) {
    gm_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    if (strcmp(g->arch, "llama") && strcmp(g->arch, "qwen2"))
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: GGUF architecture \"%s\" is not supported (llama, qwen2 are)", path, g->arch[0] ? g->arch : "(none)");
    snprintf(c->model_type, sizeof c->model_type, "%s", g->arch);
    if (g->embedding_length <= 0 || g->block_count <= 0 || g->head_count <= 0 || g->feed_forward_length <= 0)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: GGUF metadata lacks %s.embedding_length/block_count/attention.head_count/feed_forward_length", path, g->arch);
    c->hidden_size = (int)g->embedding_length;
    c->intermediate_size = (int)g->feed_forward_length;
    c->num_layers = (int)g->block_count;
    c->num_heads = (int)g->head_count;
    c->num_kv_heads = g->head_count_kv > 0 ? (int)g->head_count_kv : c->num_heads;
    c->head_dim = g->key_length > 0 ? (int)g->key_length : c->hidden_size / c->num_heads;
    c->vocab_size = g->vocab_size > 0 ? (int)g->vocab_size : (int)g->n_tokens;
    c->max_position_embeddings = g->context_length > 0 ? (int)g->context_length : 4096;
    c->rms_norm_eps = g->rms_eps > 0 ? (float)g->rms_eps : 1e-5f;
    c->rope_theta = g->rope_base > 0 ? (float)g->rope_base : 10000.0f;
    /* llama.cpp's converter permutes Llama's Q/K rows so that rotating
     * interleaved pairs equals HF's rotate-half; Qwen2 is left as is. */
    c->rope_traditional = !strcmp(g->arch, "llama");
    c->attention_bias = !strcmp(g->arch, "qwen2");
    if (!strcmp(g->rope_scaling_type, "linear") && g->rope_scale_factor > 0) {
        c->rope_scaling = GM_ROPE_LINEAR;
        c->rope_factor = (float)g->rope_scale_factor;
    } else if (g->rope_scaling_type[0] && strcmp(g->rope_scaling_type, "none")) {
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: rope scaling \"%s\" is not supported", path, g->rope_scaling_type);
    }
    c->tie_word_embeddings = 1; /* lm_head.weight present overrides */
    c->dtype = MX_FLOAT32;
    c->bos_id = to_id(g->bos);
    gm_config_add_eos(c, to_id(g->eos));
    gm_config_add_eos(c, to_id(g->eot));
    return gm_config_validate(c, path);
}

static int build_tokenizer(gm_model *m, const gguf_meta *g, const char *path) {
    if (!g->tokens || !g->n_tokens) {
        snprintf(m->notes, sizeof m->notes, "no tokenizer in the GGUF metadata: only token ids can be used");
        return 0;
    }
    gm_gguf_tokenizer_spec spec = {
        .model = g->tok_model[0] ? g->tok_model : "gpt2",
        .pre = g->tok_pre[0] ? g->tok_pre : NULL,
        .tokens = (const char *const *)g->tokens,
        .n_tokens = g->n_tokens,
        .scores = g->n_scores == g->n_tokens ? g->scores : NULL,
        .token_types = g->n_types == g->n_tokens ? g->token_types : NULL,
        .merges = (const char *const *)g->merges,
        .n_merges = g->n_merges,
        .bos_id = to_id(g->bos),
        .eos_id = to_id(g->eos),
        .unk_id = to_id(g->unk),
        .pad_id = to_id(g->pad),
        .eot_id = to_id(g->eot),
        .add_bos = g->add_bos >= 0 ? (int)g->add_bos : -1,
        .add_eos = g->add_eos >= 0 ? (int)g->add_eos : -1,
        .add_space_prefix = g->add_space_prefix >= 0 ? (int)g->add_space_prefix : -1,
        .chat_template = g->chat_template,
    };
    int rc = gm_tokenizer_from_gguf(&spec, &m->tok);
    if (rc) return gm_fail_context(rc, "%s: tokenizer", path);
    return 0;
}

int gm_gguf_load(const char *path, gm_model *m, gm_weights *w, gm_load_progress progress, void *user) {
    gguf_meta g;
    memset(&g, 0, sizeof g);
    g.w = w;
    g.bos = g.eos = g.unk = g.pad = g.eot = g.add_bos = g.add_eos = g.add_space_prefix = -1;
    if (progress) progress(0.1f, "reading GGUF file", user);
    int rc = 0;
    if (mx_load_gguf(path, on_tensor, on_meta, &g)) {
        const char *e = mx_error();
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: not a readable GGUF file: %s", path, *e ? e : gm_error_message());
    }
    if (!rc) rc = fill_config(m, &g, path);
    if (!rc) rc = build_tokenizer(m, &g, path);
    if (!rc && g.chat_template) m->chat_template = strdup(g.chat_template);
    snprintf(m->format, sizeof m->format, "gguf");
    free_meta(&g);
    return rc;
}
