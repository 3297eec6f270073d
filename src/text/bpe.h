/* bpe.h - the BPE model as HF tokenizers runs it: a vocabulary, ranked
 * merges applied lowest rank first (leftmost on ties), optional byte
 * fallback (<0xNN>), unknown-token fusing and ignore_merges. Used for both
 * byte-level (GPT-2 style) and SentencePiece-style vocabularies. */
#ifndef GM_BPE_H
#define GM_BPE_H

#include "text/ids.h"
#include "text/vocab.h"

typedef struct gm_bpe {
    gm_vocab vocab;
    gm_pairmap merges;
    int32_t unk_id;        /* -1: none */
    int byte_fallback, fuse_unk, ignore_merges;
    char *prefix;          /* continuing_subword_prefix, or NULL */
    char *suffix;          /* end_of_word_suffix, or NULL */
    int32_t byte_tok[256]; /* id of <0xNN>, or -1 */
} gm_bpe;

void gm_bpe_init(gm_bpe *b);
void gm_bpe_free(gm_bpe *b);
/* Adds the merge "a b" with the given rank; the result token must be in the
 * vocabulary. Returns 0 or a gomlx_status (message set). */
int gm_bpe_add_merge(gm_bpe *b, const char *a, size_t na, const char *c, size_t nc, uint32_t rank);
/* Call once the vocabulary is complete. */
void gm_bpe_finish(gm_bpe *b);
/* Appends the ids of one pre-tokenized word (valid UTF-8). 0 or -1 (memory). */
int gm_bpe_encode(const gm_bpe *b, const char *w, size_t n, gm_ids *out);

#endif
