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
 * and the qmm backends (scalar, AVX2, NEON) do the arithmetic.
 *
 * Decode (a task of at most ATT_DIRECT_ROWS query rows) reads k and v rows
 * in place instead (attention_impl.h's direct products): each packed key
 * would be used only a few times. With fewer (batch, kv head, query block)
 * units than two per thread, the keys are cut into ranges too, and the
 * partial results merged at the end, so decoding a model with 3 kv heads
 * still uses every thread. */
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
/* Up to this many query rows per task (decode: the query heads of one kv
 * head) the products read k and v rows in place; packing them into panels
 * pays only when many rows reuse each packed key. */
#define ATT_DIRECT_ROWS 8

typedef struct att_ctx {
    const gm_attn_args *a;
    const gm_qmm_backend *be;
    const att_ops *ops;
    int group;  /* query heads per kv head */
    int qb;     /* query positions per task */
    int nqb;    /* query blocks per (batch, kv head) */
    int nsplit; /* key ranges per query block (decode: more tasks than kv heads) */
    int Dp;     /* D rounded up to 8 (value panels are 16 or 8 wide) */
    int rows;   /* group * qb: query rows of a task at most */
    int direct; /* products straight from k/v rows, no packing (few rows) */
    float *scratch;
    size_t per_worker; /* floats */
    float *part;       /* nsplit > 1: per task [rows][Dp] output, then m, l per row */
    size_t per_part;   /* floats */
} att_ctx;

int gm_attention_supported(int B, int Hq, int Hkv, int Tq, int Tk, int D, int causal) {
    if (B <= 0 || Hq <= 0 || Hkv <= 0 || Tq <= 0 || Tk <= 0 || D <= 0) return 0;
    if (D > GM_ATTN_MAX_D || Hq % Hkv != 0) return 0;
    if (causal && Tk < Tq) return 0; /* first rows would see no key */
    return 1;
}

/* The quantized matmul's backend in use supplies the micro-kernel; every
 * x86 backend but the scalar one has AVX2 for the softmax rows. */
static const gm_qmm_backend *pick_backend(const att_ops **ops) {
    const gm_qmm_backend *be = gm_qmm_backend_in_use();
    *ops = &att_ops_scalar;
#if defined(__x86_64__)
    if (be != &gm_qmm_scalar) *ops = &att_ops_avx2;
#endif
    return be;
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

/* Query rows of a task: row r is query head hk*group + r/nt at position
 * t0 + r%nt. */
typedef struct att_job {
    int b, hk, t0, nt, R;
} att_job;

/* S = Q K^T for key block [j0, j0+nk) into S [R][ATT_KB]. */
static void block_scores(const att_ctx *c, const att_job *w, const float *Q, int j0, int nk,
                         float *S, float *kp, float *tmp) {
    const gm_attn_args *a = c->a;
    int D = a->D, Dp = c->Dp;
    if (c->direct) {
        const int64_t *s = a->k_strides;
        att_rows k = {a->k, w->b * s[0] + w->hk * s[1] + j0 * s[2], s[2], s[3], a->dtype};
        c->ops->scores(Q, w->R, Dp, &k, nk, D, S, ATT_KB);
        return;
    }
    pack_keys(c, w->b, w->hk, j0, nk, kp, tmp);
    int np = (nk + ATT_NP - 1) / ATT_NP;
    for (int r0 = 0; r0 < w->R; r0 += QMM_NR) {
        int nr = w->R - r0 < QMM_NR ? w->R - r0 : QMM_NR;
        for (int p = 0; p < np; p++)
            c->be->micro(Q + (size_t)r0 * Dp, Dp, kp + (size_t)p * ATT_NP * D, ATT_NP, D,
                         S + (size_t)r0 * ATT_KB + p * ATT_NP, ATT_KB, nr, 1);
    }
}

/* O += P V for key block [j0, j0+nk), P in S. */
static void block_accum(const att_ctx *c, const att_job *w, const float *S, int j0, int nk,
                        float *O, float *vp, float *tmp) {
    const gm_attn_args *a = c->a;
    int Dp = c->Dp;
    if (c->direct) {
        const int64_t *s = a->v_strides;
        att_rows v = {a->v, w->b * s[0] + w->hk * s[1] + j0 * s[2], s[2], s[3], a->dtype};
        c->ops->accum(S, w->R, ATT_KB, &v, nk, a->D, O, Dp);
        return;
    }
    pack_values(c, w->b, w->hk, j0, nk, vp, tmp);
    for (int r0 = 0; r0 < w->R; r0 += QMM_NR) {
        int nr = w->R - r0 < QMM_NR ? w->R - r0 : QMM_NR;
        for (int q0 = 0; q0 < Dp; q0 += 16) {
            int wd = Dp - q0 < 16 ? Dp - q0 : 16;
            c->be->micro(S + (size_t)r0 * ATT_KB, ATT_KB, vp + (size_t)q0 * ATT_KB, wd, nk,
                         O + (size_t)r0 * Dp + q0, Dp, nr, 0);
        }
    }
}

/* Online softmax over one block: turns row r's scores into
 * probabilities against the new running max, rescales what O and l hold,
 * and zeroes what the row may not see (so the P V product can run over
 * the whole block). */
static void block_softmax(const att_ctx *c, const att_job *w, int j0, int nk, float *S, float *O,
                          float *m, float *l) {
    const gm_attn_args *a = c->a;
    int shift = a->Tk - a->Tq; /* query t sees keys 0 .. shift + t */
    for (int r = 0; r < w->R; r++) {
        float *sr = S + (size_t)r * ATT_KB;
        int lo = 0, lim = nk;
        if (a->causal) {
            int last = shift + w->t0 + r % w->nt - j0; /* block-relative */
            lim = last + 1 < nk ? last + 1 : nk;
            if (a->window > 0 && last - a->window + 1 > 0) lo = last - a->window + 1;
        }
        if (lim <= lo) { /* row sees none of this block */
            memset(sr, 0, (size_t)nk * sizeof(float));
            continue;
        }
        if (a->softcap > 0) {
            float cap = a->softcap, inv = 1.0f / a->softcap;
            for (int j = lo; j < lim; j++) sr[j] = cap * tanhf(sr[j] * inv);
        }
        float mb = sr[lo];
        for (int j = lo + 1; j < lim; j++) mb = sr[j] > mb ? sr[j] : mb;
        float mn = m[r] > mb ? m[r] : mb;
        float alpha = expf(m[r] - mn); /* 0 on the first block (m = -inf) */
        float sum = c->ops->exp_row(sr + lo, lim - lo, mn);
        for (int j = 0; j < lo; j++) sr[j] = 0.0f;
        for (int j = lim; j < nk; j++) sr[j] = 0.0f;
        l[r] = l[r] * alpha + sum;
        m[r] = mn;
        if (alpha != 1.0f) {
            float *o = O + (size_t)r * c->Dp;
            for (int d = 0; d < c->Dp; d++) o[d] *= alpha;
        }
    }
}

static void att_task(void *ctx, int task, int worker) {
    const att_ctx *c = ctx;
    const gm_attn_args *a = c->a;
    int D = a->D, Dp = c->Dp, BH = a->B * a->Hkv;
    /* Heaviest (latest, under a causal mask) query blocks first, so the
     * pool's last tasks are the short ones. */
    int unit = task / c->nsplit, split = task % c->nsplit;
    int bh = unit % BH, qi = c->nqb - 1 - unit / BH;
    att_job w;
    w.b = bh / a->Hkv;
    w.hk = bh % a->Hkv;
    w.t0 = qi * c->qb;
    w.nt = a->Tq - w.t0 < c->qb ? a->Tq - w.t0 : c->qb;
    w.R = c->group * w.nt;

    float *Q = c->scratch + (size_t)worker * c->per_worker; /* [R][Dp], pre-scaled */
    float *S = Q + (size_t)c->rows * Dp;                    /* [R][ATT_KB] scores, then P */
    float *kp = S + (size_t)c->rows * ATT_KB;               /* ATT_KB * D */
    float *vp = kp + (size_t)ATT_KB * D;                    /* ATT_KB * Dp */
    float *tmp = vp + (size_t)ATT_KB * Dp;                  /* Dp */
    float *O = tmp + Dp;                                    /* [R][Dp] */
    if (c->nsplit > 1) O = c->part + (size_t)task * c->per_part;
    float *m = O + (size_t)c->rows * Dp; /* running max per row */
    float *l = m + c->rows;              /* running sum per row */

    const int64_t *qs = a->q_strides;
    for (int r = 0; r < w.R; r++) {
        int h = w.hk * c->group + r / w.nt, t = w.t0 + r % w.nt;
        int64_t off = w.b * qs[0] + h * qs[1] + (int64_t)t * qs[2];
        load_row(a->q, off, qs[3], D, a->dtype, a->scale, Q + (size_t)r * Dp);
        for (int d = D; d < Dp; d++) Q[(size_t)r * Dp + d] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(O, 0, (size_t)w.R * Dp * sizeof(float));

    /* Keys any row of this task sees: up to the last row's diagonal;
     * this split's share of their blocks. */
    int kend = a->causal ? a->Tk - a->Tq + w.t0 + w.nt : a->Tk;
    /* ... and from the first row's window start (earlier blocks are unseen) */
    int kstart = a->causal && a->window > 0 ? a->Tk - a->Tq + w.t0 - a->window + 1 : 0;
    int first = kstart > 0 ? kstart / ATT_KB : 0;
    int nblk = (kend + ATT_KB - 1) / ATT_KB - first;
    int b0 = first + (int)((int64_t)nblk * split / c->nsplit);
    int b1 = first + (int)((int64_t)nblk * (split + 1) / c->nsplit);
    for (int blk = b0; blk < b1; blk++) {
        int j0 = blk * ATT_KB, nk = kend - j0 < ATT_KB ? kend - j0 : ATT_KB;
        block_scores(c, &w, Q, j0, nk, S, kp, tmp);
        block_softmax(c, &w, j0, nk, S, O, m, l);
        block_accum(c, &w, S, j0, nk, O, vp, tmp);
    }
    if (c->nsplit > 1) return; /* merged by the caller */

    for (int r = 0; r < w.R; r++) {
        int h = w.hk * c->group + r / w.nt, t = w.t0 + r % w.nt;
        size_t base = (((size_t)w.b * a->Hq + h) * a->Tq + t) * D;
        float inv = 1.0f / l[r];
        const float *o = O + (size_t)r * Dp;
        for (int d = 0; d < D; d++) qmm_store(a->out, base + d, o[d] * inv, a->dtype);
    }
}

/* Split keys: each query row's partial (O, m, l) per split are rescaled to
 * the overall max and summed. */
static void merge_splits(const att_ctx *c) {
    const gm_attn_args *a = c->a;
    int D = a->D, Dp = c->Dp, BH = a->B * a->Hkv, ns = c->nsplit;
    for (int unit = 0; unit < BH * c->nqb; unit++) {
        int bh = unit % BH, qi = c->nqb - 1 - unit / BH;
        int b = bh / a->Hkv, hk = bh % a->Hkv;
        int t0 = qi * c->qb, nt = a->Tq - t0 < c->qb ? a->Tq - t0 : c->qb;
        const float *part = c->part + (size_t)unit * ns * c->per_part;
        for (int r = 0; r < c->group * nt; r++) {
            float M = -INFINITY, L = 0.0f, acc[GM_ATTN_MAX_D];
            for (int s = 0; s < ns; s++) {
                float ms = part[(size_t)s * c->per_part + (size_t)c->rows * Dp + r];
                M = ms > M ? ms : M;
            }
            memset(acc, 0, (size_t)D * sizeof(float));
            for (int s = 0; s < ns; s++) {
                const float *ps = part + (size_t)s * c->per_part;
                float ms = ps[(size_t)c->rows * Dp + r], ls = ps[(size_t)c->rows * Dp + c->rows + r];
                if (ls == 0.0f) continue; /* split saw no key of this row */
                float wgt = expf(ms - M);
                L += ls * wgt;
                for (int d = 0; d < D; d++) acc[d] += ps[(size_t)r * Dp + d] * wgt;
            }
            int h = hk * c->group + r / nt, t = t0 + r % nt;
            size_t base = (((size_t)b * a->Hq + h) * a->Tq + t) * D;
            for (int d = 0; d < D; d++) qmm_store(a->out, base + d, acc[d] / L, a->dtype);
        }
    }
}

int gm_attention(const gm_attn_args *a) {
    if (!gm_attention_supported(a->B, a->Hq, a->Hkv, a->Tq, a->Tk, a->D, a->causal)) return -1;
    if (a->window < 0 || (a->window > 0 && !a->causal) || !(a->softcap >= 0)) return -1;
    att_ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.be = pick_backend(&c.ops);
    c.group = a->Hq / a->Hkv;
    c.qb = a->Tq < ATT_QB ? a->Tq : ATT_QB;
    c.nqb = (a->Tq + c.qb - 1) / c.qb;
    c.Dp = (a->D + 7) & ~7;
    c.rows = c.group * c.qb;
    c.direct = c.rows <= ATT_DIRECT_ROWS;
    int units = a->B * a->Hkv * c.nqb;

    /* Multiply-adds, halved under a causal mask when Tq ~ Tk. */
    double work = 2.0 * a->B * a->Hq * (double)a->Tq * a->Tk * a->D;
    if (a->causal) work -= (double)a->B * a->Hq * a->Tq * (double)a->Tq * a->D;
    int threads = gm_pool_threads();
    if (work < ATT_MIN_PARALLEL) threads = 1;

    /* Fewer units than 2 per thread (decode: one per kv head): cut the keys
     * too, so every thread has work and the last round is short. */
    c.nsplit = 1;
    if (threads > 1 && units < 2 * threads) {
        int kblocks = (a->Tk + ATT_KB - 1) / ATT_KB;
        c.nsplit = (2 * threads + units - 1) / units;
        if (c.nsplit > kblocks) c.nsplit = kblocks;
    }
    int ntasks = units * c.nsplit;
    if (threads > ntasks) threads = ntasks;

    c.per_worker = (size_t)c.rows * (c.Dp + ATT_KB) + (size_t)ATT_KB * (a->D + c.Dp) +
                   (size_t)c.Dp + (size_t)c.rows * (c.Dp + 2);
    c.per_part = (size_t)c.rows * (c.Dp + 2);
    size_t total = (size_t)threads * c.per_worker + (c.nsplit > 1 ? ntasks * c.per_part : 0);
    c.scratch = malloc(total * sizeof(float));
    if (!c.scratch) return -1;
    c.part = c.scratch + (size_t)threads * c.per_worker;
    gm_pool_run(att_task, &c, ntasks, threads);
    if (c.nsplit > 1) merge_splits(&c);
    free(c.scratch);
    return 0;
}
