/* nfc.c - canonical decomposition, reordering and composition (UAX #15)
 * over the generated tables in unicode_data.c; Hangul is computed. */
#include "text/nfc.h"

#include <stdint.h>
#include <stdlib.h>

#include "text/unicode_data.h"
#include "text/utf8.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7,
       LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    unsigned lo = 0, hi = gm_n_ccc_ranges;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (cp < gm_ccc_ranges[mid].lo) hi = mid;
        else if (cp > gm_ccc_ranges[mid].hi) lo = mid + 1;
        else return gm_ccc_ranges[mid].ccc;
    }
    return 0;
}

static const gm_decomp_entry *decomp_of(uint32_t cp) {
    if (cp < 0xC0) return NULL;
    unsigned lo = 0, hi = gm_n_decomp;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (cp < gm_decomp_index[mid].cp) hi = mid;
        else if (cp > gm_decomp_index[mid].cp) lo = mid + 1;
        else return &gm_decomp_index[mid];
    }
    return NULL;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    unsigned lo = 0, hi = gm_n_comp;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const gm_comp_entry *e = &gm_comp_pairs[mid];
        if (a < e->first || (a == e->first && b < e->second)) hi = mid;
        else if (a > e->first || b > e->second) lo = mid + 1;
        else return e->composite;
    }
    return 0;
}

typedef struct {
    uint32_t *v;
    size_t n, cap;
} cps;

static int push(cps *a, uint32_t c) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        uint32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = c;
    return 0;
}

/* Decomposes and puts the combining marks of each run in canonical order. */
static int decompose(cps *a, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = gm_utf8_next(s + i, n - i, &cp);
        if (k <= 0) { /* not expected: callers pass valid UTF-8 */
            cp = 0xFFFD;
            k = 1;
        }
        i += (size_t)k;
        const gm_decomp_entry *d;
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t si = cp - SBASE;
            if (push(a, LBASE + si / NCOUNT) || push(a, VBASE + si % NCOUNT / TCOUNT)) return -1;
            if (si % TCOUNT && push(a, TBASE + si % TCOUNT)) return -1;
        } else if ((d = decomp_of(cp))) {
            for (unsigned j = 0; j < d->len; j++)
                if (push(a, gm_decomp_seq[d->off + j])) return -1;
        } else if (push(a, cp)) {
            return -1;
        }
    }
    /* Stable insertion sort by combining class inside each run of marks. */
    for (size_t i = 1; i < a->n; i++) {
        int c = ccc_of(a->v[i]);
        if (c == 0) continue;
        uint32_t x = a->v[i];
        size_t j = i;
        while (j > 0) {
            int pc = ccc_of(a->v[j - 1]);
            if (pc == 0 || pc <= c) break;
            a->v[j] = a->v[j - 1];
            j--;
        }
        a->v[j] = x;
    }
    return 0;
}

static void compose_all(cps *a) {
    if (a->n == 0) return;
    size_t out = 1;
    long starter = ccc_of(a->v[0]) == 0 ? 0 : -1;
    int last = starter == 0 ? 0 : 256;
    for (size_t i = 1; i < a->n; i++) {
        uint32_t c = a->v[i];
        int cc = ccc_of(c);
        if (starter >= 0 && (last < cc || (last == 0 && (size_t)starter == out - 1))) {
            uint32_t comp = compose(a->v[starter], c);
            if (comp) {
                a->v[starter] = comp;
                continue;
            }
        }
        if (cc == 0) starter = (long)out;
        last = cc;
        a->v[out++] = c;
    }
    a->n = out;
}

static int emit(gm_buf *out, const cps *a) {
    for (size_t i = 0; i < a->n; i++) {
        char tmp[4];
        int k = gm_utf8_put(a->v[i], tmp);
        if (gm_buf_append(out, tmp, (size_t)k)) return -1;
    }
    return 0;
}

/* Below U+0300 nothing composes (text is in NFC as it is); below U+00C0
 * nothing decomposes (in NFD). Lead bytes 0xCC and 0xC3 start those. */
static int trivially_normal(const char *s, size_t n, unsigned char limit) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= limit) return 0;
    return 1;
}

static int normalize(gm_buf *out, const char *s, size_t n, int composed) {
    if (trivially_normal(s, n, composed ? 0xCC : 0xC3)) return gm_buf_append(out, s, n);
    cps a = {0};
    int rc = decompose(&a, s, n);
    if (!rc) {
        if (composed) compose_all(&a);
        rc = emit(out, &a);
    }
    free(a.v);
    return rc;
}

int gm_nfc(gm_buf *out, const char *s, size_t n) { return normalize(out, s, n, 1); }
int gm_nfd(gm_buf *out, const char *s, size_t n) { return normalize(out, s, n, 0); }
