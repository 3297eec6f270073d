/* mlx_math.h - float32 sine, cosine and exponential as MLX's CPU backend
 * computes them.
 *
 * MLX's CPU ops do not call libm's sinf/cosf: they reduce the argument by
 * multiples of pi/4 (Cephes' three-part constant) and evaluate one of two
 * polynomials, with fused multiply-adds where MLX has them. libm differs in
 * the last bit for about 15% of RoPE's angles, so a RoPE computed with
 * libm is not MLX's (the fused CPU decode step's was not, for float32
 * models). Arguments beyond 2^23 go to libm, as MLX sends them. */
#ifndef GM_MLX_MATH_H
#define GM_MLX_MATH_H

float gm_mlx_sinf(float x);
float gm_mlx_cosf(float x);

/* exp as MLX's CPU ops compute it (its sigmoid and softmax too): 2^(x
 * log2 e) split into the nearest integer, by the exponent's bits, and the
 * rest, by a degree-6 polynomial (Cephes' coefficients), fused
 * multiply-adds as MLX has them; inf past 88, 0 below -88, NaN kept. libm's
 * expf differs from it on most arguments. */
float gm_mlx_expf(float x);

#endif
