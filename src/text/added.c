/* added.c - matching added tokens in text the way HF's AddedVocabulary does
 * (aho-corasick, leftmost-longest; here a byte trie walked from each start). */
#include "text/added.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"
#include "util/error.h"

int gm_added_add(gm_added_vocab *av, const char *content, int32_t id, int special, int lstrip,
                 int rstrip, int single_word, int normalized) {
    size_t len = strlen(content);
    if (len == 0) return 0; /* HF ignores empty tokens */
    if (!av->index.slots && gm_vocab_init(&av->index, 64)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    int32_t at = gm_vocab_get(&av->index, content, len);
    gm_added_token *t = at >= 0 ? &av->tok[at] : NULL;
    if (!t) {
        if (av->n == av->cap) {
            size_t cap = av->cap ? av->cap * 2 : 64;
            gm_added_token *v = realloc(av->tok, cap * sizeof *v);
            if (!v) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
            av->tok = v;
            av->cap = cap;
        }
        t = &av->tok[av->n];
        t->content = malloc(len + 1);
        if (!t->content) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        memcpy(t->content, content, len + 1);
        t->len = len;
        if (gm_vocab_put(&av->index, content, len, (int32_t)av->n)) {
            free(t->content);
            return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        }
        av->n++;
    }
    t->id = id;
    t->special = (uint8_t)!!special;
    t->lstrip = (uint8_t)!!lstrip;
    t->rstrip = (uint8_t)!!rstrip;
    t->single_word = (uint8_t)!!single_word;
    t->normalized = (uint8_t)!!normalized;
    return 0;
}

static int32_t trie_node(gm_trie *tr) {
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 256;
        struct gm_trie_node *v = realloc(tr->nodes, cap * sizeof *v);
        if (!v) return -1;
        tr->nodes = v;
        tr->cap = cap;
    }
    tr->nodes[tr->n] = (struct gm_trie_node){-1, -1, -1, 0};
    return (int32_t)tr->n++;
}

static int trie_insert(gm_trie *tr, const char *s, size_t n, int32_t token) {
    if (n == 0) return 0;
    unsigned char c0 = (unsigned char)s[0];
    if (tr->root[c0] < 0) {
        int32_t k = trie_node(tr);
        if (k < 0) return -1;
        tr->nodes[k].byte = c0;
        tr->root[c0] = k;
    }
    int32_t cur = tr->root[c0];
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t ch = tr->nodes[cur].child;
        while (ch >= 0 && tr->nodes[ch].byte != c) ch = tr->nodes[ch].sibling;
        if (ch < 0) {
            ch = trie_node(tr);
            if (ch < 0) return -1;
            tr->nodes[ch].byte = c;
            tr->nodes[ch].sibling = tr->nodes[cur].child;
            tr->nodes[cur].child = ch;
        }
        cur = ch;
    }
    if (tr->nodes[cur].token < 0) tr->nodes[cur].token = token;
    return 0;
}

static void trie_reset(gm_trie *tr) {
    free(tr->nodes);
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++) tr->root[i] = -1;
}

int gm_added_build(gm_added_vocab *av, gm_normalize_fn normalized, void *ctx) {
    trie_reset(&av->raw);
    trie_reset(&av->norm);
    int need_word = 0;
    /* HF builds its automaton from the special tokens first, then the others. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < av->n; i++) {
            gm_added_token *t = &av->tok[i];
            if (t->special != (pass == 0)) continue;
            need_word |= t->single_word;
            int rc;
            if (!t->normalized) {
                rc = trie_insert(&av->raw, t->content, t->len, (int32_t)i);
            } else if (normalized) {
                char *s;
                size_t n;
                if ((rc = normalized(ctx, t->content, t->len, &s, &n))) return rc;
                rc = trie_insert(&av->norm, s, n, (int32_t)i);
                free(s);
            } else {
                rc = trie_insert(&av->norm, t->content, t->len, (int32_t)i);
            }
            if (rc) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        }
    if (need_word && !av->word_re) {
        /* Rust regex's \w: alphabetic, marks, decimal digits, connectors, joiners. */
        static const char w[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";
        int err;
        PCRE2_SIZE off;
        av->word_re = pcre2_compile((PCRE2_SPTR)w, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
        if (!av->word_re) return gm_fail(GOMLX_ERR_INTERNAL, "cannot compile the word-character class");
    }
    return 0;
}

void gm_added_free(gm_added_vocab *av) {
    for (size_t i = 0; i < av->n; i++) free(av->tok[i].content);
    free(av->tok);
    gm_vocab_free(&av->index);
    free(av->raw.nodes);
    free(av->norm.nodes);
    if (av->word_re) pcre2_code_free(av->word_re);
    memset(av, 0, sizeof *av);
}

/* The longest token starting at s[i], or -1; *end gets its end. */
static int32_t longest_at(const gm_trie *tr, const char *s, size_t n, size_t i, size_t *end) {
    int32_t cur = tr->root[(unsigned char)s[i]], best = -1;
    size_t j = i + 1;
    while (cur >= 0) {
        if (tr->nodes[cur].token >= 0) {
            best = tr->nodes[cur].token;
            *end = j;
        }
        if (j >= n) break;
        unsigned char c = (unsigned char)s[j++];
        int32_t ch = tr->nodes[cur].child;
        while (ch >= 0 && tr->nodes[ch].byte != c) ch = tr->nodes[ch].sibling;
        cur = ch;
    }
    return best;
}

static int is_word_char(const gm_added_vocab *av, gm_matcher *m, const char *s, size_t n) {
    size_t ms, me;
    return gm_regex_find(av->word_re, m, s, n, 0, &ms, &me) == 1 && ms == 0;
}

static int push(gm_split **v, size_t *n, size_t *cap, size_t start, size_t end, int32_t tok) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        gm_split *p = realloc(*v, c * sizeof *p);
        if (!p) return -1;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = (gm_split){start, end, tok};
    return 0;
}

int gm_added_split(const gm_added_vocab *av, int use_norm, gm_matcher *m, const char *s, size_t n,
                   gm_split **out, size_t *n_out) {
    const gm_trie *tr = use_norm ? &av->norm : &av->raw;
    gm_split *v = NULL;
    size_t nv = 0, cap = 0, prev = 0;
    for (size_t i = 0; tr->nodes && i < n;) {
        size_t end = 0;
        int32_t k = tr->root[(unsigned char)s[i]] >= 0 ? longest_at(tr, s, n, i, &end) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const gm_added_token *t = &av->tok[k];
        size_t start = i;
        i = end; /* a discarded match is still consumed, as aho-corasick's iterator does */
        if (t->single_word) {
            int before = start > 0 && is_word_char(av, m, s + gm_utf8_prev(s, start), start - gm_utf8_prev(s, start));
            int after = end < n && is_word_char(av, m, s + end, n - end);
            if (before || after) continue;
        }
        if (t->lstrip) {
            size_t p = start;
            while (p > 0) {
                size_t q = gm_utf8_prev(s, p);
                uint32_t cp;
                if (gm_utf8_next(s + q, p - q, &cp) <= 0 || !gm_is_white_space(cp)) break;
                p = q;
            }
            start = p > prev ? p : prev;
        }
        if (t->rstrip) {
            uint32_t cp;
            int len;
            while (end < n && (len = gm_utf8_next(s + end, n - end, &cp)) > 0 && gm_is_white_space(cp))
                end += (size_t)len;
        }
        if (start > prev && push(&v, &nv, &cap, prev, start, -1)) goto oom;
        if (push(&v, &nv, &cap, start, end, k)) goto oom;
        prev = end;
    }
    if (prev < n && push(&v, &nv, &cap, prev, n, -1)) goto oom;
    *out = v;
    *n_out = nv;
    return 0;
oom:
    free(v);
    return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
}

const gm_added_token *gm_added_find(const gm_added_vocab *av, const char *s, size_t n) {
    int32_t at = gm_vocab_get(&av->index, s, n);
    return at >= 0 ? &av->tok[at] : NULL;
}
