/* vocab.h - the tokenizer's hash maps: token string <-> id (strings pooled,
 * NUL-terminated) and token-id pair -> merge (rank, result). */
#ifndef GM_VOCAB_H
#define GM_VOCAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct gm_vocab {
    char *pool;           /* every string, NUL-terminated */
    size_t pool_len, pool_cap;
    uint32_t *off;        /* per id: offset into pool; UINT32_MAX = no token */
    uint32_t *len;
    uint32_t *hash;       /* per id: low bits of the string's hash, to skip most compares */
    int32_t n_ids;        /* ids are 0..n_ids-1 */
    int32_t cap_ids;
    int32_t *slots;       /* open addressing: id or -1 */
    size_t mask;
    size_t count;
} gm_vocab;

/* The largest id a vocabulary takes: 2^24 - 1, far past any real one
 * (~260K), so that a corrupt file's id cannot ask for gigabytes of tables. */
#define GM_VOCAB_MAX_ID 16777215

/* Sizes the tables for about n strings. 0 or -1 (out of memory). */
int gm_vocab_init(gm_vocab *v, size_t n);
void gm_vocab_free(gm_vocab *v);
/* Sets the string of id (a later string for the same text wins the lookup,
 * as a dict built in order would). 0, or -1 (out of memory, or id past
 * 0 .. GM_VOCAB_MAX_ID). */
int gm_vocab_put(gm_vocab *v, const char *s, size_t n, int32_t id);
int32_t gm_vocab_get(const gm_vocab *v, const char *s, size_t n); /* -1 if absent */
/* The string of id, or NULL. */
const char *gm_vocab_str(const gm_vocab *v, int32_t id, size_t *n);

typedef struct gm_pairmap {
    uint64_t *keys;       /* (a << 32 | b); UINT64_MAX = empty */
    uint32_t *rank;
    int32_t *result;
    size_t mask, count;
} gm_pairmap;

int gm_pairmap_init(gm_pairmap *m, size_t n);
void gm_pairmap_free(gm_pairmap *m);
/* Inserts or replaces (a later merge of the same pair wins, as in HF). */
int gm_pairmap_put(gm_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t result);
/* 1 and the merge when the pair merges, else 0. */
static inline uint64_t gm_pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}
static inline int gm_pairmap_get(const gm_pairmap *m, int32_t a, int32_t b, uint32_t *rank,
                                 int32_t *result) {
    if (!m->keys) return 0;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = gm_pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *result = m->result[i];
            return 1;
        }
        if (m->keys[i] == UINT64_MAX) return 0;
    }
}

#endif
