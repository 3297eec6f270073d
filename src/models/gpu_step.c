/* gpu_step.c - decoding one token on an NVIDIA GPU with fewer graph nodes.
 * With MLX's CUDA backend a decode step is paced by the host handing each
 * op to the device (docs/GPU.md: ~2-8 us a kernel; the device idles in
 * between), so each layer's four products run as our kernels with the ops
 * around them folded in (mx_cuda_layer_qmv, src/mlx/cuda_layer.cpp):
 *
 *   q|k|v    = qmv(rms_norm(h) ; + bias)         was rms_norm, qmm, add
 *   h        = h + qmv(attention ; + bias)       was qmm, add
 *   act      = swiglu(qmv(rms_norm(h)))          was rms_norm, qmm, 2 slices, swiglu
 *   h        = h + qmv(act)                      was qmm, add
 *   logits   = qmv(rms_norm(h))                  was rms_norm, qmm
 *
 * RoPE, the cache writes and the attention stay MLX's (layers.c). Same
 * math and roundings as the op-by-op graph but for the SwiGLU, rounded
 * once. Prefill, the CPU, Gemma 2 and GOMLX_CUDA_LAYER=0 keep layers.c. */
#include <stdlib.h>
#include <string.h>

#include "models/layers.h"
#include "util/error.h"

static int env_off(void) {
    const char *e = getenv("GOMLX_CUDA_LAYER");
    return e && !strcmp(e, "0");
}

static mx_qlinear qlinear(const gm_linear *l) {
    mx_qlinear q = {l->w, l->scales, l->biases, l->bias, l->bits, l->group_size};
    return q;
}

/* The unembedding: lm_head, or the embedding table when tied. */
static const gm_linear *unembedding(const gm_model *m) { return m->lm_head.w ? &m->lm_head : &m->embed; }

int gm_gpu_step_prepare(gm_model *m) {
    m->gpu_step = 0;
    mx_dtype t = gm_model_dtype(m);
    if (env_off() || !m->arch->gpu_step || !mx_device_is_gpu() || !mx_cuda_available()) return 0;
    if (t != MX_BFLOAT16 && t != MX_FLOAT16) return 0;
    if (m->cfg.num_layers < 1 || mx_get_dtype(m->final_norm) != t) return 0;
    int gs = m->layers[0].wqkv.group_size;
    for (int i = 0; i < m->cfg.num_layers; i++) {
        const gm_layer *l = &m->layers[i];
        mx_qlinear qkv = qlinear(&l->wqkv), o = qlinear(&l->wo), gu = qlinear(&l->w_gate_up),
                   down = qlinear(&l->w_down);
        if (!l->wqkv.w || !l->w_gate_up.w || mx_get_dtype(l->attn_norm) != t ||
            mx_get_dtype(l->mlp_norm) != t || mx_cuda_layer_misfit(&qkv, t, 0) ||
            mx_cuda_layer_misfit(&o, t, 0) || mx_cuda_layer_misfit(&gu, t, 1) ||
            mx_cuda_layer_misfit(&down, t, 0))
            return 0;
        const gm_linear *all[4] = {&l->wqkv, &l->wo, &l->w_gate_up, &l->w_down};
        for (int k = 0; k < 4; k++)
            if (all[k]->group_size != gs) return 0;
    }
    /* Compiled now: a missing NVRTC shows here as the op-by-op graph, not
     * as an error mid-generation. */
    m->gpu_step = mx_cuda_layer_ready(t, gs);
    return 0;
}

int gm_gpu_step_usable(const gm_model *m, int t) {
    return t == 1 && m->gpu_step && mx_device_is_gpu();
}

/* One layer: the residual stream h in, out. */
static mx_array layer(const gm_model *m, const gm_layer *l, int i, mx_array h, gm_kv_cache *cache) {
    float eps = m->cfg.rms_norm_eps;
    mx_qlinear qkv_w = qlinear(&l->wqkv), o_w = qlinear(&l->wo), gu_w = qlinear(&l->w_gate_up),
               down_w = qlinear(&l->w_down);
    mx_array q, k, v;
    mx_array qkv = mx_cuda_layer_qmv(h, l->attn_norm, eps, &qkv_w, NULL, 0);
    if (!qkv) return NULL;
    gm_qkv_heads(m, qkv, cache->offset, &q, &k, &v);
    mx_array o = gm_attention_of_heads(m, l, i, q, k, v, cache);
    if (!o) return NULL;
    h = mx_cuda_layer_qmv(o, NULL, 0.0f, &o_w, h, 0);
    mx_array act = h ? mx_cuda_layer_qmv(h, l->mlp_norm, eps, &gu_w, NULL, 1) : NULL;
    return act ? mx_cuda_layer_qmv(act, NULL, 0.0f, &down_w, h, 0) : NULL;
}

mx_array gm_gpu_step(const gm_model *m, mx_array h, gm_kv_cache *cache, int logits) {
    gm_layer_walk w;
    gm_walk_begin(&w, h, 1, m->cfg.num_layers);
    for (int i = 0; i < m->cfg.num_layers && w.h; i++) {
        gm_walk_open(&w);
        if (gm_walk_close(&w, layer(m, &m->layers[i], i, w.h, cache), i)) break;
    }
    h = gm_walk_end(&w);
    if (!h || !logits) return h;
    mx_qlinear out = qlinear(unembedding(m));
    if (mx_cuda_layer_misfit(&out, gm_model_dtype(m), 0)) return gm_unembed(m, h);
    return mx_cuda_layer_qmv(h, m->final_norm, m->cfg.rms_norm_eps, &out, NULL, 0);
}
