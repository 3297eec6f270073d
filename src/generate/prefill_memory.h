/* prefill_memory.h - keeps a CPU prefill's memory near what it needs.
 *
 * MLX's scheduler hands a graph's nodes to the CPU stream ahead of the
 * work (up to 10 queued at once), allocating each node's output as it
 * goes, so a prompt's peak held the outputs of nodes queued behind the
 * running one: SmolLM2-135M at 512 tokens peaked at 1.10 x weights + KV
 * cache + activations. Past MLX's memory limit the scheduler waits for
 * queued work first; during a prefill on the CPU the limit is set to the
 * memory in use plus what the prompt needs (KV cache, one chunk's MLP
 * activations, logits), and put back after. GOMLX_PREFILL_MEMORY_BOUND=0
 * turns it off (A/B runs). */
#ifndef GM_PREFILL_MEMORY_H
#define GM_PREFILL_MEMORY_H

#include <stddef.h>

#include "models/model.h"

/* Before a prefill of `tokens` prompt tokens in chunks of `chunk`: 1 when
 * it set a bound (CPU device, not turned off), which gm_prefill_memory_end
 * then closes; the limit from before returns once none is open. */
int gm_prefill_memory_begin(const gm_model *m, size_t tokens, int chunk);
void gm_prefill_memory_end(int opened);
/* Prefills between begin and end now (0 when none runs: tests). */
int gm_prefill_memory_open(void);

#endif
