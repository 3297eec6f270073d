/* added.h - the added vocabulary (special and user tokens matched in the
 * text before the model sees it), as HF's AddedVocabulary: leftmost-longest
 * matching, with single_word, lstrip and rstrip. Tokens with normalized=0
 * match the raw text; those with normalized=1 match the normalized text. */
#ifndef GM_ADDED_H
#define GM_ADDED_H

#include <stddef.h>
#include <stdint.h>

#include "text/regex.h"
#include "text/vocab.h"

typedef struct gm_added_token {
    char *content;
    size_t len;
    int32_t id;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} gm_added_token;

/* A byte trie; node 0 is the root. */
typedef struct gm_trie {
    struct gm_trie_node {
        int32_t child, sibling, token; /* token: index into the token list or -1 */
        unsigned char byte;
    } *nodes;
    size_t n, cap;
    int32_t root[256];
} gm_trie;

typedef struct gm_added_vocab {
    gm_added_token *tok;
    size_t n, cap;
    gm_vocab index;      /* content -> position in tok */
    gm_trie raw, norm;
    pcre2_code *word_re; /* for single_word, compiled when needed */
} gm_added_vocab;

/* A piece of text: an added token (tok >= 0, index into the list) or plain. */
typedef struct gm_split {
    size_t start, end;
    int32_t tok;
} gm_split;

/* Adds a token (a second token with the same content replaces the first). */
int gm_added_add(gm_added_vocab *av, const char *content, int32_t id, int special, int lstrip,
                 int rstrip, int single_word, int normalized);
/* Builds the tries; the normalized tokens are matched as `normalized` gives
 * their content (NULL: as they are). 0 or a gomlx_status. */
typedef int (*gm_normalize_fn)(void *ctx, const char *s, size_t n, char **out, size_t *out_n);
int gm_added_build(gm_added_vocab *av, gm_normalize_fn normalized, void *ctx);
void gm_added_free(gm_added_vocab *av);
/* The token with exactly this content, or NULL. */
const gm_added_token *gm_added_find(const gm_added_vocab *av, const char *s, size_t n);
/* Splits s into added tokens and the text between (covering all of s). */
int gm_added_split(const gm_added_vocab *av, int use_norm, gm_matcher *m, const char *s, size_t n,
                   gm_split **out, size_t *n_out);

#endif
