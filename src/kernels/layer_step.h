/* layer_step.h - one decoder layer for one token, on the CPU, in one call:
 * norm, q/k/v, RoPE, KV-cache write, attention, output projection,
 * residual, norm, gated MLP, residual. It is what a decode step of the
 * Llama/Mistral/Qwen2/Gemma 2 decoders computes per layer, done without
 * MLX's per-op scheduling: on a small model that overhead (some 60 graph
 * nodes a layer) costs more than reading the weights. Intermediates are
 * rounded to the activation dtype where MLX's op-by-op graph rounds them,
 * so float16/bfloat16 models follow MLX's numbers, not a more precise
 * path. Pure C, no MLX; the matmuls and attention are qmm.h/attention.h. */
#ifndef GM_LAYER_STEP_H
#define GM_LAYER_STEP_H

#include <stdint.h>

#include "kernels/qmm.h"

/* An affine-quantized linear y = x W^T (+ bias), as gm_qmm_args has it. */
typedef struct gm_step_linear {
    const uint32_t *w;
    const void *scales, *biases; /* sb_dtype */
    const void *bias;            /* optional, in the activation dtype */
    int N, K, bits, group_size;
    gm_fdtype sb_dtype;
} gm_step_linear;

typedef struct gm_layer_step_args {
    const void *h_in; /* [hidden], activation dtype */
    void *h_out;      /* [hidden] */
    gm_fdtype dtype;  /* activations, norm weights, KV cache */
    int hidden, n_heads, n_kv_heads, head_dim;
    float eps;
    const void *attn_norm, *mlp_norm;           /* RMSNorm weights */
    const void *post_attn_norm, *post_mlp_norm; /* Gemma 2, else NULL */
    gm_step_linear qkv;     /* outputs: q (n_heads*head_dim), k, v (n_kv_heads*head_dim) */
    gm_step_linear o;       /* n_heads*head_dim -> hidden */
    gm_step_linear gate_up; /* hidden -> 2*ff: gate then up */
    gm_step_linear down;    /* ff -> hidden */
    int gelu;               /* 1: GeGLU (tanh approximation), 0: SwiGLU */

    /* RoPE over the whole head: angle = position * inv_freq[i] */
    const float *inv_freq; /* [head_dim/2] */
    float position;        /* (offset) * rope scale, as MLX computes it */
    int rope_traditional;  /* pairs (2i, 2i+1) instead of (i, i+d/2) */

    /* KV cache buffers [n_kv_heads, capacity, head_dim], written at `slot`;
     * the token attends to slots first..slot. */
    void *k_cache, *v_cache;
    int capacity, slot, first;
    float attn_scale;
    float softcap; /* > 0: tanh soft-capping of the scores (Gemma 2) */
} gm_layer_step_args;

/* 1 when gm_layer_step handles these sizes and parameters (pointers are
 * not looked at). */
int gm_layer_step_supported(const gm_layer_step_args *a);

/* Runs the layer; 0 on success, -1 when unsupported or out of memory
 * (h_out untouched then; the cache slot may have been written). */
int gm_layer_step(const gm_layer_step_args *a);

#endif
