/* config.h - model hyperparameters, read from config.json (HF/mlx-lm) or
 * GGUF metadata, validated once so model code can trust them. */
#ifndef GM_CONFIG_H
#define GM_CONFIG_H

#include <stdint.h>

#include "mlx/mx.h"

typedef struct cJSON cJSON;

enum { GM_ROPE_DEFAULT = 0, GM_ROPE_LINEAR = 1, GM_ROPE_LLAMA3 = 2 };
enum { GM_MAX_EOS = 16 };

typedef struct gm_config {
    char model_type[32];         /* "llama", "mistral", "qwen2", "gemma2" */
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int vocab_size;
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    int rope_traditional;        /* GGUF Llama weights use interleaved pairs */
    int rope_scaling;            /* GM_ROPE_* */
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int rope_original_max_position;
    int tie_word_embeddings;
    int attention_bias;          /* q/k/v projections carry a bias (Qwen2) */
    int mlp_bias;
    int sliding_window;          /* 0: none */
    /* Gemma 2 */
    float query_pre_attn_scalar;
    float attn_logit_softcapping;  /* 0: off */
    float final_logit_softcapping; /* 0: off */
    int sliding_window_pattern;    /* every Nth layer is global (Gemma 2: 2) */
    /* quantization defaults (0 bits: dense unless <name>.scales says so) */
    int quant_bits;
    int quant_group_size;
    cJSON *quant;                /* the whole "quantization" object for per-layer overrides */
    mx_dtype dtype;              /* activations */
    int32_t eos_ids[GM_MAX_EOS];
    int n_eos;
    int32_t bos_id;              /* -1 if unknown */
} gm_config;

/* Parses config.json text. Missing required keys, unknown model types and
 * inconsistent sizes give GOMLX_ERR_FORMAT / GOMLX_ERR_UNSUPPORTED. */
int gm_config_parse(const char *json_text, const char *origin, gm_config *out);
/* Adds eos ids from generation_config.json text (if any). */
void gm_config_add_generation_config(gm_config *c, const char *json_text);
void gm_config_add_eos(gm_config *c, int32_t id);
/* Checks sizes after they were filled in (used by GGUF too). */
int gm_config_validate(const gm_config *c, const char *origin);
/* Quantization of a weight by module path ("model.layers.0.mlp.down_proj"):
 * returns 1 and sets bits/group when quantized per config, 0 when dense. */
int gm_config_quant_for(const gm_config *c, const char *module, int *bits, int *group_size);
void gm_config_free(gm_config *c);

#endif
