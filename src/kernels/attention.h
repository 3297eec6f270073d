/* attention.h - our CPU scaled-dot-product attention: softmax(q k^T * scale
 * + causal mask) v with grouped-query heads, float32 sums and a streaming
 * (online) softmax, so no [Tq, Tk] score matrix is ever built. Multithreaded
 * over (batch, kv head, query block) on the kernel pool. Pure C, no MLX. */
#ifndef GM_ATTENTION_H
#define GM_ATTENTION_H

#include <stdint.h>

#include "kernels/qmm.h" /* gm_fdtype */

/* Largest head dimension handled (scratch rows live on the worker). */
#define GM_ATTN_MAX_D 256

/* One attention call. Shapes (strides in elements, any sign or layout:
 * q may be a transposed view, k/v a slice of a larger KV cache):
 *   q   [B, Hq,  Tq, D]
 *   k,v [B, Hkv, Tk, D]   Hq a multiple of Hkv (query head h uses kv head
 *                         h / (Hq/Hkv))
 *   out [B, Hq,  Tq, D]   row-major, contiguous
 * q, k, v and out share one dtype. causal: query i sees keys
 * 0 .. Tk-Tq+i (queries aligned to the end of the keys, MLX's "causal";
 * needs Tk >= Tq); otherwise every query sees every key. window and
 * softcap (below) narrow and reshape that; 0 turns them off. */
typedef struct gm_attn_args {
    const void *q, *k, *v;
    void *out;
    int64_t q_strides[4], k_strides[4], v_strides[4];
    int B, Hq, Hkv, Tq, Tk, D;
    float scale;
    int causal;
    /* With causal, > 0: query t also sees only the last `window` keys up
     * to its own (keys after Tk-Tq+t-window), a sliding-window layer. */
    int window;
    /* > 0: each score s becomes softcap*tanh(s/softcap) before the softmax
     * (Gemma 2's attention logit soft-capping). */
    float softcap;
    gm_fdtype dtype;
} gm_attn_args;

/* 1 when gm_attention handles these sizes. */
int gm_attention_supported(int B, int Hq, int Hkv, int Tq, int Tk, int D, int causal);

/* Computes out; 0 on success, -1 when unsupported or out of memory (out
 * untouched then). The instruction set follows gm_qmm_isa(). */
int gm_attention(const gm_attn_args *a);

#endif
