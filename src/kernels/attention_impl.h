/* attention_impl.h - what the attention driver (attention.c) shares with
 * its instruction-set helpers (attention_avx2.c): the exponential of a
 * row of scores (the one softmax step that is not a product), and the two
 * products done straight from the k/v rows when a task has only a few
 * query rows (decode), where packing k and v would cost more than it
 * saves. */
#ifndef GM_ATTENTION_IMPL_H
#define GM_ATTENTION_IMPL_H

#include <stdint.h>

#include "kernels/qmm.h"

/* A strided [n, D] block of k or v: row j, element d at
 * base[off + j*sj + d*sd], of dtype t. */
typedef struct att_rows {
    const void *base;
    int64_t off, sj, sd;
    gm_fdtype t;
} att_rows;

typedef struct att_ops {
    /* s[j] = exp(s[j] - mx) for j < n; returns the sum of the new s[j]. */
    float (*exp_row)(float *s, int n, float mx);
    /* S[r][j] = sum_d Q[r][d] * k[j][d], r < R, j < nk; rows ldq / lds apart. */
    void (*scores)(const float *Q, int R, int ldq, const att_rows *k, int nk, int D, float *S,
                   int lds);
    /* O[r][d] += sum_j P[r][j] * v[j][d], r < R, d < D. */
    void (*accum)(const float *P, int R, int ldp, const att_rows *v, int nk, int D, float *O,
                  int ldo);
} att_ops;

extern const att_ops att_ops_scalar;
#if defined(__x86_64__)
extern const att_ops att_ops_avx2;
#endif

#endif
