/* gated.c - the gated MLP activation (see gated.h): the portable loop,
 * which is also the statement of what gated_avx2.c computes 8 lanes at a
 * time, and the rows spread over the pool. */
#include "kernels/gated.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/mlx_math.h"
#include "kernels/pool.h"
#include "kernels/qmm_impl.h" /* qmm_load_row, qmm_store_row */

/* MLX's sigmoid of x (a value of dtype t): y = 1 / (1 + e^|x|) with its own
 * exp, rounded to t as the exp op's result is, then y or 1 - y in float32
 * (the caller rounds the op's result). */
static float sigmoid(float x, gm_fdtype t) {
    float y = 1.0f / (1.0f + gm_round_to(gm_mlx_expf(fabsf(x)), t));
    return x < 0 ? y : 1.0f - y;
}

/* silu(g) * u is written g * sigmoid(g) * u; GeGLU as mx_geglu writes it
 * (with libm's tanhf, which is what MLX's tanh op calls on the CPU). */
void gm_gated_scalar(const float *g, const float *u, float *out, int n, int gelu, gm_fdtype t) {
#define R(v) gm_round_to((v), t)
    if (!gelu) {
        for (int i = 0; i < n; i++) out[i] = R(R(g[i] * R(sigmoid(g[i], t))) * u[i]);
        return;
    }
    float k1 = R(0.044715f), k2 = R(0.7978845608028654f), half = R(0.5f);
    for (int i = 0; i < n; i++) {
        float x = g[i];
        float cube = R(R(x * x) * x);
        float inner = R(R(x + R(cube * k1)) * k2);
        float act = R(R(x * half) * R(1.0f + R(tanhf(inner))));
        out[i] = R(act * u[i]);
    }
#undef R
}

void gm_gated(const float *g, const float *u, float *out, int n, int gelu, gm_fdtype t) {
    int done = 0;
#if defined(__x86_64__)
    /* AVX2 whenever the matmul's backend has it (GOMLX_QMM_ISA=scalar turns
     * both off); GeGLU's tanhf has no vector twin with libm's bits. */
    if (!gelu && gm_qmm_backend_in_use() != &gm_qmm_scalar) done = gm_swiglu_avx2(g, u, out, n, t);
#endif
    gm_gated_scalar(g + done, u + done, out + done, n - done, gelu, t);
}

#define GATED_CHUNK 1024 /* elements per pass through the float buffers */

typedef struct gated_job {
    const void *gu;
    void *out;
    int rows, ff, gelu, per_task;
    gm_fdtype t;
} gated_job;

static void gated_task(void *ctx, int task, int worker) {
    (void)worker;
    const gated_job *j = ctx;
    float g[GATED_CHUNK], u[GATED_CHUNK], o[GATED_CHUNK];
    int r1 = (task + 1) * j->per_task < j->rows ? (task + 1) * j->per_task : j->rows;
    for (int r = task * j->per_task; r < r1; r++) {
        size_t in = (size_t)r * 2 * j->ff, at = (size_t)r * j->ff;
        for (int c = 0; c < j->ff; c += GATED_CHUNK) {
            int n = j->ff - c < GATED_CHUNK ? j->ff - c : GATED_CHUNK;
            qmm_load_row(j->gu, in + (size_t)c, n, j->t, g);
            qmm_load_row(j->gu, in + (size_t)j->ff + c, n, j->t, u);
            gm_gated(g, u, o, n, j->gelu, j->t);
            qmm_store_row(j->out, at + (size_t)c, n, o, j->t);
        }
    }
}

int gm_gated_rows(const void *gu, void *out, int rows, int ff, int gelu, gm_fdtype t) {
    if (!gu || !out || rows < 0 || ff <= 0) return -1;
    if (rows == 0) return 0;
    /* ~64K elements per task: a one-token row is one task on the caller. */
    int per = (65536 + ff - 1) / ff;
    int ntasks = (rows + per - 1) / per;
    gated_job j = {gu, out, rows, ff, gelu, per, t};
    gm_pool_run(gated_task, &j, ntasks, gm_pool_threads());
    return 0;
}
