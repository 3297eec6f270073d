/* model.c - loading a model (MLX folder or GGUF file) into gm_model:
 * config, weights, tokenizer, chat template; materializing the weights
 * with progress; freeing everything. */
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "models/layers.h"
#include "util/error.h"
#include "util/file.h"

mx_dtype gm_model_dtype(const gm_model *m) { return m->cfg.dtype; }

/* MLX's promotion of two float types: the wider; float16 with bfloat16
 * gives float32. */
static mx_dtype float_promote(mx_dtype a, mx_dtype b) {
    if (b != MX_FLOAT32 && b != MX_FLOAT16 && b != MX_BFLOAT16) return a;
    return a == b ? a : MX_FLOAT32;
}

/* Every weight array of the model, for evaluation and accounting. */
static int model_arrays(const gm_model *m, mx_array *out, int cap) {
    int n = 0;
#define ADD(a) \
    if ((a) && n < cap) out[n++] = (a);
#define ADD_LINEAR(l) ADD((l).w) ADD((l).scales) ADD((l).biases) ADD((l).bias)
    ADD_LINEAR(m->embed)
    ADD_LINEAR(m->lm_head)
    ADD(m->final_norm)
    ADD(m->rope_freqs)
    for (int i = 0; m->layers && i < m->cfg.num_layers; i++) {
        const gm_layer *l = &m->layers[i];
        ADD_LINEAR(l->wq) ADD_LINEAR(l->wk) ADD_LINEAR(l->wv) ADD_LINEAR(l->wo)
        ADD_LINEAR(l->w_gate) ADD_LINEAR(l->w_up) ADD_LINEAR(l->w_down)
        ADD_LINEAR(l->wqkv) ADD_LINEAR(l->w_gate_up)
        ADD(l->attn_norm) ADD(l->mlp_norm) ADD(l->post_attn_norm) ADD(l->post_mlp_norm)
    }
#undef ADD_LINEAR
#undef ADD
    return n;
}

static uint64_t linear_params(const gm_linear *l) {
    return l->w ? (uint64_t)l->in * (uint64_t)l->out + (l->bias ? (uint64_t)l->out : 0) : 0;
}

static void count_params(gm_model *m) {
    const gm_config *c = &m->cfg;
    uint64_t n = linear_params(&m->embed) + linear_params(&m->lm_head) + (uint64_t)c->hidden_size;
    for (int i = 0; i < c->num_layers; i++) {
        const gm_layer *l = &m->layers[i];
        n += linear_params(&l->wq) + linear_params(&l->wk) + linear_params(&l->wv) +
             linear_params(&l->wo) + linear_params(&l->w_gate) + linear_params(&l->w_up) +
             linear_params(&l->w_down) + linear_params(&l->wqkv) + linear_params(&l->w_gate_up);
        n += (uint64_t)c->hidden_size * (2 + (l->post_attn_norm ? 1 : 0) + (l->post_mlp_norm ? 1 : 0));
    }
    m->n_params = n;
}

/* Reads every weight from disk now (MLX loads lazily), a layer's worth at
 * a time, so corrupt files fail here and progress is visible. */
static int materialize(gm_model *m, gm_load_progress progress, void *user) {
    int cap = 32 + m->cfg.num_layers * 40;
    mx_array *arrays = malloc(sizeof(mx_array) * (size_t)cap);
    if (!arrays) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    int n = model_arrays(m, arrays, cap), rc = 0;
    int batch = 32;
    uint64_t bytes = 0;
    for (int i = 0; i < n; i += batch) {
        int k = n - i < batch ? n - i : batch;
        if (mx_eval(arrays + i, k)) {
            rc = gm_fail(GOMLX_ERR_FORMAT, "reading weights: %s", mx_error());
            break;
        }
        if (progress) progress(0.8f + 0.2f * (float)(i + k) / (float)n, "reading weights", user);
    }
    for (int i = 0; i < n && !rc; i++) bytes += mx_nbytes(arrays[i]);
    m->weight_bytes = bytes;
    /* A one-token step reads every weight once, except an input embedding
     * table of its own (untied), of which it reads one row. */
    uint64_t lookup_only = 0;
    if (m->lm_head.w) {
        const gm_linear *e = &m->embed;
        mx_array parts[4] = {e->w, e->scales, e->biases, e->bias};
        for (int i = 0; i < 4; i++)
            if (parts[i]) lookup_only += mx_nbytes(parts[i]);
        lookup_only -= lookup_only / (uint64_t)(m->cfg.vocab_size > 0 ? m->cfg.vocab_size : 1);
    }
    m->step_weight_bytes = bytes - lookup_only;
    free(arrays);
    return rc;
}

static int read_optional(const char *dir, const char *name, char **text) {
    char *p = gm_path_join(dir, name);
    int rc = 1;
    *text = NULL;
    if (p && gm_file_exists(p)) rc = gm_read_file(p, text, NULL);
    free(p);
    return rc;
}

static int load_folder(gm_model *m, const char *dir, gm_weights *w, gm_load_progress progress,
                       void *user) {
    char *cfg_path = gm_path_join(dir, "config.json"), *text = NULL;
    int rc;
    if (!gm_file_exists(cfg_path)) {
        rc = gm_fail(GOMLX_ERR_NOT_FOUND, "%s has no config.json: not a model folder", dir);
        free(cfg_path);
        return rc;
    }
    rc = gm_read_file(cfg_path, &text, NULL);
    if (!rc) rc = gm_config_parse(text, cfg_path, &m->cfg);
    free(text);
    free(cfg_path);
    if (rc) return rc;
    if (read_optional(dir, "generation_config.json", &text) == 0) {
        gm_config_add_generation_config(&m->cfg, text);
        free(text);
    }
    if (progress) progress(0.05f, "loading tokenizer", user);
    char *tok_path = gm_path_join(dir, "tokenizer.json");
    if (gm_file_exists(tok_path)) {
        rc = gm_tokenizer_load(dir, &m->tok);
        if (rc) gm_fail_context(rc, "loading %s", tok_path);
    } else {
        snprintf(m->notes, sizeof m->notes, "no tokenizer.json: only token ids can be used");
    }
    free(tok_path);
    if (rc) return rc;
    const char *tmpl = m->tok ? gm_tokenizer_chat_template(m->tok) : NULL;
    if (tmpl) {
        m->chat_template = strdup(tmpl);
    } else if (read_optional(dir, "chat_template.jinja", &text) == 0) {
        m->chat_template = text;
    }
    snprintf(m->format, sizeof m->format, "mlx");
    return gm_weights_load_folder(dir, w, progress, user);
}

/* The first layer past the config's count that the files still hold
 * weights for (those the architecture took are gone from w). */
typedef struct {
    int num_layers, extra; /* extra: -1 while none is found */
} extra_layer;

static int find_extra_layer(const char *name, mx_array a, void *u) {
    (void)a;
    extra_layer *e = u;
    int i, n = 0;
    if (sscanf(name, "model.layers.%d.%n", &i, &n) == 1 && n > 0 && i >= e->num_layers) {
        e->extra = i;
        return 1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int gm_model_load(const char *path, gm_load_progress progress, void *user, gm_model **out) {
    *out = NULL;
    if (!path || !*path) return gm_fail(GOMLX_ERR_INVALID_INPUT, "no model path given");
    int is_dir = gm_is_dir(path), is_file = gm_file_exists(path);
    if (!is_dir && !is_file) return gm_fail(GOMLX_ERR_NOT_FOUND, "model not found: %s", path);
    gm_model *m = calloc(1, sizeof *m);
    gm_weights *w = gm_weights_new();
    int rc = 0;
    if (!m || !w) {
        rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        goto fail;
    }
    const char *base = strrchr(path, '/');
    snprintf(m->name, sizeof m->name, "%s", base && base[1] ? base + 1 : path);
    if (progress) progress(0.0f, "reading model files", user);
    if (is_dir)
        rc = load_folder(m, path, w, progress, user);
    else if (ends_with(path, ".gguf"))
        rc = gm_gguf_load(path, m, w, progress, user);
    else
        rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "%s is neither a model folder nor a .gguf file", path);
    if (rc) goto fail;

    m->arch = gm_arch_find(m->cfg.model_type);
    if (!m->arch) {
        rc = gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported", path, m->cfg.model_type);
        goto fail;
    }
    m->layers = calloc((size_t)m->cfg.num_layers, sizeof(gm_layer));
    if (!m->layers) {
        rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        goto fail;
    }
    m->rope_scale = m->cfg.rope_scaling == GM_ROPE_LINEAR ? 1.0f / m->cfg.rope_factor : 1.0f;
    m->embed_scale = 1.0f;
    /* A GGUF file may have set them already (rope_freqs.weight). */
    if (!m->rope_freqs) m->rope_freqs = mx_keep(gm_rope_freqs(&m->cfg));
    if ((rc = m->arch->load(m, w))) {
        gm_fail_context(rc, "%s", path);
        goto fail;
    }
    /* A config with fewer layers than the files would run a model cut
     * short (mlx-lm refuses the weights it has no place for). */
    extra_layer extra = {m->cfg.num_layers, -1};
    if (gm_weights_each(w, find_extra_layer, &extra)) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: the weights have layer %d but the config says %d layers (num_hidden_layers)",
                     path, extra.extra, m->cfg.num_layers);
        goto fail;
    }
    m->embed_dtype = m->cfg.dtype;
    if (!strcmp(m->format, "mlx")) {
        /* Activations follow the weights' float type, as in mlx-lm, and
         * MLX's promotion with the norm weights (rms_norm's output type). */
        mx_dtype t = mx_get_dtype(m->embed.bits ? m->embed.scales : m->embed.w);
        if (t == MX_FLOAT32 || t == MX_FLOAT16 || t == MX_BFLOAT16) {
            m->embed_dtype = t;
            m->cfg.dtype = float_promote(t, mx_get_dtype(m->final_norm));
        }
    }
    if (m->tok && gm_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: tokenizer has %d tokens but the model only %d", path,
                     gm_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
        goto fail;
    }
    if ((rc = gm_fused_step_prepare(m))) goto fail;
    if ((rc = materialize(m, progress, user))) goto fail;
    count_params(m);
    gm_weights_free(w);
    /* What the load let go of is released before the caller counts memory
     * (on a GPU MLX frees buffers on a worker thread after the work). */
    mx_settle();
    if (progress) progress(1.0f, "ready", user);
    *out = m;
    return 0;
fail:
    gm_weights_free(w);
    gm_model_free(m);
    return rc;
}

void gm_model_free(gm_model *m) {
    if (!m) return;
    gm_linear_free(&m->embed);
    gm_linear_free(&m->lm_head);
    mx_free(m->final_norm);
    mx_free(m->rope_freqs);
    mx_free(m->rope_inv_freq);
    for (int i = 0; m->layers && i < m->cfg.num_layers; i++) {
        gm_layer *l = &m->layers[i];
        gm_linear_free(&l->wq);
        gm_linear_free(&l->wk);
        gm_linear_free(&l->wv);
        gm_linear_free(&l->wo);
        gm_linear_free(&l->w_gate);
        gm_linear_free(&l->w_up);
        gm_linear_free(&l->w_down);
        gm_linear_free(&l->wqkv);
        gm_linear_free(&l->w_gate_up);
        mx_free(l->attn_norm);
        mx_free(l->mlp_norm);
        mx_free(l->post_attn_norm);
        mx_free(l->post_mlp_norm);
    }
    free(m->layers);
    gm_tokenizer_free(m->tok);
    free(m->chat_template);
    gm_config_free(&m->cfg);
    free(m);
}
