/* attention_impl.h - what the attention driver (attention.c) shares with
 * its instruction-set helpers (attention_avx2.c): the exponential of a
 * row of scores, the one step of the online softmax that is not a GEMM. */
#ifndef GM_ATTENTION_IMPL_H
#define GM_ATTENTION_IMPL_H

/* s[j] = exp(s[j] - mx) for j < n; returns the sum of the new s[j]. */
typedef float (*att_exp_fn)(float *s, int n, float mx);

float att_exp_scalar(float *s, int n, float mx);
#if defined(__x86_64__)
float att_exp_avx2(float *s, int n, float mx);
#endif

#endif
