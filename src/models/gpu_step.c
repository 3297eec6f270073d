/* gpu_step.c - decoding one token on an NVIDIA GPU with fewer graph nodes.
 * With MLX's CUDA backend a decode step is paced by the host handing each
 * op to the device (about 4.5 us a kernel and 1 us a view on an H100's
 * host; the device idles between), so each layer here uses fused kernels
 * (src/mlx/cuda_fused.cpp) where layers.c uses several ops:
 *
 *   previous residual add + norm   -> mx_cuda_add_rms_norm (1 kernel, 2 outputs)
 *   q|k|v bias, split, RoPE        -> mx_cuda_rope_qkv (1 kernel, 3 outputs)
 *   gate|up split + SwiGLU         -> mx_cuda_swiglu_stacked, via mx_gated_stacked
 *
 * The same math and roundings as layers.c; prefill, the CPU, Gemma 2 and
 * GOMLX_CUDA_FUSED=0 keep the op-by-op graph. */
#include <stdlib.h>
#include <string.h>

#include "models/layers.h"
#include "util/error.h"

static int env_off(void) {
    const char *e = getenv("GOMLX_CUDA_FUSED");
    return e && !strcmp(e, "0");
}

int gm_gpu_step_prepare(gm_model *m) {
    m->gpu_step = 0;
    mx_dtype t = gm_model_dtype(m);
    if (env_off() || !m->arch->gpu_step || !mx_device_is_gpu() || !mx_cuda_available()) return 0;
    if ((t != MX_BFLOAT16 && t != MX_FLOAT16) || m->cfg.head_dim % 2) return 0;
    if (m->rope_freqs && mx_get_dtype(m->rope_freqs) != MX_FLOAT32) return 0;
    if (mx_get_dtype(m->final_norm) != t) return 0;
    for (int i = 0; i < m->cfg.num_layers; i++) {
        const gm_layer *l = &m->layers[i];
        if (!l->wqkv.w || !l->w_gate_up.w || mx_get_dtype(l->attn_norm) != t ||
            mx_get_dtype(l->mlp_norm) != t || (l->wqkv.bias && mx_get_dtype(l->wqkv.bias) != t))
            return 0;
    }
    /* Compiled now: a missing NVRTC shows here as the op-by-op graph, not
     * as an error mid-generation. */
    m->gpu_step = mx_cuda_fused_ready(t);
    return 0;
}

int gm_gpu_step_usable(const gm_model *m, int t) {
    return t == 1 && m->gpu_step && mx_device_is_gpu();
}

/* Attention of layer i from its normed input n: the projection without its
 * bias (the RoPE kernel adds it), RoPE, cache, attention, output projection. */
static mx_array attention(const gm_model *m, const gm_layer *l, int i, mx_array n,
                          gm_kv_cache *cache) {
    const gm_config *c = &m->cfg;
    gm_linear qkv_w = l->wqkv;
    qkv_w.bias = NULL;
    mx_array qkv = gm_linear_apply(&qkv_w, n), q, k, v;
    if (!qkv || mx_cuda_rope_qkv(qkv, l->wqkv.bias, m->rope_freqs, c->num_heads, c->num_kv_heads,
                                 c->head_dim, c->rope_traditional, c->rope_theta, m->rope_scale,
                                 cache->offset, &q, &k, &v))
        return NULL;
    return gm_attention_of_heads(m, l, i, q, k, v, cache);
}

mx_array gm_gpu_step_layers(const gm_model *m, mx_array h, gm_kv_cache *cache, mx_array *normed) {
    const gm_config *c = &m->cfg;
    float eps = c->rms_norm_eps;
    /* Between layers: the residual stream h and the MLP output still to be
     * added to it (NULL before the first layer), kept out of the scopes. */
    mx_array pending = NULL;
    int owned = 0, ok = 1;
    for (int i = 0; i < c->num_layers && ok; i++) {
        const gm_layer *l = &m->layers[i];
        mx_scope *scope = mx_scope_open();
        mx_array x = h, n, mlp = NULL;
        if (!pending) n = gm_rms_norm(m, x, l->attn_norm);
        else if (mx_cuda_add_rms_norm(x, pending, l->attn_norm, eps, &x, &n)) n = NULL;
        mx_array a = n ? attention(m, l, i, n, cache) : NULL;
        if (a && !mx_cuda_add_rms_norm(x, a, l->mlp_norm, eps, &x, &n)) mlp = gm_mlp(l, n, 0);
        ok = mlp != NULL;
        x = ok ? mx_keep(x) : NULL;
        mlp = ok ? mx_keep(mlp) : NULL;
        mx_scope_close(scope);
        if (owned) mx_free(h);
        mx_free(pending);
        h = x;
        pending = mlp;
        owned = 1;
    }
    if (!ok) return NULL;
    mx_array out = NULL;
    if (!pending) { /* no layers */
        out = mx_copy_ref(h);
        if (normed) *normed = gm_rms_norm(m, out, m->final_norm);
    } else if (normed) {
        if (mx_cuda_add_rms_norm(h, pending, m->final_norm, eps, &out, normed)) out = NULL;
    } else {
        out = mx_add(h, pending);
    }
    if (owned) mx_free(h);
    mx_free(pending);
    return out;
}
