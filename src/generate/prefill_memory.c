/* prefill_memory.c - MLX's memory limit during a CPU prefill (see
 * prefill_memory.h). The limit is process-wide: prefills of models on
 * other worker threads share it, the largest bound stands while any is
 * open, and the limit from before the first comes back after the last. */
#include "generate/prefill_memory.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mlx/mx.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_open;          /* prefills between begin and end */
static size_t g_saved;      /* MLX's limit before the first of them */
static size_t g_bound;      /* the limit set now */

static int bound_on(void) {
    const char *e = getenv("GOMLX_PREFILL_MEMORY_BOUND");
    return !(e && strcmp(e, "0") == 0);
}

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

int gm_prefill_memory_begin(const gm_model *m, size_t tokens, int chunk) {
    if (mx_device_is_gpu() || !bound_on()) return 0;
    /* 4% above the need: at the need itself the Qwen2.5-0.5B shape's
     * prefill lost 5-9% (the scheduler waits on nearly every node); at 4%
     * 0-4%, SmolLM2 1.10 -> 1.06 x needed at 512 tokens, 1.18 -> 1.09 at
     * 1000 (docs/PERFORMANCE.md). */
    size_t need = mx_active_memory() + prompt_need(m, tokens, chunk);
    size_t bound = need + need / 25;
    pthread_mutex_lock(&g_mu);
    if (g_open++ == 0) {
        g_saved = mx_set_memory_limit(bound);
        g_bound = bound;
    } else if (bound > g_bound) {
        mx_set_memory_limit(bound);
        g_bound = bound;
    }
    pthread_mutex_unlock(&g_mu);
    return 1;
}

void gm_prefill_memory_end(int opened) {
    if (!opened) return;
    pthread_mutex_lock(&g_mu);
    if (g_open > 0 && --g_open == 0 && g_saved) mx_set_memory_limit(g_saved);
    pthread_mutex_unlock(&g_mu);
}

int gm_prefill_memory_open(void) {
    pthread_mutex_lock(&g_mu);
    int n = g_open;
    pthread_mutex_unlock(&g_mu);
    return n;
}
