/* generate.h - a session (KV cache + the tokens in it) and the generation
 * loop: chunked prefill, pipelined decode, sampling, stop conditions,
 * streaming and stats. Runs on the model's worker thread. */
#ifndef GM_GENERATE_H
#define GM_GENERATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "gomlx.h"
#include "models/model.h"

typedef struct gm_session {
    gm_model *model;
    gm_kv_cache cache;
    int32_t *tokens; /* the ids whose keys/values are in the cache */
    size_t n_tokens, cap_tokens;
    int context_length;
} gm_session;

int gm_session_init(gm_session *s, gm_model *m, int context_length);
void gm_session_clear(gm_session *s); /* forgets the cache, keeps the session usable */
void gm_session_destroy(gm_session *s);

/* Generates after `prompt` (the whole conversation so far as ids; the
 * prefix already in the cache is reused). cancel is polled between
 * prefill chunks and tokens. Fills out (caller frees with
 * gomlx_result_free). */
int gm_generate(gm_session *s, const int32_t *prompt, size_t n_prompt,
                const gomlx_generate_params *p, const atomic_int *cancel, gomlx_result *out);

/* Float32 logits [n, vocab] for ids from position 0, no cache kept. */
int gm_logits(gm_model *m, const int32_t *ids, size_t n, int chunk, float **out, int *vocab);

/* Union of the model's end-of-generation ids (config, generation_config,
 * tokenizer end-of-turn tokens). */
size_t gm_model_stop_ids(const gm_model *m, int32_t *out, size_t cap);

#endif
