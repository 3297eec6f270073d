/* nfc.h - Unicode canonical normalization (NFC, NFD) of UTF-8 text, for
 * the NFC/NFD normalizers of tokenizer.json. */
#ifndef GM_NFC_H
#define GM_NFC_H

#include <stddef.h>

#include "util/buf.h"

/* Append the NFC / NFD form of valid UTF-8 s[0..n) to out. 0 or -1. */
int gm_nfc(gm_buf *out, const char *s, size_t n);
int gm_nfd(gm_buf *out, const char *s, size_t n);

#endif
