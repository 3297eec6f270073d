/* gated.h - the gated MLP activation act(g) * u (SwiGLU: SiLU; GeGLU: the
 * tanh approximation of GELU), computed in float32 and rounded to the
 * activation dtype after every op, as MLX's op-by-op graph does. */
#ifndef GM_GATED_H
#define GM_GATED_H

#include "kernels/half.h"
#include "kernels/qmm.h" /* gm_fdtype */

/* v as dtype t holds it (inline: called per element of every activation). */
static inline float gm_round_to(float v, gm_fdtype t) {
    if (t == GM_F16) return gm_f16_to_f32(gm_f32_to_f16(v));
    if (t == GM_BF16) return gm_bf16_to_f32(gm_f32_to_bf16(v));
    return v;
}

/* out[i] = act(g[i]) * u[i] for i < n; float32 arrays holding values of
 * dtype t. SiLU's sigmoid is MLX's (1 / (1 + e^|x|) with MLX's exp, see
 * kernels/mlx_math.h), so the result is MLX's ops' bit for bit. */
void gm_gated(const float *g, const float *u, float *out, int n, int gelu, gm_fdtype t);

/* The same one element at a time, on any machine (gm_gated's tail, and
 * all of it without AVX2). */
void gm_gated_scalar(const float *g, const float *u, float *out, int n, int gelu, gm_fdtype t);

/* SwiGLU over the first n rounded down to 8 elements, 8 at a time, with
 * gm_gated_scalar's bits; returns how many it did. x86-64 with AVX2, FMA
 * and F16C only (the caller checks). */
int gm_swiglu_avx2(const float *g, const float *u, float *out, int n, gm_fdtype t);

/* The same over `rows` rows of a stacked projection gu [rows][2*ff] in
 * dtype t (gate first, then up) into out [rows][ff], spread over the
 * thread pool. 0 on success, -1 on bad arguments or out of memory. */
int gm_gated_rows(const void *gu, void *out, int rows, int ff, int gelu, gm_fdtype t);

#endif
