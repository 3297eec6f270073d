/* regex.h - PCRE2 for the tokenizer's split patterns, with the pattern
 * rewritten where Oniguruma (what HF tokenizers uses) and PCRE2 read an
 * escape differently: \s is Unicode White_Space, \w is letters, marks,
 * decimal digits and connectors, \h is a hex digit. */
#ifndef GM_REGEX_H
#define GM_REGEX_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

/* Compiles an Oniguruma-style pattern (UTF, UCP, JIT where available).
 * Returns 0 or a gomlx_status with the message set. */
int gm_regex_compile(const char *pattern, size_t len, pcre2_code **out);

/* Per-thread match state; the compiled patterns are shared read-only. */
typedef struct gm_matcher {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} gm_matcher;

int gm_matcher_init(gm_matcher *m); /* 0 or -1 */
void gm_matcher_free(gm_matcher *m);
/* The first match in s[0..n) at or after `from`: 1 with [*ms, *me), 0 if none,
 * -1 on a matching error. s must be valid UTF-8. */
int gm_regex_find(const pcre2_code *re, gm_matcher *m, const char *s, size_t n, size_t from,
                  size_t *ms, size_t *me);

#endif
