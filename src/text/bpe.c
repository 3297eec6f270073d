/* bpe.c - BPE merging: symbols in a linked list, candidate merges in a
 * binary heap ordered by (rank, position), stale entries skipped on pop.
 * This is the order HF tokenizers' Word::merge_all uses, so ties between
 * equal ranks resolve the same way. */
#include "text/bpe.h"

#include <stdio.h>
#include <string.h>

#include "text/utf8.h"
#include "util/error.h"

void gm_bpe_init(gm_bpe *b) {
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    for (int i = 0; i < 256; i++) b->byte_tok[i] = -1;
}

void gm_bpe_free(gm_bpe *b) {
    gm_vocab_free(&b->vocab);
    gm_pairmap_free(&b->merges);
    free(b->prefix);
    free(b->suffix);
    gm_bpe_init(b);
}

int gm_bpe_add_merge(gm_bpe *b, const char *a, size_t na, const char *c, size_t nc, uint32_t rank) {
    int32_t ia = gm_vocab_get(&b->vocab, a, na), ic = gm_vocab_get(&b->vocab, c, nc);
    if (ia < 0 || ic < 0)
        return gm_fail(GOMLX_ERR_FORMAT, "merge %u: token '%.*s' is not in the vocabulary", rank,
                       (int)(ia < 0 ? na : nc), ia < 0 ? a : c);
    /* With a continuing-subword prefix the right part carries it; the
     * merged token keeps only the left part's. */
    size_t skip = 0, pl = b->prefix ? strlen(b->prefix) : 0;
    if (pl && nc >= pl && memcmp(c, b->prefix, pl) == 0) skip = pl;
    char small[256], *joined = na + nc - skip <= sizeof small ? small : malloc(na + nc - skip);
    if (!joined) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    memcpy(joined, a, na);
    memcpy(joined + na, c + skip, nc - skip);
    int32_t id = gm_vocab_get(&b->vocab, joined, na + nc - skip);
    if (id < 0) {
        int rc = gm_fail(GOMLX_ERR_FORMAT, "merge %u: '%.*s' is not in the vocabulary", rank,
                         (int)(na + nc - skip), joined);
        if (joined != small) free(joined);
        return rc;
    }
    if (joined != small) free(joined);
    if (gm_pairmap_put(&b->merges, ia, ic, rank, id)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    return 0;
}

void gm_bpe_finish(gm_bpe *b) {
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_tok[i] = gm_vocab_get(&b->vocab, name, 6);
    }
}

typedef struct {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* 0: merged away */
} sym;

typedef struct {
    uint32_t rank;
    int32_t pos;
    int32_t result;
} cand;

static int cand_less(const cand *x, const cand *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) m = l, best = &h[l];
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

/* Looks up a piece, adding the subword prefix/suffix the model asks for. */
static int32_t lookup_piece(const gm_bpe *b, const char *s, size_t n, int first, int last) {
    if ((first || !b->prefix) && (!last || !b->suffix)) return gm_vocab_get(&b->vocab, s, n);
    char buf[512];
    size_t pl = !first && b->prefix ? strlen(b->prefix) : 0;
    size_t sl = last && b->suffix ? strlen(b->suffix) : 0;
    if (pl + n + sl > sizeof buf) return -1;
    memcpy(buf, b->prefix, pl);
    memcpy(buf + pl, s, n);
    if (sl) memcpy(buf + pl + n, b->suffix, sl);
    return gm_vocab_get(&b->vocab, buf, pl + n + sl);
}

int gm_bpe_encode(const gm_bpe *b, const char *w, size_t n, gm_ids *out) {
    if (n == 0) return 0;
    if (b->ignore_merges) {
        int32_t id = gm_vocab_get(&b->vocab, w, n);
        if (id >= 0) return gm_ids_push(out, id);
    }
    sym local_s[64];
    cand local_c[128];
    sym *s = n <= 64 ? local_s : malloc(n * sizeof *s);
    cand *heap = n <= 64 ? local_c : malloc(2 * n * sizeof *heap);
    if (!s || !heap) {
        if (s != local_s) free(s);
        if (heap != local_c) free(heap);
        return -1;
    }
    size_t ns = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        int k = gm_utf8_next(w + i, n - i, NULL);
        if (k <= 0) k = 1;
        int first = i == 0, last = i + (size_t)k >= n;
        int32_t id = lookup_piece(b, w + i, (size_t)k, first, last);
        if (id >= 0) {
            if (unk >= 0) {
                s[ns++] = (sym){unk, 0, 0, unk_len};
                unk = -1;
            }
            s[ns++] = (sym){id, 0, 0, (uint32_t)k};
        } else {
            int done = 0;
            if (b->byte_fallback) {
                done = 1;
                for (int j = 0; j < k; j++)
                    if (b->byte_tok[(unsigned char)w[i + j]] < 0) done = 0;
                if (done) /* a pending unknown stays pending, as in HF */
                    for (int j = 0; j < k; j++) s[ns++] = (sym){b->byte_tok[(unsigned char)w[i + j]], 0, 0, 1};
            }
            if (!done && b->unk_id >= 0) {
                if (unk >= 0 && b->fuse_unk) {
                    unk_len += (uint32_t)k;
                } else {
                    if (unk >= 0) s[ns++] = (sym){unk, 0, 0, unk_len};
                    unk = b->unk_id;
                    unk_len = (uint32_t)k;
                }
            }
        }
        i += (size_t)k;
    }
    if (unk >= 0) s[ns++] = (sym){unk, 0, 0, unk_len};
    for (size_t i = 0; i < ns; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t rank;
        int32_t res;
        if (gm_pairmap_get(&b->merges, s[i].id, s[i + 1].id, &rank, &res))
            heap_push(heap, &nh, (cand){rank, (int32_t)i, res});
    }
    while (nh) {
        cand top = heap_pop(heap, &nh);
        sym *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &s[cur->next];
        uint32_t rank;
        int32_t res;
        if (!gm_pairmap_get(&b->merges, cur->id, right->id, &rank, &res) || res != top.result) continue;
        cur->id = top.result;
        cur->len += right->len;
        right->len = 0;
        cur->next = right->next;
        if (cur->next >= 0) s[cur->next].prev = top.pos;
        /* Each merge pops one entry and pushes at most two, and there are
         * fewer than n merges: 2n slots always suffice. */
        if (cur->prev >= 0 &&
            gm_pairmap_get(&b->merges, s[cur->prev].id, cur->id, &rank, &res))
            heap_push(heap, &nh, (cand){rank, cur->prev, res});
        if (cur->next >= 0 && gm_pairmap_get(&b->merges, cur->id, s[cur->next].id, &rank, &res))
            heap_push(heap, &nh, (cand){rank, top.pos, res});
    }
    int rc = 0;
    for (size_t i = 0; i < ns && !rc; i++)
        if (s[i].len) rc = gm_ids_push(out, s[i].id);
    if (s != local_s) free(s);
    if (heap != local_c) free(heap);
    return rc;
}
