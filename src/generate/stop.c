/* stop.c - incremental stop-string matching: only the tail that could
 * still grow into a stop string is held back, so each token costs work
 * proportional to the longest stop string, not to the whole answer. */
#include "generate/stop.h"

#include <string.h>

void gm_stop_init(gm_stop *s, const char *const *strings, int n) {
    memset(s, 0, sizeof *s);
    s->strings = strings;
    for (int i = 0; i < n; i++) {
        if (!strings[i] || !*strings[i]) continue;
        size_t len = strlen(strings[i]);
        if (len > s->longest) s->longest = len;
    }
    s->n = n;
}

/* Length of the longest suffix of text that is a proper prefix of some stop string. */
static size_t held_suffix(const gm_stop *s, const char *text, size_t len) {
    size_t best = 0;
    for (int i = 0; i < s->n; i++) {
        const char *stop = s->strings[i];
        if (!stop || !*stop) continue;
        size_t sl = strlen(stop);
        size_t max = sl - 1 < len ? sl - 1 : len;
        for (size_t k = max; k > best; k--)
            if (!memcmp(text + len - k, stop, k)) {
                best = k;
                break;
            }
    }
    return best;
}

static char empty[1];

int gm_stop_push(gm_stop *s, const char *text, size_t len, char **out, size_t *out_len) {
    size_t old = s->pending.len;
    if (gm_buf_append(&s->pending, text, len)) return -1;
    char *data = s->pending.data;
    size_t total = s->pending.len;
    /* A match can only involve the new text plus up to longest-1 old bytes. */
    size_t from = old > s->longest ? old - s->longest : 0;
    size_t cut = total;
    for (int i = 0; i < s->n; i++) {
        const char *stop = s->strings[i];
        if (!stop || !*stop) continue;
        const char *hit = memmem(data + from, total - from, stop, strlen(stop));
        if (hit && (size_t)(hit - data) < cut) cut = (size_t)(hit - data);
    }
    if (cut < total) {
        s->pending.len = cut;
        data[cut] = 0;
        *out = data;
        *out_len = cut;
        s->pending.len = 0; /* caller reads before the next call */
        return 1;
    }
    size_t hold = held_suffix(s, data, total);
    size_t release = total - hold;
    s->released.len = 0;
    if (gm_buf_append(&s->released, data, release)) return -1;
    memmove(data, data + release, hold);
    s->pending.len = hold;
    data[hold] = 0;
    *out = s->released.data ? s->released.data : empty;
    *out_len = release;
    return 0;
}

void gm_stop_flush(gm_stop *s, char **out, size_t *out_len) {
    *out = s->pending.data ? s->pending.data : empty;
    *out_len = s->pending.len;
    s->pending.len = 0;
}

void gm_stop_free(gm_stop *s) {
    gm_buf_free(&s->pending);
    gm_buf_free(&s->released);
}
