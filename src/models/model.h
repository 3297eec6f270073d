/* model.h - a loaded model: config, weights in the shape the forward pass
 * wants, tokenizer, and the architecture's functions. A model holds only
 * weights; generation state lives in a session's KV cache. */
#ifndef GM_MODEL_H
#define GM_MODEL_H

#include <stdint.h>

#include "io/config.h"
#include "io/weights.h"
#include "mlx/mx.h"
#include "text/tokenizer.h"

/* A linear layer, dense (w [out, in]) or affine-quantized (w packed, with
 * scales and biases per group). bias is the optional additive bias. */
typedef struct gm_linear {
    mx_array w, scales, biases, bias;
    int bits, group_size; /* bits 0: dense */
    int in, out;
} gm_linear;

typedef struct gm_layer {
    gm_linear wq, wk, wv, wo;      /* attention projections */
    gm_linear w_gate, w_up, w_down; /* MLP: down(act(gate(x)) * up(x)) */
    /* q/k/v and gate/up stacked along their outputs at load time, so a
     * step runs one matmul where it would run three (or two); wq/wk/wv and
     * w_gate/w_up are then empty. */
    gm_linear wqkv, w_gate_up;
    mx_array attn_norm;            /* before attention (input_layernorm) */
    mx_array mlp_norm;             /* before the MLP (Llama: post_attention_layernorm) */
    mx_array post_attn_norm;       /* Gemma 2: after attention, before the residual add */
    mx_array post_mlp_norm;        /* Gemma 2: after the MLP, before the residual add */
    int sliding;                   /* attends to the last sliding_window positions only */
} gm_layer;

/* The KV cache of one session: per layer [1, kv_heads, capacity, head_dim],
 * grown in steps and written in place. Layer i holds positions
 * start[i] .. offset-1; sliding-window layers drop what no later query can
 * see, so their buffers stay near twice the window however long the text. */
typedef struct gm_kv_cache {
    mx_array *k, *v;
    int *start;
    int n_layers;
    int offset;
    int capacity;
    mx_cuda_layers *cuda_layers; /* the GPU layers kernel's state (fused_step.c), made on first use */
} gm_kv_cache;

typedef struct gm_model gm_model;

typedef struct gm_arch {
    const char *name;
    /* Moves the tensors it needs from w into m (config already in m->cfg). */
    int (*load)(gm_model *m, gm_weights *w);
    /* ids [1, T] int32 at positions cache->offset.., appended to the cache.
     * logits: GM_LOGITS_ALL gives [1, T, vocab], GM_LOGITS_LAST [1, 1, vocab],
     * GM_LOGITS_NONE returns the last hidden state (cache filled only).
     * Returns NULL on error (mx_error()). Advances cache->offset by T. */
    mx_array (*forward)(gm_model *m, mx_array ids, gm_kv_cache *cache, int logits);
    const char *default_chat_format; /* "llama3", "chatml", "mistral", "gemma" */
} gm_arch;

enum { GM_LOGITS_NONE = 0, GM_LOGITS_LAST = 1, GM_LOGITS_ALL = 2 };

struct gm_model {
    gm_config cfg;
    const gm_arch *arch;
    gm_linear embed;               /* [vocab, hidden] token embeddings */
    gm_linear lm_head;             /* unembedding; w NULL when tied to embed */
    mx_array final_norm;
    gm_layer *layers;
    mx_array rope_freqs;           /* llama3 scaling: per-pair periods, else NULL */
    /* One-token steps run each layer as one fused node on the CPU, all
     * layers as one on an NVIDIA GPU (src/models/fused_step.c);
     * rope_inv_freq is their RoPE table, made by MLX's own ops so the
     * angles are MLX's to the bit. */
    int fused_step;
    mx_array rope_inv_freq;
    float rope_scale;              /* linear scaling: 1/factor */
    float embed_scale;             /* Gemma: sqrt(hidden), else 1 */
    /* Embedding rows come out in embed_dtype (MLX: the table's own float
     * type) and are widened to the activation dtype (cfg.dtype), which is
     * what MLX's type promotion makes of them at the first norm: float32
     * when a float16 model keeps float32 norm weights. */
    mx_dtype embed_dtype;
    int norm_plus_one;             /* Gemma: RMSNorm weight is (1 + w) */
    int gelu_mlp;                  /* Gemma: the MLP is GeGLU (tanh), else SwiGLU */
    gm_tokenizer *tok;
    char *chat_template;           /* the model's Jinja template, or NULL */
    char format[8];                /* "mlx" or "gguf" */
    char name[128];
    char notes[256];
    uint64_t weight_bytes;
    uint64_t step_weight_bytes; /* what a one-token step reads (see materialize) */
    uint64_t n_params;
};

/* The architecture for config's model_type, or NULL. */
const gm_arch *gm_arch_find(const char *model_type);

/* Loads a model folder or .gguf file (tokenizer included). */
int gm_model_load(const char *path, gm_load_progress progress, void *user, gm_model **out);
void gm_model_free(gm_model *m);
/* Activation dtype of the model. */
mx_dtype gm_model_dtype(const gm_model *m);

/* KV cache */
int gm_kv_cache_init(gm_kv_cache *c, const gm_model *m);
/* Makes room for t more positions in layer's buffers (growing them, or
 * for window > 0 dropping positions older than the window) and gives the
 * buffer index the first new position goes to (*slot) and the absolute
 * position of index 0 (*key_start). New buffers hold dtype. Does not move offset. */
int gm_kv_cache_reserve(gm_kv_cache *c, const gm_model *m, int layer, int t, int window,
                        mx_dtype dtype, int *slot, int *key_start);
/* Appends k, v ([1, kvh, T, d]) to layer's cache and returns views of the
 * keys/values it holds (owned by the current scope), which start at
 * absolute position *key_start. window > 0 lets the layer drop positions
 * older than the window. Does not move offset. */
int gm_kv_cache_update(gm_kv_cache *c, const gm_model *m, int layer, mx_array k, mx_array v,
                       int window, mx_array *keys, mx_array *values, int *key_start);
/* Moves the cache back to position pos (prefix reuse). Returns -1 when a
 * sliding-window layer already dropped keys that position needs. */
int gm_kv_cache_rewind(gm_kv_cache *c, const gm_model *m, int pos);
/* Arrays to evaluate so the cache state is materialized. */
int gm_kv_cache_arrays(gm_kv_cache *c, mx_array *out, int cap);
void gm_kv_cache_free(gm_kv_cache *c);
uint64_t gm_kv_bytes_per_token(const gm_model *m);

#endif
