/* attention_avx2.c - AVX2+FMA exponential of a score row for the attention
 * kernel (x86-64), plus the portable version. A libm expf call per score
 * costs more than the two multiply-adds of D lanes around it at small D;
 * this does 8 lanes in ~15 instructions. The function carries its own target attribute, so
 * the file builds without -mavx2 and is called only after a CPU check. */
#include "kernels/attention_impl.h"

#include <math.h>

float att_exp_scalar(float *s, int n, float mx) {
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    return sum;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* exp(x) for x <= 0 as 2^k * e^r with k = round(x / ln2) and
 * |r| <= ln2/2: ln2 is split in a high part exact in float and a low part,
 * so r carries no cancellation error, and e^r is its Taylor series to r^7
 * (truncation below 1e-8 relative on that interval). Inputs below -86
 * would need a subnormal 2^k; they are clamped there and give ~1e-38
 * instead of the true (smaller) value, which no sum of probabilities can
 * tell apart from 0. */
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-86.0f);
    x = _mm256_max_ps(x, lo);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(k), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}

__attribute__((target("avx2,fma"))) float att_exp_avx2(float *s, int n, float mx) {
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    float sum = 0.0f;
    for (int i = 0; i < 8; i++) sum += lanes[i];
    for (; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    return sum;
}
#endif
