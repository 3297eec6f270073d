/* ids.h - a growable array of token ids, the tokenizer's working output. */
#ifndef GM_IDS_H
#define GM_IDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct gm_ids {
    int32_t *v;
    size_t n, cap;
} gm_ids;

static inline int gm_ids_push(gm_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

#endif
