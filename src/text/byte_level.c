/* byte_level.c - the GPT-2 byte alphabet. Printable bytes keep their own
 * code point; the 68 others (0x00-0x20, 0x7F-0xA0, 0xAD) take 256+k in byte
 * order, so the map is computed instead of tabled. */
#include "text/byte_level.h"

#include "text/utf8.h"

static int printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t gm_byte_to_char(unsigned char b) {
    if (printable(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    return 256u + 33 + 34; /* 0xAD */
}

int gm_char_to_byte(uint32_t cp) {
    if (cp < 256) return printable(cp) ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 33 + 33) return (int)(0x7F + cp - 256 - 33);
    if (cp == 256 + 33 + 34) return 0xAD;
    return -1;
}

int gm_byte_level_encode(gm_buf *out, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char tmp[4];
        int k = gm_utf8_put(gm_byte_to_char((unsigned char)s[i]), tmp);
        if (gm_buf_append(out, tmp, (size_t)k)) return -1;
    }
    return 0;
}

int gm_byte_level_spelled(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = gm_utf8_next(s + i, n - i, &cp);
        if (k <= 0 || gm_char_to_byte(cp) < 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

int gm_byte_level_decode(gm_buf *out, const char *s, size_t n) {
    if (!gm_byte_level_spelled(s, n)) return gm_buf_append(out, s, n);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = gm_utf8_next(s + i, n - i, &cp);
        char b = (char)gm_char_to_byte(cp);
        if (gm_buf_append(out, &b, 1)) return -1;
        i += (size_t)k;
    }
    return 0;
}
