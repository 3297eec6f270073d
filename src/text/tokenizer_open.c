/* tokenizer_open.c - gm_tokenizer_open: the tokenizer of a model folder, a
 * tokenizer.json file, or a .gguf file (read through the MLX shim; only the
 * tokenizer.ggml.* metadata is used, the tensors are dropped as they come). */
#include <stdlib.h>
#include <string.h>

#include "mlx/mx.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
    char *model, *pre, *chat_template, *arch;
    char **tokens, **merges;
    size_t n_tokens, n_merges;
    float *scores;
    size_t n_scores;
    int32_t *types;
    size_t n_types;
    int64_t bos, eos, unk, pad, eot, add_bos, add_eos, add_space;
    int failed;
} gguf_meta;

static char *dup(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char **dup_strings(const mx_meta_value *v, size_t *n) {
    char **out = calloc(v->n_strings ? v->n_strings : 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < v->n_strings; i++)
        if (!(out[i] = dup(v->strings[i] ? v->strings[i] : ""))) {
            for (size_t k = 0; k < i; k++) free(out[k]);
            free(out);
            return NULL;
        }
    *n = v->n_strings;
    return out;
}

/* Copies a numeric array out of MLX (it is only lent during the callback). */
static void *read_array(mx_array a, mx_dtype as, size_t *n) {
    size_t count = mx_size(a);
    void *buf = malloc((count ? count : 1) * 4);
    if (!buf) return NULL;
    if (mx_read(a, as, buf, count * 4) != 0) {
        free(buf);
        return NULL;
    }
    *n = count;
    return buf;
}

static int64_t read_scalar(mx_array a) {
    size_t n;
    int32_t *v = read_array(a, MX_INT32, &n);
    int64_t r = v && n >= 1 ? v[0] : -1;
    free(v);
    return r;
}

static int on_meta(const char *key, const mx_meta_value *v, void *user) {
    gguf_meta *m = user;
    const char *k = key;
    if (strncmp(k, "tokenizer.", 10) != 0 && strcmp(k, "general.architecture") != 0) return 0;
    if (v->kind == MX_META_STRING) {
        char **dst = !strcmp(k, "tokenizer.ggml.model")  ? &m->model
                   : !strcmp(k, "tokenizer.ggml.pre")    ? &m->pre
                   : !strcmp(k, "tokenizer.chat_template") ? &m->chat_template
                   : !strcmp(k, "general.architecture")  ? &m->arch
                                                          : NULL;
        if (dst && !*dst && !(*dst = dup(v->string))) m->failed = 1;
    } else if (v->kind == MX_META_STRINGS) {
        if (!strcmp(k, "tokenizer.ggml.tokens") && !m->tokens && !(m->tokens = dup_strings(v, &m->n_tokens)))
            m->failed = 1;
        if (!strcmp(k, "tokenizer.ggml.merges") && !m->merges && !(m->merges = dup_strings(v, &m->n_merges)))
            m->failed = 1;
    } else if (v->kind == MX_META_ARRAY) {
        if (!strcmp(k, "tokenizer.ggml.scores")) {
            if (!(m->scores = read_array(v->array, MX_FLOAT32, &m->n_scores))) m->failed = 1;
        } else if (!strcmp(k, "tokenizer.ggml.token_type")) {
            if (!(m->types = read_array(v->array, MX_INT32, &m->n_types))) m->failed = 1;
        } else {
            int64_t *dst = !strcmp(k, "tokenizer.ggml.bos_token_id")       ? &m->bos
                         : !strcmp(k, "tokenizer.ggml.eos_token_id")       ? &m->eos
                         : !strcmp(k, "tokenizer.ggml.unknown_token_id")   ? &m->unk
                         : !strcmp(k, "tokenizer.ggml.padding_token_id")   ? &m->pad
                         : !strcmp(k, "tokenizer.ggml.eot_token_id")       ? &m->eot
                         : !strcmp(k, "tokenizer.ggml.add_bos_token")      ? &m->add_bos
                         : !strcmp(k, "tokenizer.ggml.add_eos_token")      ? &m->add_eos
                         : !strcmp(k, "tokenizer.ggml.add_space_prefix")   ? &m->add_space
                                                                            : NULL;
            if (dst) *dst = read_scalar(v->array);
        }
    }
    return 0;
}

static int drop_tensor(const char *name, mx_array a, void *user) {
    (void)name;
    (void)user;
    mx_free(a);
    return 0;
}

static void meta_free(gguf_meta *m) {
    for (size_t i = 0; m->tokens && i < m->n_tokens; i++) free(m->tokens[i]);
    for (size_t i = 0; m->merges && i < m->n_merges; i++) free(m->merges[i]);
    free(m->tokens);
    free(m->merges);
    free(m->model);
    free(m->pre);
    free(m->chat_template);
    free(m->arch);
    free(m->scores);
    free(m->types);
}

static int32_t id_or_none(int64_t v) { return v >= 0 && v <= INT32_MAX ? (int32_t)v : -1; }

static int open_gguf(const char *path, gm_tokenizer **out) {
    if (!gm_file_exists(path)) return gm_fail(GOMLX_ERR_NOT_FOUND, "no such file: %s", path);
    gguf_meta m = {.bos = -1, .eos = -1, .unk = -1, .pad = -1, .eot = -1, .add_bos = -1,
                   .add_eos = -1, .add_space = -1};
    int rc = 0;
    if (mx_load_gguf(path, drop_tensor, on_meta, &m) != 0) rc = gm_fail_mlx(path);
    else if (m.failed) rc = gm_fail(GOMLX_ERR_FORMAT, "%s: cannot read the tokenizer metadata", path);
    else if (!m.model) rc = gm_fail(GOMLX_ERR_FORMAT, "%s has no tokenizer.ggml.model", path);
    else if (m.scores && m.n_scores != m.n_tokens)
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: %zu scores for %zu tokens", path, m.n_scores, m.n_tokens);
    else if (m.types && m.n_types != m.n_tokens)
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: %zu token types for %zu tokens", path, m.n_types, m.n_tokens);
    if (!rc) {
        gm_gguf_tokenizer_spec spec = {
            .model = m.model,
            .pre = m.pre,
            .tokens = (const char *const *)m.tokens,
            .n_tokens = m.n_tokens,
            .scores = m.scores,
            .token_types = m.types,
            .merges = (const char *const *)m.merges,
            .n_merges = m.n_merges,
            .bos_id = id_or_none(m.bos),
            .eos_id = id_or_none(m.eos),
            .unk_id = id_or_none(m.unk),
            .pad_id = id_or_none(m.pad),
            .eot_id = id_or_none(m.eot),
            .add_bos = m.add_bos < 0 ? -1 : m.add_bos != 0,
            .add_eos = m.add_eos < 0 ? -1 : m.add_eos != 0,
            .add_space_prefix = m.add_space < 0 ? -1 : m.add_space != 0,
            .chat_template = m.chat_template,
            .arch = m.arch,
        };
        rc = gm_tokenizer_from_gguf(&spec, out);
        if (rc) gm_fail_context(rc, "%s", path);
    }
    meta_free(&m);
    return rc;
}

int gm_tokenizer_open(const char *path, gm_tokenizer **out) {
    if (!path || !out) return gm_fail(GOMLX_ERR_INVALID_INPUT, "gm_tokenizer_open: NULL argument");
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) return open_gguf(path, out);
    return gm_tokenizer_load(path, out);
}
