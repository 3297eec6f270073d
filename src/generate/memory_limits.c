/* memory_limits.c - MLX's memory limit, a CPU prefill's bound under it and
 * the wired limit during generations (see memory_limits.h). MLX's settings
 * are process-wide: prefills and generations of models on other worker
 * threads share them, the largest prefill bound stands while any is open
 * (never above the caller's limit), and the caller's limit comes back
 * after the last. */
#include "generate/memory_limits.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mlx/mx.h"
#include "util/env.h"
#include "util/error.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_open;          /* prefills between begin and end */
static size_t g_user;       /* while g_open: the limit to return to (MLX's, or the caller's) */
static size_t g_bound;      /* while g_open: the largest bound asked for */
static int g_wired_open;    /* generations between gm_wired_begin and end */
static int g_wired_set;     /* the first of them set the wired limit */
static size_t g_wired_saved;

/* What the prompt adds to the memory in use: its KV cache (rounded up as
 * the cache grows, in steps of 256 tokens), a chunk's widest activations
 * (the residual stream, its norm, gate|up and the gated activation:
 * T x (2 hidden + 3 intermediate) values) and two rows of float32 logits. */
static size_t prompt_need(const gm_model *m, size_t tokens, int chunk) {
    const gm_config *c = &m->cfg;
    uint64_t t = tokens < (size_t)chunk ? tokens : (size_t)chunk;
    uint64_t kv = gm_kv_bytes_per_token(m) * ((tokens + 1 + 255) / 256 * 256);
    uint64_t act = t * (2 * (uint64_t)c->hidden_size + 3 * (uint64_t)c->intermediate_size) *
                   mx_dtype_size(gm_model_dtype(m));
    return (size_t)(kv + act + 2 * 4 * (uint64_t)c->vocab_size);
}

/* The limit while prefills are open: their bound, under the caller's. */
static void apply_bound(void) { mx_set_memory_limit(g_bound < g_user ? g_bound : g_user); }

int gm_prefill_memory_begin(const gm_model *m, size_t tokens, int chunk) {
    if (mx_device_is_gpu() || gm_env_off("GOMLX_PREFILL_MEMORY_BOUND")) return 0;
    /* 4% above the need: at the need itself the Qwen2.5-0.5B shape's
     * prefill lost 5-9% (the scheduler waits on nearly every node); at 4%
     * 0-4%, SmolLM2 1.10 -> 1.06 x needed at 512 tokens, 1.18 -> 1.09 at
     * 1000 (docs/PERFORMANCE.md). */
    size_t need = mx_active_memory() + prompt_need(m, tokens, chunk);
    size_t bound = need + need / 25;
    pthread_mutex_lock(&g_mu);
    if (g_open++ == 0) {
        g_user = mx_memory_limit();
        g_bound = 0;
    }
    /* MLX could not tell its limit (0): leave it alone. */
    if (g_user && bound > g_bound) {
        g_bound = bound;
        apply_bound();
    }
    pthread_mutex_unlock(&g_mu);
    return 1;
}

void gm_prefill_memory_end(int opened) {
    if (!opened) return;
    pthread_mutex_lock(&g_mu);
    if (g_open > 0 && --g_open == 0 && g_user) mx_set_memory_limit(g_user);
    pthread_mutex_unlock(&g_mu);
}

int gm_prefill_memory_open(void) {
    pthread_mutex_lock(&g_mu);
    int n = g_open;
    pthread_mutex_unlock(&g_mu);
    return n;
}

int gm_memory_limit_set(size_t bytes, size_t *previous) {
    if (bytes == 0) return gm_fail(GOMLX_ERR_INVALID_INPUT, "a memory limit of 0 bytes would stall every evaluation");
    pthread_mutex_lock(&g_mu);
    size_t before;
    if (g_open > 0 && g_user) {
        before = g_user;
        g_user = bytes;
        apply_bound();
    } else {
        before = mx_set_memory_limit(bytes);
    }
    pthread_mutex_unlock(&g_mu);
    if (!before) return gm_fail_mlx("setting the memory limit");
    if (previous) *previous = before;
    return 0;
}

void gm_wired_begin(void) {
    pthread_mutex_lock(&g_mu);
    if (g_wired_open++ == 0) {
        size_t want = mx_recommended_wired();
        g_wired_set = want > 0;
        if (g_wired_set) g_wired_saved = mx_set_wired_limit(want);
    }
    pthread_mutex_unlock(&g_mu);
}

void gm_wired_end(void) {
    pthread_mutex_lock(&g_mu);
    if (g_wired_open > 0 && --g_wired_open == 0 && g_wired_set) mx_set_wired_limit(g_wired_saved);
    pthread_mutex_unlock(&g_mu);
}
