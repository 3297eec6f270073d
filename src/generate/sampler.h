/* sampler.h - picking the next token on the device: greedy at temperature
 * 0, else temperature, then top-k, top-p and min-p filters over the
 * tempered distribution, then a categorical draw with a seeded key chain. */
#ifndef GM_SAMPLER_H
#define GM_SAMPLER_H

#include <stdint.h>

#include "mlx/mx.h"

typedef struct gm_sampler {
    float temperature;
    float top_p;
    int top_k;
    float min_p;
    mx_array key; /* owned; split at every draw */
} gm_sampler;

int gm_sampler_init(gm_sampler *s, float temperature, float top_p, int top_k, float min_p,
                    uint64_t seed);
/* logits [1, vocab] (any float dtype) → token id [1] (uint32), lazily. */
mx_array gm_sampler_sample(gm_sampler *s, mx_array logits);
/* The filtered log-probabilities the draw uses (for tests): [1, vocab]
 * float32, -inf where filtered out. */
mx_array gm_sampler_filtered(const gm_sampler *s, mx_array logits);
void gm_sampler_free(gm_sampler *s);

#endif
