/* gated_avx2.c - SwiGLU of the gated activation 8 lanes at a time (AVX2,
 * FMA, F16C; x86-64). Every lane does the float32 operations of
 * gm_gated_scalar in the same order: MLX's exp (mlx_math.c), the roundings
 * to the dtype of half.h, a true division. So the bits are the scalar
 * loop's, which are MLX's ops'. The function carries its own target
 * attribute, so the file builds without -mavx2 and is only used after a
 * CPU check. CMakeLists.txt builds it with -ffp-contract=off: the compiler
 * would otherwise fuse x * log2(e) into the + 0.5 and the - ipart after
 * it, and the only fused multiply-adds must be the polynomial's, as MLX's. */
#include "kernels/gated.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* gm_mlx_expf of 8 lanes; its early returns become the selects at the end. */
AVX2_INLINE __m256 mlx_exp8(__m256 x0) {
    __m256 x = _mm256_mul_ps(x0, _mm256_set1_ps(1.442695f));
    __m256 ipart = _mm256_floor_ps(_mm256_add_ps(x, _mm256_set1_ps(0.5f)));
    __m256 f = _mm256_sub_ps(x, ipart);
    __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.000000000000000f));
    /* Lanes past the cut-offs or NaN get garbage here and are replaced. */
    __m256i two = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(ipart), _mm256_set1_epi32(127)), 23);
    __m256 r = _mm256_mul_ps(_mm256_castsi256_ps(two), p);
    r = _mm256_andnot_ps(_mm256_cmp_ps(x0, _mm256_set1_ps(-88.0f), _CMP_LT_OQ), r);
    r = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x0, _mm256_set1_ps(88.0f), _CMP_GT_OQ));
    return _mm256_blendv_ps(r, x0, _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q));
}

/* gm_round_to of 8 lanes. float16: F16C's round trip, to nearest even as
 * half.h rounds (the same bits on every float but NaN, whose payload F16C
 * keeps in part and half.h drops; NaN bits are not MLX's either way).
 * bfloat16: half.h's integer rounding as it is. */
AVX2_INLINE __m256 round8(__m256 v, gm_fdtype t) {
    if (t == GM_F16)
        return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (t == GM_BF16) {
        __m256i u = _mm256_castps_si256(v);
        __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
        r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), nan);
        return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
    }
    return v;
}

/* Inlined once per dtype, so round8's test on t folds away. */
AVX2_INLINE int swiglu(const float *g, const float *u, float *out, int n, gm_fdtype t) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = round8(mlx_exp8(_mm256_and_ps(x, abs_mask)), t);
        __m256 y = _mm256_div_ps(one, _mm256_add_ps(one, e));
        __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
        __m256 s = round8(_mm256_blendv_ps(_mm256_sub_ps(one, y), y, neg), t);
        __m256 gs = round8(_mm256_mul_ps(x, s), t);
        _mm256_storeu_ps(out + i, round8(_mm256_mul_ps(gs, _mm256_loadu_ps(u + i)), t));
    }
    return i;
}

AVX2_FN int gm_swiglu_avx2(const float *g, const float *u, float *out, int n, gm_fdtype t) {
    if (t == GM_F16) return swiglu(g, u, out, n, GM_F16);
    if (t == GM_BF16) return swiglu(g, u, out, n, GM_BF16);
    return swiglu(g, u, out, n, GM_F32);
}
#endif
