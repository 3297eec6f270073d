/* sentencepiece.c - merges from scores for SentencePiece vocabularies.
 * transformers' generate_merges cuts every token at every character
 * boundary, keeps the cuts whose halves are tokens, and sorts them by
 * (score, length of left, length of right) descending with a stable sort;
 * merging by those ranks is SentencePiece's "best score first". */
#include "text/sentencepiece.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"
#include "util/error.h"

typedef struct {
    float score;
    uint32_t len_l, len_r; /* in characters, as Python counts them */
    int32_t l, r;
    size_t seq;            /* position before sorting: keeps the sort stable */
    size_t tok;            /* the token the pair builds */
    uint32_t cut;          /* byte offset of the cut */
} cand;

static int by_rank(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->len_l != b->len_l) return a->len_l > b->len_l ? -1 : 1;
    if (a->len_r != b->len_r) return a->len_r > b->len_r ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Within one token, transformers orders the cuts by (id of left, id of right). */
static int by_ids(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return (a->r > b->r) - (a->r < b->r);
}

static uint32_t count_chars(const char *s, size_t n) {
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

int gm_sp_merges_from_scores(gm_bpe *b, const char *const *tokens, size_t n_tokens,
                             const float *scores) {
    cand *v = NULL;
    size_t n = 0, cap = 0;
    /* dict(zip(tokens, scores)): a repeated string is visited once, at its
     * first place, with the score of its last. */
    gm_vocab seen;
    if (gm_vocab_init(&seen, n_tokens)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (size_t t = 0; t < n_tokens; t++) {
        const char *s = tokens[t];
        size_t len = strlen(s);
        if (gm_vocab_get(&seen, s, len) >= 0) continue;
        if (gm_vocab_put(&seen, s, len, (int32_t)t)) {
            gm_vocab_free(&seen);
            free(v);
            return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        }
        int32_t self = gm_vocab_get(&b->vocab, s, len);
        float score = self >= 0 ? scores[self] : scores[t];
        size_t start = n;
        for (size_t cut = 0; cut < len;) {
            int k = gm_utf8_next(s + cut, len - cut, NULL);
            cut += (size_t)(k > 0 ? k : 1);
            if (cut >= len) break;
            int32_t l = gm_vocab_get(&b->vocab, s, cut), r = gm_vocab_get(&b->vocab, s + cut, len - cut);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                cand *p = realloc(v, cap * sizeof *p);
                if (!p) {
                    gm_vocab_free(&seen);
                    free(v);
                    return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
                }
                v = p;
            }
            v[n++] = (cand){score, count_chars(s, cut), count_chars(s + cut, len - cut), l, r, 0, t,
                            (uint32_t)cut};
        }
        if (n > start) qsort(v + start, n - start, sizeof *v, by_ids);
    }
    gm_vocab_free(&seen);
    for (size_t i = 0; i < n; i++) v[i].seq = i;
    if (n) qsort(v, n, sizeof *v, by_rank);
    int rc = gm_pairmap_init(&b->merges, n) ? gm_fail(GOMLX_ERR_INTERNAL, "out of memory") : 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *s = tokens[v[i].tok];
        rc = gm_bpe_add_merge(b, s, v[i].cut, s + v[i].cut, strlen(s) - v[i].cut, (uint32_t)i);
    }
    free(v);
    return rc;
}
