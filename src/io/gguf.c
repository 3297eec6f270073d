/* gguf.c - GGUF through MLX's reader (src/mlx): we map llama.cpp's tensor
 * names onto ours, read the hyperparameters from metadata, and keep every
 * weight about as compact as the file has it.
 *
 * Q4_0/Q4_1/Q8_0 arrive from MLX as affine triples (groups of 32, exact).
 * k-quants (Q2_K, Q4_K, Q6_K) MLX hands over as dense float16, about four
 * times their size, and its Q4_K decoding is wrong (0.32.4: every odd
 * 32-value sub-block takes its neighbour's scale and min), so we read their
 * blocks from the file ourselves (the header walk gives type and offset) and
 * make MLX affine, group 32, float16 scales and biases (1 bit per weight).
 * Measured on normal data (tools/make_gguf_fixtures.py, relative rms error
 * against the original floats; testdata/gguf/conversion_study.json):
 *  - Q4_K → 4 bits keeps its grid: each 32-value sub-block already is an
 *    affine group (scale d*sc, bias -dmin*m, quants 0..15). Only the
 *    float16 rounding of scale and bias moves values (< 0.02 of a step).
 *    4.5 bits per weight in the file, 5 in memory.
 *  - Q6_K → 6 bits. Its int8 scales cover 16 values, so a group of 32 spans
 *    two grids one affine scale cannot both hit: error 0.0193 → 0.0271
 *    (between a 5- and a 6-bit quant). 8 bits would keep 0.0198 but cost 9
 *    bits per weight against the file's 6.56; we keep 7.
 *  - Q2_K → 4 bits (Q3_K would too). Its 16-value sub-blocks each have a
 *    scale and a min, so a group of 32 holds up to 8 levels on two unrelated
 *    grids: 2-bit affine would take the error from 0.328 to 0.480, 3-bit to
 *    0.369, 4-bit to 0.335 (5-bit: 0.330). 4 bits is the narrowest that
 *    keeps the file's accuracy: 5 bits per weight in memory against 2.63.
 *  - Q5_0/Q5_1/Q5_K would take 5 bits and Q8_K 8 by the same rule, but MLX's
 *    reader fails on files with them, so read_header refuses those files
 *    naming the tensor and its type.
 * MLX still decodes every k-quant to float16 while loading (it reads the
 * whole file at once), so loading peaks at that size before we drop them.
 * BF16 tensors (MLX gives float16, which overflows past 65504) are read as
 * bfloat16. Llama 3.x rope_freqs.weight scales the rope frequencies. The
 * model's notes say what was converted. */
#include "io/gguf.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf_kquant.h"
#include "models/model.h"
#include "util/error.h"
#include "util/whole.h"

/* A tensor as the file's header describes it. */
typedef struct {
    char *name;
    int type, ndim;
    int64_t rows, cols; /* cols: the row length; rows: the other dims */
    uint64_t offset, nbytes;
} gguf_tensor;

enum { GGML_TYPES = 64 };

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
    /* tensors from the header walk, sorted by name */
    gguf_tensor *tensors;
    size_t n_tensors, cap_tensors;
    FILE *file;
    const char *path;
    int converted[GGML_TYPES]; /* tensors re-quantized, by GGML type */
    int bf16_kept;
    int failed; /* status of a failing on_tensor (its message is set) */
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

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const gguf_tensor *)a)->name, ((const gguf_tensor *)b)->name);
}

static const gguf_tensor *find_tensor(const gguf_meta *g, const char *name) {
    gguf_tensor key = {.name = (char *)name};
    return g->tensors ? bsearch(&key, g->tensors, g->n_tensors, sizeof key, cmp_tensor) : NULL;
}

static int on_header_tensor(const mx_gguf_tensor *t, void *user) {
    gguf_meta *g = user;
    if (g->n_tensors == g->cap_tensors) {
        size_t cap = g->cap_tensors ? 2 * g->cap_tensors : 64;
        gguf_tensor *grown = realloc(g->tensors, cap * sizeof *grown);
        if (!grown) return 1;
        g->tensors = grown;
        g->cap_tensors = cap;
    }
    gguf_tensor *n = &g->tensors[g->n_tensors];
    n->name = strdup(t->name);
    if (!n->name) return 1;
    n->type = t->ggml_type;
    n->ndim = t->ndim;
    n->cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    n->rows = 1;
    for (int d = 0; d + 1 < t->ndim; d++) n->rows *= t->shape[d];
    n->offset = t->offset;
    n->nbytes = t->nbytes;
    g->n_tensors++;
    return 0;
}

/* Every tensor's GGML type and extent, and a clear refusal of types MLX's
 * reader cannot convert (it would fail on the whole file without saying). */
static int read_header(gguf_meta *g, const char *path) {
    int rc = mx_gguf_tensors(path, on_header_tensor, g);
    if (rc < 0) return gm_fail(GOMLX_ERR_FORMAT, "%s: not a readable GGUF file: %s", path, mx_error());
    if (rc) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (!mx_gguf_mlx_reads(t->type))
            return gm_fail(GOMLX_ERR_UNSUPPORTED,
                           "%s: tensor %s is %s (GGML type %d), which this engine cannot load yet "
                           "(it reads F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q2_K, Q4_K and Q6_K)",
                           path, t->name, mx_ggml_type_name(t->type), t->type);
    }
    if (g->n_tensors) qsort(g->tensors, g->n_tensors, sizeof *g->tensors, cmp_tensor);
    return 0;
}

/* n bytes of the file at offset (offsets fit a long on the 64-bit systems
 * MLX runs on). */
static int read_at(gguf_meta *g, const gguf_tensor *t, uint64_t offset, void *dst, size_t n) {
    if (offset > (uint64_t)LONG_MAX || fseek(g->file, (long)offset, SEEK_SET) || fread(dst, 1, n, g->file) != n)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: cannot read the blocks of %s", g->path, t->name);
    return 0;
}

/* MLX affine width for a k-quant type (see the top of this file). */
static int affine_bits(int ggml_type) {
    switch (ggml_type) {
    case GM_GGML_Q2_K: return 4;
    case GM_GGML_Q4_K: return 4;
    case GM_GGML_Q6_K: return 6;
    default: return 0;
    }
}

/* Scales and biases go to float16 (what MLX's own GGUF triples use: a
 * group of 32 then costs 1 bit per weight) unless they would overflow it. */
static mx_array scales_array(const float *x, int rows, int groups) {
    float m = 0;
    for (size_t i = 0; i < (size_t)rows * (size_t)groups; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    mx_array a = mx_from_data(x, (int[]){rows, groups}, 2, MX_FLOAT32);
    return m < 60000.0f ? mx_astype(a, MX_FLOAT16) : a;
}

/* Rows of a k-quant tensor go through the conversion a few million values
 * at a time, so a vocabulary-sized output layer needs no dense float copy. */
enum { CHUNK_VALUES = 1 << 22 };

/* Converts rows [r0, r0+n) whose blocks are in `blocks`, writing their
 * packed words, scales and biases at the rows' place in the outputs. */
static int convert_rows(const gguf_tensor *t, const uint8_t *blocks, int64_t r0, int64_t n, uint32_t *packed,
                        float *scales, float *biases, float *dense) {
    int bits = affine_bits(t->type);
    int64_t cols = t->cols, groups = cols / 32, words = cols * bits / 32;
    size_t n_blocks = (size_t)(n * cols / GM_QK_K);
    if (t->type == GM_GGML_Q4_K) {
        gm_q4k_to_affine(blocks, n_blocks, packed + r0 * words, scales + r0 * groups, biases + r0 * groups);
        return 0;
    }
    gm_kquant_dequantize(t->type, blocks, n_blocks, dense);
    mx_scope *scope = mx_scope_open();
    mx_array wq = NULL, sc = NULL, bi = NULL;
    mx_array a = mx_from_data(dense, (int[]){(int)n, (int)cols}, 2, MX_FLOAT32);
    int rc = !a || mx_quantize(a, 32, bits, &wq, &sc, &bi) ||
             mx_read(wq, MX_UINT32, packed + r0 * words, (size_t)(n * words) * sizeof(uint32_t)) ||
             mx_read(sc, MX_FLOAT32, scales + r0 * groups, (size_t)(n * groups) * sizeof(float)) ||
             mx_read(bi, MX_FLOAT32, biases + r0 * groups, (size_t)(n * groups) * sizeof(float));
    mx_scope_close(scope);
    return rc ? gm_fail(GOMLX_ERR_BACKEND, "converting %s: %s", t->name, mx_error()) : 0;
}

/* The three arrays of "<stem>.weight" (packed), ".scales", ".biases" from a
 * k-quant tensor's blocks. */
static int kquant_to_affine(gguf_meta *g, const gguf_tensor *t, mx_array out[3]) {
    int bits = affine_bits(t->type);
    size_t bb = gm_kquant_block_bytes(t->type);
    int64_t rows = t->rows, cols = t->cols, groups = cols / 32, words = cols * bits / 32;
    if (cols % GM_QK_K || (uint64_t)(rows * (cols / GM_QK_K)) * bb != t->nbytes || rows > INT32_MAX ||
        cols > INT32_MAX)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: %s: rows of %lld do not fit %s blocks", g->path, t->name,
                       (long long)cols, mx_ggml_type_name(t->type));
    int64_t row_bytes = cols / GM_QK_K * (int64_t)bb;
    int64_t chunk = CHUNK_VALUES / cols > 0 ? CHUNK_VALUES / cols : 1;
    if (chunk > rows) chunk = rows;
    uint32_t *packed = malloc((size_t)(rows * words) * sizeof(uint32_t));
    float *scales = malloc((size_t)(rows * groups) * sizeof(float));
    float *biases = malloc((size_t)(rows * groups) * sizeof(float));
    uint8_t *blocks = malloc((size_t)(chunk * row_bytes));
    float *dense = t->type == GM_GGML_Q4_K ? NULL : malloc((size_t)(chunk * cols) * sizeof(float));
    int rc = 0;
    if (!packed || !scales || !biases || !blocks || (t->type != GM_GGML_Q4_K && !dense))
        rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory converting %s", t->name);
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        rc = read_at(g, t, t->offset + (uint64_t)(r0 * row_bytes), blocks, (size_t)(n * row_bytes));
        if (!rc) rc = convert_rows(t, blocks, r0, n, packed, scales, biases, dense);
    }
    free(blocks);
    free(dense);
    if (!rc) {
        mx_scope *scope = mx_scope_open();
        mx_array all[3] = {mx_from_data(packed, (int[]){(int)rows, (int)words}, 2, MX_UINT32),
                           scales_array(scales, (int)rows, (int)groups),
                           scales_array(biases, (int)rows, (int)groups)};
        if (!all[0] || !all[1] || !all[2] || mx_eval(all, 3))
            rc = gm_fail(GOMLX_ERR_BACKEND, "%s: converting %s: %s", g->path, t->name, mx_error());
        for (int i = 0; i < 3 && !rc; i++) out[i] = mx_keep(all[i]);
        mx_scope_close(scope);
    }
    free(packed);
    free(scales);
    free(biases);
    return rc;
}

static int bf16_tensor(gguf_meta *g, const gguf_tensor *t, mx_array *out) {
    if (t->ndim < 1 || t->ndim > 2 || t->rows > INT32_MAX || t->cols > INT32_MAX)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: BF16 tensor %s: unexpected shape", g->path, t->name);
    uint8_t *raw = malloc(t->nbytes ? t->nbytes : 1);
    if (!raw) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory reading %s", t->name);
    int rc = read_at(g, t, t->offset, raw, t->nbytes);
    if (rc) {
        free(raw);
        return rc;
    }
    int shape[2] = {(int)t->rows, (int)t->cols};
    /* 1-D tensors (norms) are tiny and meet float32 activations: widen them. */
    mx_array a = t->ndim == 2 ? mx_from_data(raw, shape, 2, MX_BFLOAT16)
                              : mx_astype(mx_from_data(raw, shape + 1, 1, MX_BFLOAT16), MX_FLOAT32);
    free(raw);
    if (!a || mx_eval(&a, 1)) return gm_fail(GOMLX_ERR_BACKEND, "%s: reading %s: %s", g->path, t->name, mx_error());
    *out = mx_keep(a);
    return 0;
}

static int put_renamed(gguf_meta *g, const char *gguf_name, mx_array a) {
    char hf[256];
    hf_name(gguf_name, hf, sizeof hf);
    return gm_weights_put(g->w, hf, a);
}

static int on_tensor(const char *name, mx_array a, void *user) {
    gguf_meta *g = user;
    const gguf_tensor *t = find_tensor(g, name);
    int rc = 0;
    if (t && affine_bits(t->type) && t->ndim != 2) {
        /* llama.cpp quantizes only matrices (3-D ones are MoE experts, which
         * no architecture here has); MLX's float16 of a Q4_K would be wrong. */
        mx_free(a);
        rc = gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: tensor %s is a %d-D %s; only weight matrices may be k-quants",
                     g->path, name, t->ndim, mx_ggml_type_name(t->type));
    } else if (t && affine_bits(t->type)) {
        /* MLX's float16 version is dropped for one from the blocks. */
        mx_free(a);
        mx_array q[3] = {NULL, NULL, NULL};
        rc = kquant_to_affine(g, t, q);
        if (!rc) {
            size_t n = strlen(name);
            char stem[256], nm[300];
            snprintf(stem, sizeof stem, "%.*s", (int)(n > 7 && !strcmp(name + n - 7, ".weight") ? n - 7 : n), name);
            const char *suffix[3] = {"weight", "scales", "biases"};
            for (int i = 0; i < 3; i++) {
                snprintf(nm, sizeof nm, "%s.%s", stem, suffix[i]);
                if (!rc) rc = put_renamed(g, nm, q[i]);
                else mx_free(q[i]);
            }
            g->converted[t->type]++;
        }
    } else if (t && t->type == GM_GGML_BF16) {
        mx_free(a);
        mx_array b = NULL;
        rc = bf16_tensor(g, t, &b);
        if (!rc) rc = put_renamed(g, name, b);
        if (!rc) g->bf16_kept++;
    } else {
        rc = put_renamed(g, name, a);
    }
    if (rc) g->failed = rc;
    return rc ? 1 : 0;
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
    for (size_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    if (g->file) fclose(g->file);
}

/* A token id from the metadata, -1 where it has none (or none we can use). */
static int to_id(double d) {
    int id;
    return gm_whole_in(d, 0, INT_MAX, &id) ? id : -1;
}

static int fill_config(gm_model *m, const gguf_meta *g, const char *path) {
    gm_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    if (strcmp(g->arch, "llama") && strcmp(g->arch, "qwen2"))
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: GGUF architecture \"%s\" is not supported (llama, qwen2 are)", path, g->arch[0] ? g->arch : "(none)");
    snprintf(c->model_type, sizeof c->model_type, "%s", g->arch);
    if (g->embedding_length <= 0 || g->block_count <= 0 || g->head_count <= 0 || g->feed_forward_length <= 0)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: GGUF metadata lacks %s.embedding_length/block_count/attention.head_count/feed_forward_length", path, g->arch);
    /* Sizes as ints: whole numbers an int holds (a C cast of 1e30 or NaN is
     * undefined); the optional ones absent (<= 0) take their defaults. */
    int hidden = 0, ff = 0, layers = 0, heads = 0, kv = 0, key_len = 0, vocab = 0, ctx = 0;
    const struct { double v; int *out; const char *key; } sizes[] = {
        {g->embedding_length, &hidden, "embedding_length"}, {g->feed_forward_length, &ff, "feed_forward_length"},
        {g->block_count, &layers, "block_count"}, {g->head_count, &heads, "attention.head_count"},
        {g->head_count_kv, &kv, "attention.head_count_kv"}, {g->key_length, &key_len, "attention.key_length"},
        {g->vocab_size, &vocab, "vocab_size"}, {g->context_length, &ctx, "context_length"}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (!(sizes[i].v <= 0) && !gm_whole_in(sizes[i].v, 1, INT_MAX, sizes[i].out))
            return gm_fail(GOMLX_ERR_FORMAT, "%s: GGUF metadata %s.%s is %g: not a whole number the engine takes", path,
                           g->arch, sizes[i].key, sizes[i].v);
    c->hidden_size = hidden;
    c->intermediate_size = ff;
    c->num_layers = layers;
    c->num_heads = heads;
    c->num_kv_heads = kv > 0 ? kv : c->num_heads;
    c->head_dim = key_len > 0 ? key_len : c->hidden_size / c->num_heads;
    c->vocab_size = vocab > 0 ? vocab : (int)g->n_tokens;
    c->max_position_embeddings = ctx > 0 ? ctx : 4096;
    /* Reals a float holds (a C cast of a larger double is undefined too). */
    const struct { double v; const char *key; } reals[] = {{g->rms_eps, "attention.layer_norm_rms_epsilon"},
                                                           {g->rope_base, "rope.freq_base"},
                                                           {g->rope_scale_factor, "rope.scaling.factor"}};
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++)
        if (!(reals[i].v <= FLT_MAX))
            return gm_fail(GOMLX_ERR_FORMAT, "%s: GGUF metadata %s.%s is %g: not a number the engine takes", path,
                           g->arch, reals[i].key, reals[i].v);
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
        .arch = g->arch[0] ? g->arch : NULL,
    };
    int rc = gm_tokenizer_from_gguf(&spec, &m->tok);
    if (rc) return gm_fail_context(rc, "%s: tokenizer", path);
    return 0;
}

/* Llama 3.x files carry llama3 rope scaling as per-frequency divisors
 * (rope_freqs.weight, what llama.cpp's converter computes from the HF
 * config); MLX's rope takes periods, so ours are base^(2i/d) * factor_i. */
static int take_rope_freqs(gm_model *m, gm_weights *w, const char *path) {
    mx_array f = gm_weights_take(w, "rope_freqs.weight");
    if (!f) return 0;
    int half = m->cfg.head_dim / 2, rc = 0;
    float periods[512];
    if (mx_ndim(f) != 1 || mx_dim(f, 0) != half || half > 512) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: rope_freqs.weight has %d values, expected head_dim/2 = %d", path,
                     mx_ndim(f) == 1 ? mx_dim(f, 0) : -1, half);
    } else if (mx_read(f, MX_FLOAT32, periods, sizeof periods)) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: reading rope_freqs.weight: %s", path, mx_error());
    } else {
        for (int i = 0; i < half; i++)
            periods[i] = (float)(pow(m->cfg.rope_theta, 2.0 * i / m->cfg.head_dim) * periods[i]);
        m->rope_freqs = mx_keep(mx_from_data(periods, (int[]){half}, 1, MX_FLOAT32));
        if (!m->rope_freqs) rc = gm_fail_mlx("rope frequencies");
    }
    mx_free(f);
    return rc;
}

static void add_note(gm_model *m, const char *text) {
    size_t n = strlen(m->notes);
    snprintf(m->notes + n, sizeof m->notes - n, "%s%s", n ? "; " : "", text);
}

/* "re-quantized from GGUF: 12 Q4_K → 4-bit affine g32 (exact), ..." */
static void conversion_notes(gm_model *m, const gguf_meta *g) {
    char text[256] = "";
    size_t n = 0;
    for (int t = 0; t < GGML_TYPES; t++)
        if (g->converted[t] && n < sizeof text)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s%d %s → %d-bit affine g32%s", n ? ", " : "re-quantized from GGUF: ",
                                  g->converted[t], mx_ggml_type_name(t), affine_bits(t), t == GM_GGML_Q4_K ? " (same grid)" : "");
    if (n) add_note(m, text);
    if (m->rope_freqs && m->cfg.rope_scaling != GM_ROPE_LLAMA3) add_note(m, "rope frequencies scaled by rope_freqs.weight");
    if (g->bf16_kept) {
        snprintf(text, sizeof text, "%d BF16 tensor%s kept as bfloat16", g->bf16_kept, g->bf16_kept > 1 ? "s" : "");
        add_note(m, text);
    }
}

int gm_gguf_load(const char *path, gm_model *m, gm_weights *w, gm_load_progress progress, void *user) {
    gguf_meta g;
    memset(&g, 0, sizeof g);
    g.w = w;
    g.path = path;
    g.bos = g.eos = g.unk = g.pad = g.eot = g.add_bos = g.add_eos = g.add_space_prefix = -1;
    if (progress) progress(0.1f, "reading GGUF file", user);
    int rc = read_header(&g, path);
    if (!rc && !(g.file = fopen(path, "rb"))) rc = gm_fail(GOMLX_ERR_NOT_FOUND, "%s: cannot open", path);
    if (!rc && mx_load_gguf(path, on_tensor, on_meta, &g)) {
        const char *e = mx_error();
        rc = g.failed ? g.failed : gm_fail(GOMLX_ERR_FORMAT, "%s: not a readable GGUF file: %s", path, *e ? e : gm_error_message());
    }
    if (!rc) rc = fill_config(m, &g, path);
    if (!rc) rc = build_tokenizer(m, &g, path);
    if (!rc) rc = take_rope_freqs(m, w, path);
    if (!rc) conversion_notes(m, &g);
    if (!rc && g.chat_template) m->chat_template = strdup(g.chat_template);
    snprintf(m->format, sizeof m->format, "gguf");
    free_meta(&g);
    return rc;
}
