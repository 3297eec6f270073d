/* pretokenize.h - pre-tokenizers of tokenizer.json (Split, ByteLevel,
 * Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, Sequence):
 * they cut a normalized segment into the words the model encodes. */
#ifndef GM_PRETOKENIZE_H
#define GM_PRETOKENIZE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "text/regex.h"
#include "util/buf.h"

/* How a split keeps what the pattern matched (HF SplitDelimiterBehavior). */
typedef enum {
    GM_SPLIT_REMOVED,
    GM_SPLIT_ISOLATED,
    GM_SPLIT_MERGED_WITH_PREVIOUS,
    GM_SPLIT_MERGED_WITH_NEXT,
    GM_SPLIT_CONTIGUOUS
} gm_split_behavior;

typedef enum { GM_PREPEND_NEVER, GM_PREPEND_FIRST, GM_PREPEND_ALWAYS } gm_prepend_scheme;

typedef struct gm_pt_step {
    enum { GM_PT_SPLIT, GM_PT_BYTE_LEVEL, GM_PT_METASPACE } kind;
    pcre2_code *re;        /* split pattern (or NULL with lit) */
    char *lit;             /* literal split pattern */
    size_t lit_len;
    gm_split_behavior behavior;
    int invert;
    int add_prefix_space;  /* ByteLevel */
    char repl[8];          /* Metaspace replacement (UTF-8) */
    size_t repl_len;
    gm_prepend_scheme prepend;
    int split;             /* Metaspace: split on the replacement */
} gm_pt_step;

typedef struct gm_pretok {
    gm_pt_step *steps;
    size_t n;
} gm_pretok;

/* A list of words: spans of `text`. `first` marks a word that starts at
 * offset 0 of the original input (Metaspace's "first" scheme needs it). */
typedef struct gm_piece {
    size_t off, len;
    int first;
} gm_piece;

typedef struct gm_pieces {
    gm_buf text;
    gm_piece *v;
    size_t n, cap;
} gm_pieces;

int gm_pieces_add(gm_pieces *p, const char *s, size_t n, int first); /* copies; 0 or -1 */
void gm_pieces_clear(gm_pieces *p);
void gm_pieces_free(gm_pieces *p);

/* j may be NULL or JSON null (no pre-tokenizer). 0 or a gomlx_status. */
int gm_pretok_from_json(const cJSON *j, gm_pretok *out);
/* Appends the steps of a GPT-2 style byte-level pre-tokenizer: an optional
 * Split with `pattern` (Isolated) and then the byte mapping (with the GPT-2
 * pattern when `pattern` is NULL). */
int gm_pretok_byte_level(gm_pretok *p, const char *pattern);
int gm_pretok_metaspace(gm_pretok *p, gm_prepend_scheme prepend, int split);
void gm_pretok_free(gm_pretok *p);
/* Cuts s[0..n) into words (out is cleared first). tmp is scratch. */
int gm_pretok_run(const gm_pretok *p, gm_matcher *m, const char *s, size_t n, int first,
                  gm_pieces *out, gm_pieces *tmp);

#endif
