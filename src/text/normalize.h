/* normalize.h - the normalizers of tokenizer.json that the supported
 * tokenizers use: NFC, NFD, Prepend, Replace (string or regex), Strip and
 * Sequence. Applied to each piece of text between added tokens. */
#ifndef GM_NORMALIZE_H
#define GM_NORMALIZE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "text/regex.h"
#include "util/buf.h"

typedef struct gm_norm_step {
    enum { GM_NORM_NFC, GM_NORM_NFD, GM_NORM_PREPEND, GM_NORM_REPLACE, GM_NORM_STRIP } kind;
    char *a;          /* Prepend text / Replace literal pattern */
    size_t na;
    char *b;          /* Replace content */
    size_t nb;
    pcre2_code *re;   /* Replace regex pattern */
    int left, right;  /* Strip */
} gm_norm_step;

typedef struct gm_normalizer {
    gm_norm_step *steps;
    size_t n;
} gm_normalizer;

/* j may be NULL or JSON null (no normalizer). 0 or a gomlx_status. */
int gm_normalizer_from_json(const cJSON *j, gm_normalizer *out);
/* Adds a Replace of a literal (used for GGUF vocabularies). */
int gm_normalizer_add_replace(gm_normalizer *n, const char *pattern, const char *content);
int gm_normalizer_add_prepend(gm_normalizer *n, const char *text);
void gm_normalizer_free(gm_normalizer *n);
/* out = normalized s (out is cleared first; tmp is scratch). */
int gm_normalize(const gm_normalizer *n, gm_matcher *m, const char *s, size_t len, gm_buf *out,
                 gm_buf *tmp);

#endif
