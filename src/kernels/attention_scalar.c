/* attention_scalar.c - portable helpers of the attention kernel: the
 * exponential of a score row and the two direct (unpacked) products of
 * the few-query-row path. The fallback on every CPU, and the plainest
 * statement of what the AVX2 versions compute. */
#include <math.h>

#include "kernels/attention_impl.h"
#include "kernels/half.h"

static float exp_row(float *s, int n, float mx) {
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    return sum;
}

static inline float at(const att_rows *x, int j, int d) {
    int64_t i = x->off + j * x->sj + d * x->sd;
    if (x->t == GM_F16) return gm_f16_to_f32(((const uint16_t *)x->base)[i]);
    if (x->t == GM_BF16) return gm_bf16_to_f32(((const uint16_t *)x->base)[i]);
    return ((const float *)x->base)[i];
}

static void scores(const float *Q, int R, int ldq, const att_rows *k, int nk, int D, float *S,
                   int lds) {
    for (int j = 0; j < nk; j++) {
        float kr[256]; /* GM_ATTN_MAX_D */
        for (int d = 0; d < D; d++) kr[d] = at(k, j, d);
        for (int r = 0; r < R; r++) {
            const float *q = Q + (int64_t)r * ldq;
            float s = 0.0f;
            for (int d = 0; d < D; d++) s += q[d] * kr[d];
            S[(int64_t)r * lds + j] = s;
        }
    }
}

static void accum(const float *P, int R, int ldp, const att_rows *v, int nk, int D, float *O,
                  int ldo) {
    for (int j = 0; j < nk; j++) {
        float vr[256];
        for (int d = 0; d < D; d++) vr[d] = at(v, j, d);
        for (int r = 0; r < R; r++) {
            float p = P[(int64_t)r * ldp + j];
            float *o = O + (int64_t)r * ldo;
            for (int d = 0; d < D; d++) o[d] += p * vr[d];
        }
    }
}

const att_ops att_ops_scalar = {exp_row, scores, accum};
