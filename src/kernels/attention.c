/* attention.c - causal / unmasked scaled-dot-product attention on the CPU,
 * flash-attention style: a task owns every query head of one kv head over a
 * block of query positions, walks the keys in blocks of ATT_KB, and keeps a
 * running max, sum and output per query row (online softmax), so the memory
 * used is a few KB per thread whatever Tq and Tk are.
 *
 * Both products of a key block (S = Q K^T and O += P V) are small GEMMs of
 * the shape the quantized matmul's tiled micro-kernel already computes
 * (rows broadcast, a packed panel of 16 or 8 columns loaded), so the key and
 * value blocks are converted to float32 in that panel layout once per block
 * and the qmm backends (scalar, AVX2, NEON) do the arithmetic. */
#include "kernels/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention_impl.h"
#include "kernels/pool.h"
#include "kernels/qmm_impl.h"

#define ATT_QB 16 /* query positions per task (fewer when Tq is small) */
#define ATT_KB 64 /* keys per block: S is [rows][ATT_KB] */
#define ATT_NP 16 /* key panel width of the S product (micro-kernel width) */
/* Below this many multiply-adds a call runs on the calling thread: waking
 * the pool costs more than the work (decode at short contexts). */
#define ATT_MIN_PARALLEL (1 << 16)

typedef struct att_ctx {
    const gm_attn_args *a;
    const gm_qmm_backend *be;
    att_exp_fn exp_row;
    int group;  /* query heads per kv head */
    int qb;     /* query positions per task */
    int nqb;    /* query blocks per (batch, kv head) */
    int Dp;     /* D rounded up to 8 (value panels are 16 or 8 wide) */
    int rows;   /* group * qb: query rows of a task at most */
    float *scratch;
    size_t per_worker; /* floats */
} att_ctx;

int gm_attention_supported(int B, int Hq, int Hkv, int Tq, int Tk, int D, int causal) {
    if (B <= 0 || Hq <= 0 || Hkv <= 0 || Tq <= 0 || Tk <= 0 || D <= 0) return 0;
    if (D > GM_ATTN_MAX_D || Hq % Hkv != 0) return 0;
    if (causal && Tk < Tq) return 0; /* first rows would see no key */
    return 1;
}

static const gm_qmm_backend *pick_backend(att_exp_fn *exp_row) {
    const char *isa = gm_qmm_isa();
    *exp_row = att_exp_scalar;
#if defined(__x86_64__)
    if (!strcmp(isa, "avx2")) {
        *exp_row = att_exp_avx2;
        return &gm_qmm_avx2;
    }
#elif defined(__aarch64__)
    if (!strcmp(isa, "neon")) return &gm_qmm_neon;
#endif
    (void)isa;
    return &gm_qmm_scalar;
}

/* n elements of a strided row to float32, times mul. */
static void load_row(const void *base, int64_t off, int64_t stride, int n, gm_fdtype t, float mul,
                     float *dst) {
    if (t == GM_F32) {
        const float *p = (const float *)base + off;
        for (int i = 0; i < n; i++) dst[i] = p[(int64_t)i * stride] * mul;
    } else if (t == GM_F16) {
        const uint16_t *p = (const uint16_t *)base + off;
        for (int i = 0; i < n; i++) dst[i] = gm_f16_to_f32(p[(int64_t)i * stride]) * mul;
    } else {
        const uint16_t *p = (const uint16_t *)base + off;
        for (int i = 0; i < n; i++) dst[i] = gm_bf16_to_f32(p[(int64_t)i * stride]) * mul;
    }
}

/* Keys [j0, j0+nk) of one kv head into panels of ATT_NP keys, each laid
 * [D][ATT_NP] (the S product's "x panel"); missing keys are zero. */
static void pack_keys(const att_ctx *c, int b, int hk, int j0, int nk, float *kp, float *tmp) {
    const gm_attn_args *a = c->a;
    const int64_t *s = a->k_strides;
    int D = a->D, np = (nk + ATT_NP - 1) / ATT_NP;
    memset(kp, 0, (size_t)np * ATT_NP * D * sizeof(float));
    for (int j = 0; j < nk; j++) {
        int64_t off = b * s[0] + hk * s[1] + (int64_t)(j0 + j) * s[2];
        load_row(a->k, off, s[3], D, a->dtype, 1.0f, tmp);
        float *dst = kp + (size_t)(j / ATT_NP) * ATT_NP * D + j % ATT_NP;
        for (int d = 0; d < D; d++) dst[(size_t)d * ATT_NP] = tmp[d];
    }
}

/* Values [j0, j0+nk) into panels of 16 columns of D (the last may be 8),
 * panel q at vp + q*16*ATT_KB, laid [nk][width]; columns past D are zero. */
static void pack_values(const att_ctx *c, int b, int hk, int j0, int nk, float *vp, float *tmp) {
    const gm_attn_args *a = c->a;
    const int64_t *s = a->v_strides;
    int D = a->D, Dp = c->Dp;
    for (int d = D; d < Dp; d++) tmp[d] = 0.0f;
    for (int j = 0; j < nk; j++) {
        int64_t off = b * s[0] + hk * s[1] + (int64_t)(j0 + j) * s[2];
        load_row(a->v, off, s[3], D, a->dtype, 1.0f, tmp);
        for (int q0 = 0; q0 < Dp; q0 += 16) {
            int w = Dp - q0 < 16 ? Dp - q0 : 16;
            memcpy(vp + (size_t)q0 * ATT_KB + (size_t)j * w, tmp + q0, (size_t)w * sizeof(float));
        }
    }
}

static void att_task(void *ctx, int task, int worker) {
    const att_ctx *c = ctx;
    const gm_attn_args *a = c->a;
    const gm_qmm_backend *be = c->be;
    int D = a->D, Dp = c->Dp, BH = a->B * a->Hkv;
    /* Heaviest (latest, under a causal mask) query blocks first, so the
     * pool's last tasks are the short ones. */
    int bh = task % BH, qi = c->nqb - 1 - task / BH;
    int b = bh / a->Hkv, hk = bh % a->Hkv;
    int t0 = qi * c->qb, nt = a->Tq - t0 < c->qb ? a->Tq - t0 : c->qb;
    int R = c->group * nt;

    float *Q = c->scratch + (size_t)worker * c->per_worker; /* [R][Dp], pre-scaled */
    float *O = Q + (size_t)c->rows * Dp;                    /* [R][Dp] */
    float *S = O + (size_t)c->rows * Dp;                    /* [R][ATT_KB] scores, then P */
    float *m = S + (size_t)c->rows * ATT_KB;                /* running max per row */
    float *l = m + c->rows;                                 /* running sum per row */
    float *kp = l + c->rows;                                /* ATT_KB * D */
    float *vp = kp + (size_t)ATT_KB * D;                    /* ATT_KB * Dp */
    float *tmp = vp + (size_t)ATT_KB * Dp;                  /* Dp */

    const int64_t *qs = a->q_strides;
    for (int r = 0; r < R; r++) {
        int h = hk * c->group + r / nt, t = t0 + r % nt;
        int64_t off = b * qs[0] + h * qs[1] + (int64_t)t * qs[2];
        load_row(a->q, off, qs[3], D, a->dtype, a->scale, Q + (size_t)r * Dp);
        for (int d = D; d < Dp; d++) Q[(size_t)r * Dp + d] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(O, 0, (size_t)R * Dp * sizeof(float));

    /* Keys any row of this task sees: up to the last row's diagonal. */
    int shift = a->Tk - a->Tq; /* query t sees keys 0 .. shift + t */
    int kend = a->causal ? shift + t0 + nt : a->Tk;
    for (int j0 = 0; j0 < kend; j0 += ATT_KB) {
        int nk = kend - j0 < ATT_KB ? kend - j0 : ATT_KB;
        int np = (nk + ATT_NP - 1) / ATT_NP;
        pack_keys(c, b, hk, j0, nk, kp, tmp);
        pack_values(c, b, hk, j0, nk, vp, tmp);

        for (int r0 = 0; r0 < R; r0 += QMM_NR) {
            int nr = R - r0 < QMM_NR ? R - r0 : QMM_NR;
            for (int p = 0; p < np; p++)
                be->micro(Q + (size_t)r0 * Dp, Dp, kp + (size_t)p * ATT_NP * D, ATT_NP, D,
                          S + (size_t)r0 * ATT_KB + p * ATT_NP, ATT_KB, nr, 1);
        }

        for (int r = 0; r < R; r++) {
            float *sr = S + (size_t)r * ATT_KB;
            int lim = nk;
            if (a->causal) {
                int last = shift + t0 + r % nt - j0; /* last visible key, block-relative */
                lim = last + 1 < nk ? last + 1 : nk;
            }
            if (lim <= 0) { /* row sees none of this block */
                memset(sr, 0, (size_t)nk * sizeof(float));
                continue;
            }
            float mb = sr[0];
            for (int j = 1; j < lim; j++) mb = sr[j] > mb ? sr[j] : mb;
            float mn = m[r] > mb ? m[r] : mb;
            float alpha = expf(m[r] - mn); /* 0 on the first block (m = -inf) */
            float sum = c->exp_row(sr, lim, mn);
            for (int j = lim; j < nk; j++) sr[j] = 0.0f;
            l[r] = l[r] * alpha + sum;
            m[r] = mn;
            if (alpha != 1.0f) {
                float *o = O + (size_t)r * Dp;
                for (int d = 0; d < Dp; d++) o[d] *= alpha;
            }
        }

        for (int r0 = 0; r0 < R; r0 += QMM_NR) {
            int nr = R - r0 < QMM_NR ? R - r0 : QMM_NR;
            for (int q0 = 0; q0 < Dp; q0 += 16) {
                int w = Dp - q0 < 16 ? Dp - q0 : 16;
                be->micro(S + (size_t)r0 * ATT_KB, ATT_KB, vp + (size_t)q0 * ATT_KB, w, nk,
                          O + (size_t)r0 * Dp + q0, Dp, nr, 0);
            }
        }
    }

    for (int r = 0; r < R; r++) {
        int h = hk * c->group + r / nt, t = t0 + r % nt;
        size_t base = (((size_t)b * a->Hq + h) * a->Tq + t) * D;
        float inv = 1.0f / l[r];
        const float *o = O + (size_t)r * Dp;
        for (int d = 0; d < D; d++) qmm_store(a->out, base + d, o[d] * inv, a->dtype);
    }
}

int gm_attention(const gm_attn_args *a) {
    if (!gm_attention_supported(a->B, a->Hq, a->Hkv, a->Tq, a->Tk, a->D, a->causal)) return -1;
    att_ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.be = pick_backend(&c.exp_row);
    c.group = a->Hq / a->Hkv;
    c.qb = a->Tq < ATT_QB ? a->Tq : ATT_QB;
    c.nqb = (a->Tq + c.qb - 1) / c.qb;
    c.Dp = (a->D + 7) & ~7;
    c.rows = c.group * c.qb;
    c.per_worker = (size_t)c.rows * (2 * c.Dp + ATT_KB + 2) + (size_t)ATT_KB * (a->D + c.Dp) +
                   (size_t)c.Dp;
    int ntasks = a->B * a->Hkv * c.nqb;

    /* Multiply-adds, halved under a causal mask when Tq ~ Tk. */
    double work = 2.0 * a->B * a->Hq * (double)a->Tq * a->Tk * a->D;
    if (a->causal) work -= (double)a->B * a->Hq * a->Tq * (double)a->Tq * a->D;
    int threads = gm_pool_threads();
    if (work < ATT_MIN_PARALLEL) threads = 1;
    if (threads > ntasks) threads = ntasks;

    c.scratch = malloc((size_t)threads * c.per_worker * sizeof(float));
    if (!c.scratch) return -1;
    gm_pool_run(att_task, &c, ntasks, threads);
    free(c.scratch);
    return 0;
}
