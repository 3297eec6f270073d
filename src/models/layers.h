/* layers.h - the shared blocks model files are built from: linear layers
 * (dense or quantized), embeddings, norms, RoPE, attention with the KV
 * cache, gated MLPs. Each returns a scope-owned array or NULL on error. */
#ifndef GM_LAYERS_H
#define GM_LAYERS_H

#include "models/model.h"

/* Takes <prefix>.weight (+ .scales/.biases when quantized, + .bias when
 * present) from w; checks the shape is [out, in]. Quantization bits and
 * group size come from the config (per-layer overrides included) or, for
 * GGUF (cfg quant_bits 0 but scales present), from the packed shape with
 * group size 32. need_bias: 1 required, 0 forbidden-if-absent-ok. */
int gm_linear_load(gm_linear *l, gm_weights *w, const gm_config *cfg, const char *prefix, int in,
                   int out, int want_bias);
void gm_linear_free(gm_linear *l);
/* The seven projections of decoder layer i under their HF names
 * (model.layers.i.self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj),
 * q/k/v and gate/up then stacked into wqkv and w_gate_up. */
int gm_layer_load_linears(gm_layer *l, gm_weights *w, const gm_config *c, int i);
mx_array gm_linear_apply(const gm_linear *l, mx_array x);
/* Rows of an embedding table for ids (dequantized when quantized). */
mx_array gm_embedding_lookup(const gm_linear *table, mx_array ids, mx_dtype dtype);
/* Takes a 1-D norm weight of size n; GOMLX_ERR_FORMAT when missing or wrong. */
int gm_norm_load(mx_array *out, gm_weights *w, const char *name, int n);
mx_array gm_rms_norm(const gm_model *m, mx_array x, mx_array weight);
typedef int (*gm_layer_loader)(gm_model *m, gm_weights *w, int i);
typedef int (*gm_norm_loader)(mx_array *out, gm_weights *w, const char *name, int n);
/* A decoder's weights: the embedding, every layer through load_layer, the
 * final norm through load_norm, and the head: lm_head where the checkpoint
 * has one, else the embedding table when the config ties them (an error
 * when it does not). */
int gm_decoder_load(gm_model *m, gm_weights *w, gm_layer_loader load_layer, gm_norm_loader load_norm);
/* The attention's score scale: 1/sqrt(query_pre_attn_scalar) where the
 * config has one (Gemma 2), else 1/sqrt(head_dim). */
float gm_attention_scale(const gm_config *c);
/* Positions a layer looks back over: its sliding window, 0 for all. */
int gm_layer_window(const gm_model *m, const gm_layer *l);
/* Multi-head attention of layer `li` over x [1, T, hidden], with RoPE at
 * cache->offset and the cache updated in place. */
mx_array gm_self_attention(const gm_model *m, const gm_layer *layer, int li, mx_array x,
                      gm_kv_cache *cache);
/* down(act(gate(x)) * up(x)): act is silu, or gelu_tanh when gelu != 0 (Gemma). */
mx_array gm_mlp(const gm_layer *l, mx_array x, int gelu);
/* Final norm and unembedding (tied or not) of hidden [1, T, hidden]. */
mx_array gm_unembed(const gm_model *m, mx_array h);
/* Llama 3 rope frequencies (periods per rotated pair) or NULL. */
mx_array gm_rope_freqs(const gm_config *c);

/* Walking the decoder layers of one forward pass: each layer is built in
 * its own scope, so the graph's intermediates are not held by handles, and
 * on the GPU a prompt chunk is evaluated every few layers. MLX's GPU
 * backends keep every buffer of a command batch until the device has run
 * it, so one graph for a whole 512-token chunk held every layer's
 * activations at once (Qwen2.5-3B on an H100: peak 2x the weights).
 *
 *   gm_layer_walk w; gm_walk_begin(&w, h, tokens, layers);
 *   for (i...) { gm_walk_open(&w); out = layer(w.h); if (gm_walk_close(&w, out, i)) break; }
 *   h = gm_walk_end(&w);   (NULL after an error, with mx_error() set) */
typedef struct gm_layer_walk {
    mx_array h;      /* the residual stream after the layers so far */
    int owned;       /* h is the walk's own (kept out of every scope) */
    int eval_every;  /* evaluate h every this many layers; 0: never */
    int layers;
    mx_scope *scope; /* the open layer's */
} gm_layer_walk;
void gm_walk_begin(gm_layer_walk *w, mx_array h, int tokens, int layers);
/* Evaluates a GPU prefill every n layers instead of the default 2 (a
 * model whose layers leave more behind in a batch). */
void gm_walk_eval_every(gm_layer_walk *w, int n);
void gm_walk_open(gm_layer_walk *w);
/* Takes the layer's output as the new h; -1 (h NULL) when out is NULL or
 * an evaluation fails. */
int gm_walk_close(gm_layer_walk *w, mx_array out, int i);
/* h, owned by the caller's scope again. */
mx_array gm_walk_end(gm_layer_walk *w);
/* gm_walk_end for a forward pass of t tokens (model.h's forward): moves
 * the cache past them and returns h, only its last position with
 * GM_LOGITS_LAST; NULL after an error. The caller unembeds it unless
 * logits is GM_LOGITS_NONE. */
mx_array gm_walk_finish(gm_layer_walk *w, gm_kv_cache *cache, int t, int logits);

/* The fused one-token layers (fused_step.c). prepare decides at load
 * whether the model can use them (on the CPU: every projection quantized
 * in a form the kernels take, GOMLX_CPU_FUSED not 0; on a CUDA GPU: the
 * layers kernel takes all layers, GOMLX_CUDA_LAYER not 0) and builds their
 * tables. */
int gm_fused_step_prepare(gm_model *m);
/* How a forward of t tokens runs its layers: op by op (GM_FUSED_NO), each
 * through gm_fused_layer (GM_FUSED_LAYER) or all through gm_fused_layers
 * (GM_FUSED_ALL). */
enum { GM_FUSED_NO, GM_FUSED_LAYER, GM_FUSED_ALL };
int gm_fused_step_usable(const gm_model *m, int t);
/* Every layer for one token h [1, 1, hidden] in one node (an NVIDIA GPU),
 * the caches written in place. */
mx_array gm_fused_layers(const gm_model *m, mx_array h, gm_kv_cache *cache);
/* gm_walk_begin for a one-token step whose layers all run as one node
 * (GM_FUSED_ALL): the walk holds their output. */
void gm_walk_fused_all(gm_layer_walk *w, const gm_model *m, mx_array h, int t, gm_kv_cache *cache);
/* Layer li for one token h [1, 1, hidden] on the CPU: the whole residual
 * block (attention and MLP, with Gemma 2's extra norms when the layer has
 * them, and its GeGLU where m->gelu_mlp), the cache written in place. */
mx_array gm_fused_layer(const gm_model *m, int li, mx_array h, gm_kv_cache *cache);

#endif
