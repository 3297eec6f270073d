/* fused_step.c - decoding one token with one graph node per layer, or one
 * for all layers, instead of the op-by-op graph of layers.c: on the CPU
 * mx_cpu_layer_step per layer (over src/kernels/layer_step.c), on NVIDIA
 * GPUs mx_cuda_layers_step for all of them (one CUDA kernel,
 * src/mlx/cuda_layer.cpp). Same math and roundings (the GPU's SwiGLU
 * rounds once); the op-by-op path stays for prefill, dense models, what a
 * kernel does not take, GOMLX_CPU_FUSED=0 and GOMLX_CUDA_LAYER=0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/layers.h"
#include "util/env.h"
#include "util/error.h"


enum { FUSED_OFF, FUSED_CPU, FUSED_CUDA };

static int quantized(const gm_linear *l) { return l->w && l->bits > 0 && l->scales && l->biases; }

/* MLX's RoPE fallback computes its angles from exp(-i * log(base) / half)
 * or from 1 / freqs; built with MLX's ops so the table is the same. (MLX's
 * CUDA RoPE takes exp2 of -(i / half) * log2(base) instead: the CUDA
 * kernel computes that itself from rope_base.) */
static mx_array inv_freq_table(const gm_model *m) {
    int half = m->cfg.head_dim / 2;
    if (m->rope_freqs) return mx_divide(mx_scalar(1.0, MX_FLOAT32), mx_astype(m->rope_freqs, MX_FLOAT32));
    float step = logf(m->cfg.rope_theta) / (float)half;
    return mx_exp(mx_multiply(mx_arange(0, -half, -1, MX_FLOAT32), mx_scalar(step, MX_FLOAT32)));
}

static mx_qlinear qlinear(const gm_linear *l) {
    mx_qlinear q = {l->w, l->scales, l->biases, l->bias, l->bits, l->group_size};
    return q;
}

/* Layer l's step arguments but for the cache (slot, position, buffers). */
static mx_layer_step step_args(const gm_model *m, const gm_layer *l) {
    const gm_config *c = &m->cfg;
    mx_layer_step s = {
        .attn_norm = l->attn_norm, .mlp_norm = l->mlp_norm,
        .post_attn_norm = l->post_attn_norm, .post_mlp_norm = l->post_mlp_norm,
        .qkv = qlinear(&l->wqkv), .o = qlinear(&l->wo),
        .gate_up = qlinear(&l->w_gate_up), .down = qlinear(&l->w_down),
        .gelu = m->gelu_mlp,
        .n_heads = c->num_heads, .n_kv_heads = c->num_kv_heads, .head_dim = c->head_dim,
        .eps = c->rms_norm_eps,
        .inv_freq = m->rope_inv_freq,
        .rope_base = m->rope_freqs ? 0.0f : c->rope_theta,
        .rope_traditional = c->rope_traditional,
        .attn_scale = gm_attention_scale(c),
        .softcap = c->attn_logit_softcapping > 0 ? c->attn_logit_softcapping : 0.0f,
    };
    return s;
}

static int build_rope_table(gm_model *m) {
    /* A table, not a weight: evaluated here, left out of the weight count. */
    mx_scope *scope = mx_scope_open();
    m->rope_inv_freq = mx_keep(inv_freq_table(m));
    mx_scope_close(scope);
    if (!m->rope_inv_freq || mx_eval(&m->rope_inv_freq, 1)) return gm_fail_mlx("building the RoPE table");
    return 0;
}

/* The CUDA layers kernel takes all layers (compiled and tried now, so a
 * missing NVRTC shows here as the op-by-op graph, not mid-generation). */
static int cuda_prepare(gm_model *m) {
    if (!mx_cuda_layer_on() || !mx_cuda_available()) return 0;
    int n = m->cfg.num_layers;
    int rc = build_rope_table(m);
    if (rc) return rc;
    mx_layer_step *s = malloc((size_t)n * sizeof *s);
    if (!s) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < n; i++) s[i] = step_args(m, &m->layers[i]);
    /* Why not is left in mx_cuda_layer_status(). */
    if (!mx_cuda_layers_ready(s, n)) m->fused_step = FUSED_CUDA;
    free(s);
    return 0;
}

int gm_fused_step_prepare(gm_model *m) {
    m->fused_step = FUSED_OFF;
    mx_dtype t = gm_model_dtype(m);
    if (mx_device_is_gpu()) return cuda_prepare(m);
    if (gm_env_off("GOMLX_CPU_FUSED") || m->cfg.head_dim % 2 || m->cfg.head_dim > 256) return 0;
    if (t != MX_FLOAT32 && t != MX_FLOAT16 && t != MX_BFLOAT16) return 0;
    for (int i = 0; i < m->cfg.num_layers; i++) {
        const gm_layer *l = &m->layers[i];
        if (!quantized(&l->wqkv) || !quantized(&l->wo) || !quantized(&l->w_gate_up) ||
            !quantized(&l->w_down))
            return 0;
        mx_array norms[4] = {l->attn_norm, l->mlp_norm, l->post_attn_norm, l->post_mlp_norm};
        for (int k = 0; k < 4; k++)
            if (norms[k] && mx_get_dtype(norms[k]) != t) return 0;
    }
    int rc = build_rope_table(m);
    if (rc) return rc;
    m->fused_step = FUSED_CPU;
    return 0;
}

int gm_fused_step_usable(const gm_model *m, int t) {
    if (t != 1) return GM_FUSED_NO;
    if (m->fused_step == FUSED_CUDA)
        return mx_device_is_gpu() && mx_cuda_layer_on() ? GM_FUSED_ALL : GM_FUSED_NO;
    return m->fused_step == FUSED_CPU && mx_cpu_kernels() && !mx_device_is_gpu() ? GM_FUSED_LAYER : GM_FUSED_NO;
}

/* Layer li's step for the token at cache->offset, its cache slot reserved. */
static int layer_step(const gm_model *m, int li, gm_kv_cache *cache, mx_layer_step *s) {
    const gm_layer *l = &m->layers[li];
    int window = gm_layer_window(m, l), slot, key_start;
    if (gm_kv_cache_reserve(cache, m, li, 1, window, gm_model_dtype(m), &slot, &key_start)) {
        mx_set_error("%s", gm_error_message());
        return -1;
    }
    /* A sliding layer's token sees the last `window` positions only. */
    int first = window > 0 ? cache->offset - window + 1 - key_start : 0;
    *s = step_args(m, l);
    s->position = (float)cache->offset * m->rope_scale;
    s->k_cache = cache->k[li], s->v_cache = cache->v[li];
    s->slot = slot, s->first = first > 0 ? first : 0;
    return 0;
}

mx_array gm_fused_layer(const gm_model *m, int li, mx_array h, gm_kv_cache *cache) {
    mx_layer_step s;
    if (!h || layer_step(m, li, cache, &s)) return NULL;
    return mx_cpu_layer_step(h, &s);
}

mx_array gm_fused_layers(const gm_model *m, mx_array h, gm_kv_cache *cache) {
    int n = m->cfg.num_layers;
    if (!h) return NULL;
    mx_layer_step *s = malloc((size_t)n * sizeof *s);
    if (!s) {
        mx_set_error("out of memory");
        return NULL;
    }
    mx_array out = NULL;
    int i = 0;
    while (i < n && !layer_step(m, i, cache, &s[i])) i++;
    /* Per session: the kernel's blocks exchange values through its scratch. */
    if (i == n && !cache->cuda_layers) cache->cuda_layers = mx_cuda_layers_new(s, n);
    if (i == n && cache->cuda_layers) out = mx_cuda_layers_step(cache->cuda_layers, h, s, n);
    free(s);
    return out;
}

void gm_walk_fused_all(gm_layer_walk *w, const gm_model *m, mx_array h, int t, gm_kv_cache *cache) {
    gm_walk_begin(w, h, t, 1);
    gm_walk_open(w);
    gm_walk_close(w, gm_fused_layers(m, w->h, cache), 0);
}
