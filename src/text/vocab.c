/* vocab.c - string<->id and pair->merge hash maps (open addressing). */
#include "text/vocab.h"

#include <stdlib.h>
#include <string.h>

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int gm_vocab_init(gm_vocab *v, size_t n) {
    memset(v, 0, sizeof *v);
    size_t cap = pow2_at_least(n * 2 + 16);
    v->slots = malloc(cap * sizeof *v->slots);
    if (!v->slots) return -1;
    memset(v->slots, 0xff, cap * sizeof *v->slots);
    v->mask = cap - 1;
    return 0;
}

void gm_vocab_free(gm_vocab *v) {
    free(v->pool);
    free(v->off);
    free(v->len);
    free(v->hash);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static int grow_slots(gm_vocab *v) {
    size_t cap = (v->mask + 1) * 2;
    int32_t *s = malloc(cap * sizeof *s);
    if (!s) return -1;
    memset(s, 0xff, cap * sizeof *s);
    for (size_t i = 0; i <= v->mask; i++) {
        int32_t id = v->slots[i];
        if (id < 0) continue;
        size_t j = v->hash[id] & (cap - 1);
        while (s[j] >= 0) j = (j + 1) & (cap - 1);
        s[j] = id;
    }
    free(v->slots);
    v->slots = s;
    v->mask = cap - 1;
    return 0;
}

static int ensure_id(gm_vocab *v, int32_t id) {
    if (id < v->cap_ids) {
        if (id >= v->n_ids) v->n_ids = id + 1;
        return 0;
    }
    int64_t cap = v->cap_ids ? v->cap_ids : 1024;
    while (cap <= id) cap *= 2;
    uint32_t *off = realloc(v->off, (size_t)cap * sizeof *off);
    if (!off) return -1;
    v->off = off;
    uint32_t *len = realloc(v->len, (size_t)cap * sizeof *len);
    if (!len) return -1;
    v->len = len;
    uint32_t *hash = realloc(v->hash, (size_t)cap * sizeof *hash);
    if (!hash) return -1;
    v->hash = hash;
    for (int32_t i = v->cap_ids; i < cap; i++) v->off[i] = UINT32_MAX, v->len[i] = 0, v->hash[i] = 0;
    v->cap_ids = (int32_t)cap;
    v->n_ids = id + 1;
    return 0;
}

int gm_vocab_put(gm_vocab *v, const char *s, size_t n, int32_t id) {
    if (id < 0 || id > GM_VOCAB_MAX_ID || n >= UINT32_MAX) return -1;
    if (ensure_id(v, id)) return -1;
    if (v->pool_len + n + 1 > v->pool_cap) {
        size_t cap = v->pool_cap ? v->pool_cap : 4096;
        while (cap < v->pool_len + n + 1) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *p = realloc(v->pool, cap);
        if (!p) return -1;
        v->pool = p;
        v->pool_cap = cap;
    }
    int had = v->off[id] != UINT32_MAX;
    uint64_t h = str_hash(s, n);
    memcpy(v->pool + v->pool_len, s, n);
    v->pool[v->pool_len + n] = 0;
    v->off[id] = (uint32_t)v->pool_len;
    v->len[id] = (uint32_t)n;
    v->hash[id] = (uint32_t)h;
    v->pool_len += n + 1;
    if (had) {
        /* The id changed its string: rebuild its slot chain the simple way. */
        for (size_t i = 0; i <= v->mask; i++)
            if (v->slots[i] == id) v->slots[i] = -1;
        v->count--;
        size_t cap = v->mask + 1;
        int32_t *old = v->slots;
        v->slots = NULL;
        int32_t *fresh = malloc(cap * sizeof *fresh);
        if (!fresh) {
            v->slots = old;
            return -1;
        }
        memset(fresh, 0xff, cap * sizeof *fresh);
        for (size_t i = 0; i < cap; i++) {
            int32_t k = old[i];
            if (k < 0) continue;
            size_t j = v->hash[k] & v->mask;
            while (fresh[j] >= 0) j = (j + 1) & v->mask;
            fresh[j] = k;
        }
        free(old);
        v->slots = fresh;
    }
    if ((v->count + 1) * 2 > v->mask + 1 && grow_slots(v)) return -1;
    size_t j = h & v->mask;
    for (;; j = (j + 1) & v->mask) {
        int32_t k = v->slots[j];
        if (k < 0) break;
        if (v->hash[k] == (uint32_t)h && v->len[k] == n && memcmp(v->pool + v->off[k], s, n) == 0) {
            v->slots[j] = id; /* the later id wins the lookup */
            return 0;
        }
    }
    v->slots[j] = id;
    v->count++;
    return 0;
}

int32_t gm_vocab_get(const gm_vocab *v, const char *s, size_t n) {
    if (!v->slots) return -1;
    uint64_t h = str_hash(s, n);
    for (size_t j = h & v->mask;; j = (j + 1) & v->mask) {
        int32_t k = v->slots[j];
        if (k < 0) return -1;
        if (v->hash[k] == (uint32_t)h && v->len[k] == n && memcmp(v->pool + v->off[k], s, n) == 0)
            return k;
    }
}

const char *gm_vocab_str(const gm_vocab *v, int32_t id, size_t *n) {
    if (id < 0 || id >= v->n_ids || v->off[id] == UINT32_MAX) return NULL;
    if (n) *n = v->len[id];
    return v->pool + v->off[id];
}

int gm_pairmap_init(gm_pairmap *m, size_t n) {
    memset(m, 0, sizeof *m);
    size_t cap = pow2_at_least(n + n / 2 + 16);
    m->keys = malloc(cap * sizeof *m->keys);
    m->rank = malloc(cap * sizeof *m->rank);
    m->result = malloc(cap * sizeof *m->result);
    if (!m->keys || !m->rank || !m->result) {
        gm_pairmap_free(m);
        return -1;
    }
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->mask = cap - 1;
    return 0;
}

void gm_pairmap_free(gm_pairmap *m) {
    free(m->keys);
    free(m->rank);
    free(m->result);
    memset(m, 0, sizeof *m);
}

static int pairmap_grow(gm_pairmap *m) {
    gm_pairmap n;
    if (gm_pairmap_init(&n, (m->mask + 1) * 2)) return -1;
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t j = gm_pair_hash(m->keys[i]) & n.mask;
        while (n.keys[j] != UINT64_MAX) j = (j + 1) & n.mask;
        n.keys[j] = m->keys[i];
        n.rank[j] = m->rank[i];
        n.result[j] = m->result[i];
    }
    n.count = m->count;
    gm_pairmap_free(m);
    *m = n;
    return 0;
}

int gm_pairmap_put(gm_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t result) {
    if (!m->keys && gm_pairmap_init(m, 16)) return -1;
    if ((m->count + 1) * 3 > (m->mask + 1) * 2 && pairmap_grow(m)) return -1;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = gm_pair_hash(key) & m->mask;
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key) j = (j + 1) & m->mask;
    if (m->keys[j] == UINT64_MAX) m->count++;
    m->keys[j] = key;
    m->rank[j] = rank;
    m->result[j] = result;
    return 0;
}
