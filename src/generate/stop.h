/* stop.h - stop strings matched across token boundaries. Text is pushed
 * as it is decoded; what cannot be the start of a stop string is released
 * for streaming, the rest is held back until it is decided. */
#ifndef GM_STOP_H
#define GM_STOP_H

#include <stddef.h>

#include "util/buf.h"

typedef struct gm_stop {
    const char *const *strings;
    int n;
    size_t longest;
    gm_buf pending;  /* decoded, not yet released */
    gm_buf released; /* what the last push released */
} gm_stop;

void gm_stop_init(gm_stop *s, const char *const *strings, int n);
/* Appends text. Sets *out and *out_len to the text now safe to release (points
 * into an internal buffer valid until the next call). Returns 1 when a stop
 * string was found (out then holds the text before it), else 0; -1 on OOM. */
int gm_stop_push(gm_stop *s, const char *text, size_t len, char **out, size_t *out_len);
/* Releases what is held back at the end of generation. */
void gm_stop_flush(gm_stop *s, char **out, size_t *out_len);
void gm_stop_free(gm_stop *s);

#endif
