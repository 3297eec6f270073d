/* utf8.h - UTF-8 helpers shared by the tokenizer: strict decoding, encoding,
 * and the lossy conversion (U+FFFD per maximal invalid subpart) that Rust's
 * String::from_utf8_lossy, and so HF tokenizers, apply. */
#ifndef GM_UTF8_H
#define GM_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Length of the well-formed character at s (1-4), or 0 when s does not start
 * one (also when it is cut short by n). *cp gets the code point. */
int gm_utf8_next(const char *s, size_t n, uint32_t *cp);
/* Writes cp as UTF-8 into out (4 bytes room); returns the length. */
int gm_utf8_put(uint32_t cp, char *out);
/* Whether s[0..n) is entirely well-formed UTF-8. */
int gm_utf8_valid(const char *s, size_t n);
/* Appends s[0..n) to out with every maximal invalid subpart replaced by
 * U+FFFD. When `partial` is non-zero, a trailing sequence that is valid so far
 * but incomplete is left out; the return value is the number of bytes
 * consumed (n minus the held tail). */
size_t gm_utf8_lossy(gm_buf *out, const char *s, size_t n, int partial);
/* Unicode White_Space (what Rust's char::is_whitespace and regex \s test). */
int gm_is_white_space(uint32_t cp);
/* First occurrence of needle (n > 0) in hay, or NULL (memmem is not in C11). */
const char *gm_find_bytes(const char *hay, size_t hay_n, const char *needle, size_t n);
/* Start of the character that ends just before s[pos] (pos > 0). */
size_t gm_utf8_prev(const char *s, size_t pos);

#endif
