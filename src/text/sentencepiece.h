/* sentencepiece.h - what SentencePiece-style vocabularies from GGUF need:
 * merges recovered from the token scores (the way transformers converts a
 * GGUF "llama" vocabulary), so the BPE model can run them. */
#ifndef GM_SENTENCEPIECE_H
#define GM_SENTENCEPIECE_H

#include <stddef.h>

#include "text/bpe.h"

/* Adds to b (whose vocabulary is complete) every merge l+r -> token with both
 * halves in the vocabulary, ranked by the token's score (higher first), then
 * longer left part, longer right part, token order, (id l, id r) - the order
 * of transformers' generate_merges. scores[i] belongs to tokens[i]. */
int gm_sp_merges_from_scores(gm_bpe *b, const char *const *tokens, size_t n_tokens,
                             const float *scores);

#endif
