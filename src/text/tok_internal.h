/* tok_internal.h - the tokenizer's parts, shared by the files of src/text/
 * (loading from JSON or GGUF, encoding, decoding). Not a public header. */
#ifndef GM_TOK_INTERNAL_H
#define GM_TOK_INTERNAL_H

#include "text/added.h"
#include "text/bpe.h"
#include "text/decoder.h"
#include "text/normalize.h"
#include "text/pretokenize.h"
#include "text/tokenizer.h"

struct gm_tokenizer {
    gm_bpe bpe;              /* the model */
    gm_added_vocab added;
    gm_normalizer norm;
    gm_pretok pre;
    gm_decoder dec;
    gm_ids prefix, suffix;   /* what the post-processor adds around a sequence */
    /* id -> token string (added tokens first, then the model's), size n_ids */
    const char **str;
    uint32_t *len;
    uint8_t *special;
    int32_t n_ids;
    int32_t bos_id, eos_id;
    char *bos_token, *eos_token, *chat_template;
    gm_ids stop;
};

/* After the parts are loaded: builds the id tables, the added-token tries,
 * bos/eos and the stop ids. bos/eos may be NULL (then taken from ids). */
int gm_tokenizer_finish(gm_tokenizer *t, const char *bos, const char *eos);
/* An empty tokenizer (every id -1), or NULL. */
gm_tokenizer *gm_tokenizer_alloc(void);

#endif
