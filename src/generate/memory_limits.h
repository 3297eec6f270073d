/* memory_limits.h - MLX's process-wide memory settings as the engine and
 * its caller share them: the memory limit the caller sets, the bound a CPU
 * prefill puts under it, and the wired limit a generation holds on Metal.
 *
 * A CPU prefill's memory is kept near what it needs: MLX's scheduler hands
 * a graph's nodes to the CPU stream ahead of the work (up to 10 queued at
 * once), allocating each node's output as it goes, so a prompt's peak held
 * the outputs of nodes queued behind the running one (SmolLM2-135M at 512
 * tokens peaked at 1.10 x weights + KV cache + activations). Past MLX's
 * memory limit the scheduler waits for queued work first; during a CPU
 * prefill the limit is the memory in use plus what the prompt needs (KV
 * cache, one chunk's MLP activations, logits), never above the caller's,
 * and the caller's comes back after. GOMLX_PREFILL_MEMORY_BOUND=0 turns
 * that off (A/B runs).
 *
 * On Metal, as mlx-lm does, a generation wires the device's recommended
 * working set (weights and cache stay resident, not paged out) and puts
 * the wired limit back after the last generation in flight ends; other
 * backends have no wired memory. */
#ifndef GM_MEMORY_LIMITS_H
#define GM_MEMORY_LIMITS_H

#include <stddef.h>

#include "models/model.h"

/* Before a prefill of `tokens` prompt tokens in chunks of `chunk`: 1 when
 * it set a bound (CPU device, not turned off), which gm_prefill_memory_end
 * then closes; the caller's limit returns once none is open. */
int gm_prefill_memory_begin(const gm_model *m, size_t tokens, int chunk);
void gm_prefill_memory_end(int opened);
/* Prefills between begin and end now (0 when none runs: tests). */
int gm_prefill_memory_open(void);

/* The caller's memory limit (bytes > 0): in force at once, and the one a
 * prefill open now returns to. *previous (may be NULL) gets the caller's
 * limit before. 0 or an error from MLX: a gomlx_status. */
int gm_memory_limit_set(size_t bytes, size_t *previous);

/* Around a generation, each begin with its end: the first one open wires
 * the recommended working set where the device has one (Metal), the last
 * one to end puts the wired limit back. */
void gm_wired_begin(void);
void gm_wired_end(void);

#endif
