/* buf.h - a growable byte buffer for building strings. */
#ifndef GM_BUF_H
#define GM_BUF_H

#include <stddef.h>

typedef struct gm_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
} gm_buf;

int gm_buf_append(gm_buf *b, const char *s, size_t n); /* 0 ok, -1 out of memory */
int gm_buf_puts(gm_buf *b, const char *s);
int gm_buf_printf(gm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *gm_buf_take(gm_buf *b); /* hands the string to the caller ("" if empty) */
void gm_buf_free(gm_buf *b);

#endif
