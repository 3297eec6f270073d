/* utf8.c - UTF-8 decoding/encoding and lossy repair for the tokenizer. */
#include "text/utf8.h"

#include <string.h>

/* Checks the sequence at s against the well-formedness table of Unicode
 * (Table 3-7). Returns the length the lead byte asks for (0 for a bad lead)
 * and sets *got to the bytes that fit it. */
static int seq_check(const unsigned char *s, size_t n, size_t *got) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    int need;
    if (c < 0x80) {
        *got = 1;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c == 0xE0) {
        need = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        need = 3;
    } else if (c == 0xED) {
        need = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        need = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 4;
    } else if (c == 0xF4) {
        need = 4;
        hi = 0x8F;
    } else {
        *got = 0;
        return 0;
    }
    size_t i = 1;
    while (i < (size_t)need && i < n) {
        if (s[i] < lo || s[i] > hi) break;
        lo = 0x80;
        hi = 0xBF;
        i++;
    }
    *got = i;
    return need;
}

int gm_utf8_next(const char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t got;
    int need = seq_check(u, n, &got);
    if (need == 0 || got != (size_t)need) return 0;
    uint32_t c;
    switch (need) {
    case 1: c = u[0]; break;
    case 2: c = (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F); break;
    case 3: c = (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F); break;
    default:
        c = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
            (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
    }
    if (cp) *cp = c;
    return need;
}

int gm_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int gm_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int k = gm_utf8_next(s + i, n - i, NULL);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

size_t gm_utf8_lossy(gm_buf *out, const char *s, size_t n, int partial) {
    static const char fffd[] = "\xEF\xBF\xBD";
    if (n == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the valid stretch not yet copied */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t got;
        int need = seq_check(u + i, n - i, &got);
        if (need && got == (size_t)need) {
            i += got;
            continue;
        }
        if (need && i + got == n && partial) {
            gm_buf_append(out, s + run, i - run);
            return i;
        }
        gm_buf_append(out, s + run, i - run);
        gm_buf_append(out, fffd, 3);
        i += got ? got : 1;
        run = i;
    }
    gm_buf_append(out, s + run, n - run);
    return n;
}

int gm_is_white_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t gm_utf8_prev(const char *s, size_t pos) {
    size_t p = pos - 1;
    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80 && pos - p < 4) p--;
    return p;
}

const char *gm_find_bytes(const char *hay, size_t hay_n, const char *needle, size_t n) {
    if (n == 0 || n > hay_n) return NULL;
    const char *end = hay + (hay_n - n) + 1;
    for (const char *p = hay; p < end;) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, needle, n) == 0) return p;
        p++;
    }
    return NULL;
}
