/* config.c - config.json → gm_config, with the defaults mlx-lm and
 * transformers use for each architecture. */
#include "io/config.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"
#include "util/whole.h"

static const char *supported_types[] = {"llama", "mistral", "qwen2", "gemma2"};

/* v as an int when it is a whole number within int's range. */
static int whole_int(const cJSON *v, int *out) {
    return cJSON_IsNumber(v) && gm_whole_in(v->valuedouble, INT_MIN, INT_MAX, out);
}

/* o[key] as an int: def when absent or null, an error when it is there
 * but not a whole number an int holds. */
static int get_int(const cJSON *o, const char *key, int def, int *out, const char *origin) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!whole_int(v, out)) return gm_fail(GOMLX_ERR_FORMAT, "%s: \"%s\" must be a whole number", origin, key);
    return 0;
}

static double get_num(const cJSON *o, const char *key, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int get_bool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return def;
}

static int require_int(const cJSON *o, const char *key, int *out, const char *origin) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return gm_fail(GOMLX_ERR_FORMAT, "%s: missing or non-numeric \"%s\"", origin, key);
    if (!whole_int(v, out)) return gm_fail(GOMLX_ERR_FORMAT, "%s: \"%s\" must be a whole number", origin, key);
    return 0;
}

void gm_config_add_eos(gm_config *c, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    if (c->n_eos < GM_MAX_EOS) c->eos_ids[c->n_eos++] = id;
}

/* Ids that are not whole numbers an int holds are left out, as negative
 * ones are. */
static void add_eos_json(gm_config *c, const cJSON *v) {
    int id;
    if (whole_int(v, &id)) {
        gm_config_add_eos(c, id);
    } else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (whole_int(e, &id)) gm_config_add_eos(c, id);
    }
}

static mx_dtype parse_dtype(const char *s) {
    if (!s) return MX_BFLOAT16;
    if (!strcmp(s, "float32")) return MX_FLOAT32;
    if (!strcmp(s, "float16")) return MX_FLOAT16;
    return MX_BFLOAT16;
}

static int parse_rope_scaling(gm_config *c, const cJSON *rs, const char *origin) {
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs)) return gm_fail(GOMLX_ERR_FORMAT, "%s: rope_scaling is not an object", origin);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : "default";
    c->rope_factor = (float)get_num(rs, "factor", 1.0);
    if (!(c->rope_factor > 0) || !isfinite(c->rope_factor))
        return gm_fail(GOMLX_ERR_FORMAT, "%s: rope_scaling factor must be a positive number", origin);
    if (!strcmp(type, "default")) {
        c->rope_scaling = GM_ROPE_DEFAULT;
    } else if (!strcmp(type, "linear")) {
        c->rope_scaling = GM_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        c->rope_scaling = GM_ROPE_LLAMA3;
        c->rope_low_freq_factor = (float)get_num(rs, "low_freq_factor", 1.0);
        c->rope_high_freq_factor = (float)get_num(rs, "high_freq_factor", 4.0);
        int rc = get_int(rs, "original_max_position_embeddings", 8192, &c->rope_original_max_position, origin);
        if (rc) return rc;
        /* low > 0, high finite and (below) high > low: both finite and positive. */
        if (!(c->rope_low_freq_factor > 0) || !isfinite(c->rope_high_freq_factor) || c->rope_original_max_position <= 0)
            return gm_fail(GOMLX_ERR_FORMAT, "%s: llama3 rope_scaling needs positive low_freq_factor, high_freq_factor and original_max_position_embeddings", origin);
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return gm_fail(GOMLX_ERR_FORMAT, "%s: llama3 rope_scaling needs high_freq_factor > low_freq_factor", origin);
    } else {
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (default, linear, llama3 are)", origin, type);
    }
    return 0;
}

/* A Gemma 2 soft-cap: absent takes transformers' default, JSON null turns
 * it off (0), as Gemma2Config reads it. */
static int get_cap(const cJSON *o, const char *key, double def, float *out, const char *origin) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) *out = (float)def;
    else if (cJSON_IsNull(v)) *out = 0.0f;
    else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && isfinite(v->valuedouble)) *out = (float)v->valuedouble;
    else return gm_fail(GOMLX_ERR_FORMAT, "%s: \"%s\" must be a non-negative number or null", origin, key);
    return 0;
}

/* Gemma 2 fields, with the defaults of transformers' Gemma2Config (the
 * original model; mlx-lm's port differs: query_pre_attn_scalar 144 and no
 * sliding window). Layer i uses the sliding window unless
 * (i + 1) % sliding_window_pattern == 0; an explicit "layer_types" list is
 * accepted when it follows such a pattern. */
static int parse_gemma2(gm_config *c, const cJSON *root, const char *origin) {
    int rc;
    if ((rc = get_int(root, "head_dim", 256, &c->head_dim, origin)) ||
        (rc = get_int(root, "max_position_embeddings", 8192, &c->max_position_embeddings, origin)))
        return rc;
    const cJSON *qs = cJSON_GetObjectItemCaseSensitive(root, "query_pre_attn_scalar");
    c->query_pre_attn_scalar = qs ? (cJSON_IsNumber(qs) ? (float)qs->valuedouble : -1.0f) : 256.0f;
    if (!(c->query_pre_attn_scalar > 0) || !isfinite(c->query_pre_attn_scalar))
        return gm_fail(GOMLX_ERR_FORMAT, "%s: query_pre_attn_scalar must be positive", origin);
    if ((rc = get_cap(root, "attn_logit_softcapping", 50.0, &c->attn_logit_softcapping, origin)) ||
        (rc = get_cap(root, "final_logit_softcapping", 30.0, &c->final_logit_softcapping, origin)))
        return rc;
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (!sw) c->sliding_window = 4096;
    else if (cJSON_IsNull(sw)) c->sliding_window = 0;
    else if (cJSON_IsNumber(sw) && sw->valuedouble >= 1 && sw->valuedouble < 1e9) c->sliding_window = (int)sw->valuedouble;
    else return gm_fail(GOMLX_ERR_FORMAT, "%s: sliding_window must be a positive number or null", origin);
    c->sliding_window_pattern = 2;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_activation");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "gelu_pytorch_tanh") &&
        strcmp(act->valuestring, "gelu_tanh") && strcmp(act->valuestring, "gelu_new"))
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: hidden_activation \"%s\" is not supported (gelu_pytorch_tanh is)", origin, act->valuestring);
    if (get_bool(root, "use_bidirectional_attention", 0))
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: bidirectional attention is not supported", origin);

    const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (!types || cJSON_IsNull(types)) return 0;
    int n = cJSON_GetArraySize(types);
    if (!cJSON_IsArray(types) || n != c->num_layers)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: layer_types must list one type per layer (%d)", origin, c->num_layers);
    /* The pattern is the position of the first full-attention layer. */
    int pattern = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetArrayItem(types, i);
        int full = cJSON_IsString(t) && !strcmp(t->valuestring, "full_attention");
        if (!full && !(cJSON_IsString(t) && !strcmp(t->valuestring, "sliding_attention")))
            return gm_fail(GOMLX_ERR_FORMAT, "%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", origin, i);
        if (full && !pattern) pattern = i + 1;
    }
    if (!pattern) pattern = n + 1; /* every layer slides */
    for (int i = 0; i < n; i++) {
        int full = !strcmp(cJSON_GetArrayItem(types, i)->valuestring, "full_attention");
        if (full != ((i + 1) % pattern == 0))
            return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: layer_types do not repeat a fixed pattern of sliding layers then one full layer", origin);
    }
    c->sliding_window_pattern = pattern;
    return 0;
}

int gm_config_parse(const char *json_text, const char *origin, gm_config *out) {
    memset(out, 0, sizeof *out);
    out->bos_id = -1;
    cJSON *root = cJSON_Parse(json_text);
    if (!root) return gm_fail(GOMLX_ERR_FORMAT, "%s: invalid JSON near \"%.20s\"", origin, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: not a JSON object", origin);
        goto done;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: missing \"model_type\"", origin);
        goto done;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof supported_types / sizeof *supported_types; i++)
        if (!strcmp(mt->valuestring, supported_types[i])) known = 1;
    if (!known) {
        rc = gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (supported: llama, mistral, qwen2, gemma2)", origin, mt->valuestring);
        goto done;
    }
    snprintf(out->model_type, sizeof out->model_type, "%s", mt->valuestring);
    int is_gemma = !strcmp(out->model_type, "gemma2");
    int is_qwen = !strcmp(out->model_type, "qwen2");

    if ((rc = require_int(root, "hidden_size", &out->hidden_size, origin)) ||
        (rc = require_int(root, "intermediate_size", &out->intermediate_size, origin)) ||
        (rc = require_int(root, "num_hidden_layers", &out->num_layers, origin)) ||
        (rc = require_int(root, "num_attention_heads", &out->num_heads, origin)) ||
        (rc = require_int(root, "vocab_size", &out->vocab_size, origin)))
        goto done;
    if ((rc = get_int(root, "num_key_value_heads", out->num_heads, &out->num_kv_heads, origin)) ||
        (rc = get_int(root, "head_dim", out->num_heads > 0 ? out->hidden_size / out->num_heads : 0, &out->head_dim,
                      origin)) ||
        (rc = get_int(root, "max_position_embeddings", 4096, &out->max_position_embeddings, origin)))
        goto done;
    out->rms_norm_eps = (float)get_num(root, "rms_norm_eps", is_gemma ? 1e-6 : 1e-5);
    out->rope_theta = (float)get_num(root, "rope_theta", is_qwen ? 1e6 : 10000.0);
    out->rope_traditional = get_bool(root, "rope_traditional", 0);
    out->tie_word_embeddings = get_bool(root, "tie_word_embeddings", is_qwen || is_gemma);
    out->attention_bias = get_bool(root, "attention_bias", is_qwen);
    out->mlp_bias = get_bool(root, "mlp_bias", 0);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (cJSON_IsNumber(sw) && (!whole_int(sw, &out->sliding_window) || out->sliding_window < 0)) {
        rc = gm_fail(GOMLX_ERR_FORMAT, "%s: sliding_window must be a whole number >= 0 or null", origin);
        goto done;
    }
    if (is_qwen && !get_bool(root, "use_sliding_window", 0)) out->sliding_window = 0;
    if (is_gemma && (rc = parse_gemma2(out, root, origin))) goto done;
    if ((rc = parse_rope_scaling(out, cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), origin))) goto done;
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!cJSON_IsString(td)) td = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    out->dtype = parse_dtype(cJSON_IsString(td) ? td->valuestring : NULL);
    add_eos_json(out, cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"));
    if (!whole_int(cJSON_GetObjectItemCaseSensitive(root, "bos_token_id"), &out->bos_id) || out->bos_id < 0)
        out->bos_id = -1; /* absent, null or not an id: none */

    cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization");
    if (!q) q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (cJSON_IsObject(q)) {
        if ((rc = get_int(q, "bits", 0, &out->quant_bits, origin)) ||
            (rc = get_int(q, "group_size", 64, &out->quant_group_size, origin)))
            goto done;
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(q, "mode");
        if (cJSON_IsString(mode) && strcmp(mode->valuestring, "affine") != 0) {
            rc = gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: quantization mode \"%s\" is not supported (affine is)", origin, mode->valuestring);
            goto done;
        }
        out->quant = cJSON_Duplicate(q, 1);
    }
    rc = gm_config_validate(out, origin);
done:
    cJSON_Delete(root);
    if (rc) gm_config_free(out);
    return rc;
}

void gm_config_add_generation_config(gm_config *c, const char *json_text) {
    cJSON *root = cJSON_Parse(json_text);
    if (!root) return;
    add_eos_json(c, cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"));
    cJSON_Delete(root);
}

int gm_config_validate(const gm_config *c, const char *origin) {
    if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 ||
        c->num_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: sizes must be positive (hidden %d, intermediate %d, layers %d, heads %d, kv heads %d, head_dim %d, vocab %d)",
                       origin, c->hidden_size, c->intermediate_size, c->num_layers, c->num_heads, c->num_kv_heads, c->head_dim, c->vocab_size);
    if (c->num_heads % c->num_kv_heads)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", origin, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: head_dim %d must be even for RoPE", origin, c->head_dim);
    if (c->quant_bits && c->quant_bits != 2 && c->quant_bits != 3 && c->quant_bits != 4 && c->quant_bits != 5 && c->quant_bits != 6 && c->quant_bits != 8)
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "%s: %d-bit quantization is not supported", origin, c->quant_bits);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return gm_fail(GOMLX_ERR_FORMAT, "%s: rope_theta must be positive", origin);
    if (!(c->rms_norm_eps >= 0) || !isfinite(c->rms_norm_eps))
        return gm_fail(GOMLX_ERR_FORMAT, "%s: rms_norm_eps must be a number >= 0", origin);
    if (c->max_position_embeddings <= 0)
        return gm_fail(GOMLX_ERR_FORMAT, "%s: max_position_embeddings must be positive", origin);
    return 0;
}

int gm_config_quant_for(const gm_config *c, const char *module, int *bits, int *group_size) {
    *bits = c->quant_bits;
    *group_size = c->quant_group_size ? c->quant_group_size : 64;
    if (c->quant) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(c->quant, module);
        if (cJSON_IsFalse(o)) return 0;
        if (cJSON_IsObject(o)) {
            whole_int(cJSON_GetObjectItemCaseSensitive(o, "bits"), bits);
            whole_int(cJSON_GetObjectItemCaseSensitive(o, "group_size"), group_size);
        }
    }
    return *bits > 0;
}

void gm_config_free(gm_config *c) {
    if (c->quant) cJSON_Delete(c->quant);
    c->quant = NULL;
}
