/* qmm_scalar.c - the portable C backend of the quantized matmul: used on
 * CPUs without a vector backend, and the plainest statement of the work
 * the vector backends do. */
#include "kernels/qmm_impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the CPU kernels read packed weights as little-endian bytes"
#endif

/* Dot of one group of weights (bytes wb) with x (prepared for them: see
 * QMM_MV4 in qmm_impl.h). */
static float group_dot(const uint8_t *wb, const float *x, int gs, int bits) {
    float dot = 0.0f;
    if (bits == 4) {
        for (int u = 0; u < gs; u += 16, wb += 8, x += 16)
            for (int i = 0; i < 8; i++)
                dot += (float)(wb[i] & 15) * x[i] + (float)wb[i] * x[8 + i];
    } else if (bits == 8) {
        for (int i = 0; i < gs; i++) dot += (float)wb[i] * x[i];
    } else {
        for (int i = 0; i < gs; i++) dot += (float)qmm_qbits(wb, i, bits) * x[i];
    }
    return dot;
}

static void mv(const gm_qmm_ctx *c, int n0, int n1) {
    const gm_qmm_args *a = c->a;
    int gs = a->group_size, G = c->groups, gbytes = gs * a->bits / 8;
    for (int n = n0; n < n1; n++) {
        const uint8_t *wb = (const uint8_t *)(a->w + (size_t)n * c->wrow);
        for (int m = 0; m < a->M; m++) {
            const float *x = c->xp + (size_t)m * a->K;
            const float *xs = c->xsum + (size_t)m * c->xsum_stride;
            float acc = 0.0f;
            for (int g = 0; g < G; g++) {
                float s = qmm_load(a->scales, (size_t)n * G + g, a->sb_dtype);
                float b = qmm_load(a->biases, (size_t)n * G + g, a->sb_dtype);
                acc += s * group_dot(wb + (size_t)g * gbytes, x + (size_t)g * gs, gs, a->bits) +
                       b * xs[g];
            }
            qmm_store(a->y, (size_t)m * a->N + n, acc, a->y_dtype);
        }
    }
}

static void dequant(const gm_qmm_ctx *c, int n0, int nr, int k0, int kc, float *dst) {
    const gm_qmm_args *a = c->a;
    int gs = a->group_size, G = c->groups;
    for (int i = 0; i < nr; i++) {
        int n = n0 + i;
        const uint8_t *wb = (const uint8_t *)(a->w + (size_t)n * c->wrow);
        float *d = dst + (size_t)i * kc;
        for (int k = k0; k < k0 + kc; k += gs) {
            int g = k / gs;
            float s = qmm_load(a->scales, (size_t)n * G + g, a->sb_dtype);
            float b = qmm_load(a->biases, (size_t)n * G + g, a->sb_dtype);
            if (a->bits == 4) {
                const uint8_t *p = wb + k / 2;
                for (int u = 0; u < gs; u += 16, p += 8, d += 16)
                    for (int j = 0; j < 8; j++) {
                        d[j] = s * (float)(p[j] & 15) + b;
                        d[8 + j] = s * (float)(p[j] >> 4) + b;
                    }
            } else {
                for (int j = 0; j < gs; j++) d[j] = s * (float)qmm_qbits(wb, k + j, a->bits) + b;
                d += gs;
            }
        }
    }
}

static void micro(const float *wt, int ldw, const float *xp, int width, int kc, float *acc,
                  int ldc, int nr, int first) {
    for (int i = 0; i < nr; i++) {
        float sum[QMM_MP];
        for (int j = 0; j < width; j++) sum[j] = first ? 0.0f : acc[(size_t)i * ldc + j];
        const float *w = wt + (size_t)i * ldw;
        for (int k = 0; k < kc; k++)
            for (int j = 0; j < width; j++) sum[j] += w[k] * xp[(size_t)k * width + j];
        for (int j = 0; j < width; j++) acc[(size_t)i * ldc + j] = sum[j];
    }
}

const gm_qmm_backend gm_qmm_scalar = {"scalar", mv, dequant, micro, NULL, 0, NULL, NULL};
