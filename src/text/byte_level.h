/* byte_level.h - GPT-2's reversible byte <-> printable-character map, which
 * byte-level BPE vocabularies are spelled in (space is "Ġ", newline "Ċ"). */
#ifndef GM_BYTE_LEVEL_H
#define GM_BYTE_LEVEL_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* The code point byte b is spelled as. */
uint32_t gm_byte_to_char(unsigned char b);
/* The byte a code point stands for, or -1 outside the alphabet. */
int gm_char_to_byte(uint32_t cp);
/* Appends the spelling of the bytes s[0..n). 0 or -1. */
int gm_byte_level_encode(gm_buf *out, const char *s, size_t n);
/* Appends the bytes a token spells; a token with any character outside the
 * alphabet passes through unchanged (as HF's ByteLevel decoder does). */
int gm_byte_level_decode(gm_buf *out, const char *s, size_t n);
/* Whether every character of s is in the alphabet. */
int gm_byte_level_spelled(const char *s, size_t n);

#endif
