/* detok.c - decoding as a stream. Every decode goes through here, so the
 * pieces of a streamed decode always add up to the full decode. Each
 * decoder step takes tokens one at a time and passes on what it can; steps
 * that need to see more (byte groups, UTF-8 tails, trailing strips) hold
 * text back until the next token or the flush. */
#include <stdlib.h>
#include <string.h>

#include "text/byte_level.h"
#include "text/tok_internal.h"
#include "text/utf8.h"
#include "util/error.h"

typedef struct {
    gm_buf hold;   /* bytes or text held back */
    gm_buf tmp;
    size_t count;  /* tokens seen by this step */
    int started;   /* fused Strip: text past the leading strip has gone by */
    int stripped;  /* fused Strip: leading characters removed so far */
} step_state;

struct gm_detok {
    const gm_tokenizer *t;
    int skip_special;
    step_state *st;
    gm_buf sink_hold; /* the final guard: an incomplete UTF-8 tail */
    gm_buf out;
    int failed;
};

static void feed(gm_detok *d, size_t k, const char *s, size_t n);

static void sink(gm_detok *d, const char *s, size_t n, int final) {
    /* Token strings are valid UTF-8 except maybe in odd GGUF vocabularies;
     * this keeps even those from ever splitting a character. */
    gm_buf *h = &d->sink_hold;
    if (!h->len && gm_utf8_valid(s, n)) {
        if (gm_buf_append(&d->out, s, n)) d->failed = 1;
        return;
    }
    if (gm_buf_append(h, s, n)) d->failed = 1;
    size_t used = gm_utf8_lossy(&d->out, h->data, h->len, !final);
    memmove(h->data, h->data + used, h->len - used);
    h->len -= used;
}

static int is_byte_token(const char *s, size_t n, unsigned char *b) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (x < 0) return 0;
        v = v * 16 + (unsigned)x;
    }
    *b = (unsigned char)v;
    return 1;
}

static void flush_bytes(gm_detok *d, size_t k) {
    step_state *ss = &d->st[k];
    if (!ss->hold.len) return;
    /* A valid group is one token; an invalid one is one U+FFFD per byte. */
    if (gm_utf8_valid(ss->hold.data, ss->hold.len)) {
        gm_buf_free(&ss->tmp);
        ss->tmp = ss->hold;
        memset(&ss->hold, 0, sizeof ss->hold);
        feed(d, k + 1, ss->tmp.data, ss->tmp.len);
    } else {
        size_t nb = ss->hold.len;
        ss->hold.len = 0;
        for (size_t i = 0; i < nb; i++) feed(d, k + 1, "\xEF\xBF\xBD", 3);
    }
}

/* Fused Strip: emits s but the trailing `stop` strip characters, which wait. */
static void strip_tail(gm_detok *d, size_t k, const gm_dec_step *st, const char *s, size_t n) {
    step_state *ss = &d->st[k];
    if (st->stop <= 0) {
        feed(d, k + 1, s, n);
        return;
    }
    if (gm_buf_append(&ss->hold, s, n)) {
        d->failed = 1;
        return;
    }
    size_t end = ss->hold.len;
    int kept = 0;
    while (kept < st->stop && end >= st->n_ch &&
           !memcmp(ss->hold.data + end - st->n_ch, st->ch, st->n_ch)) {
        end -= st->n_ch;
        kept++;
    }
    if (end) {
        ss->tmp.len = 0;
        if (gm_buf_append(&ss->tmp, ss->hold.data, end)) d->failed = 1;
        memmove(ss->hold.data, ss->hold.data + end, ss->hold.len - end);
        ss->hold.len -= end;
        feed(d, k + 1, ss->tmp.data, ss->tmp.len);
    }
}

static void feed(gm_detok *d, size_t k, const char *s, size_t n) {
    const gm_decoder *dec = &d->t->dec;
    if (k == dec->n) {
        sink(d, s, n, 0);
        return;
    }
    const gm_dec_step *st = &dec->steps[k];
    step_state *ss = &d->st[k];
    size_t index = ss->count++;
    switch (st->kind) {
    case GM_DEC_JOIN_SPACE:
        if (index > 0) feed(d, k + 1, " ", 1);
        feed(d, k + 1, s, n);
        return;
    case GM_DEC_FUSE:
        feed(d, k + 1, s, n);
        return;
    case GM_DEC_BYTE_LEVEL: {
        if (gm_byte_level_decode(&ss->hold, s, n)) d->failed = 1;
        if (!ss->hold.len) return;
        ss->tmp.len = 0;
        size_t used = gm_utf8_lossy(&ss->tmp, ss->hold.data, ss->hold.len, 1);
        memmove(ss->hold.data, ss->hold.data + used, ss->hold.len - used);
        ss->hold.len -= used;
        if (ss->tmp.len) feed(d, k + 1, ss->tmp.data, ss->tmp.len);
        return;
    }
    case GM_DEC_BYTE_FALLBACK: {
        unsigned char b;
        if (is_byte_token(s, n, &b)) {
            if (gm_buf_append(&ss->hold, (const char *)&b, 1)) d->failed = 1;
            return;
        }
        flush_bytes(d, k);
        feed(d, k + 1, s, n);
        return;
    }
    case GM_DEC_REPLACE: {
        gm_buf r = {0};
        size_t from = 0;
        const char *hit;
        while (from < n && st->n_pattern <= n - from &&
               (hit = gm_find_bytes(s + from, n - from, st->pattern, st->n_pattern))) {
            gm_buf_append(&r, s + from, (size_t)(hit - s) - from);
            gm_buf_append(&r, st->content, st->n_content);
            from = (size_t)(hit - s) + st->n_pattern;
        }
        if (gm_buf_append(&r, s + from, n - from)) d->failed = 1;
        feed(d, k + 1, r.data, r.len);
        gm_buf_free(&r);
        return;
    }
    case GM_DEC_METASPACE: {
        /* The first token (the whole stream once fused) loses its
         * replacement characters; elsewhere they become spaces. */
        int first = st->fused || index == 0;
        gm_buf r = {0};
        for (size_t i = 0; i < n;) {
            if (n - i >= st->n_ch && !memcmp(s + i, st->ch, st->n_ch)) {
                if (!(first && st->drop_first)) gm_buf_append(&r, " ", 1);
                i += st->n_ch;
            } else {
                gm_buf_append(&r, s + i, 1);
                i++;
            }
        }
        if (gm_buf_append(&r, "", 0)) d->failed = 1;
        feed(d, k + 1, r.data, r.len);
        gm_buf_free(&r);
        return;
    }
    case GM_DEC_STRIP: {
        if (!st->fused) {
            size_t a = 0, b = n;
            for (int i = 0; i < st->start && b - a >= st->n_ch && !memcmp(s + a, st->ch, st->n_ch); i++)
                a += st->n_ch;
            for (int i = 0; i < st->stop && b - a >= st->n_ch && !memcmp(s + b - st->n_ch, st->ch, st->n_ch); i++)
                b -= st->n_ch;
            feed(d, k + 1, s + a, b - a);
            return;
        }
        size_t a = 0;
        while (!ss->started && a < n) {
            if (ss->stripped < st->start && n - a >= st->n_ch && !memcmp(s + a, st->ch, st->n_ch)) {
                a += st->n_ch;
                ss->stripped++;
            } else {
                ss->started = 1;
            }
        }
        if (a < n) strip_tail(d, k, st, s + a, n - a);
        return;
    }
    }
}

/* Passes on whatever step k holds, then the steps after it. */
static void flush_from(gm_detok *d, size_t k) {
    const gm_decoder *dec = &d->t->dec;
    for (; k < dec->n; k++) {
        step_state *ss = &d->st[k];
        switch (dec->steps[k].kind) {
        case GM_DEC_BYTE_FALLBACK:
            flush_bytes(d, k);
            break;
        case GM_DEC_BYTE_LEVEL:
            if (ss->hold.len) {
                ss->tmp.len = 0;
                gm_utf8_lossy(&ss->tmp, ss->hold.data, ss->hold.len, 0);
                ss->hold.len = 0;
                feed(d, k + 1, ss->tmp.data, ss->tmp.len);
            }
            break;
        case GM_DEC_STRIP:
            ss->hold.len = 0; /* the trailing characters a fused Strip removes */
            break;
        default:
            break;
        }
    }
    if (d->sink_hold.len) {
        gm_buf h = d->sink_hold;
        memset(&d->sink_hold, 0, sizeof h);
        sink(d, h.data, h.len, 1);
        gm_buf_free(&h);
    }
}

gm_detok *gm_detok_new(const gm_tokenizer *t, int skip_special) {
    gm_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->t = t;
    d->skip_special = skip_special;
    d->st = calloc(t->dec.n ? t->dec.n : 1, sizeof *d->st);
    if (!d->st) {
        free(d);
        return NULL;
    }
    return d;
}

static int finish_call(gm_detok *d, const char **text, size_t *len) {
    if (gm_buf_append(&d->out, "", 0)) d->failed = 1;
    *text = d->out.data;
    *len = d->out.len;
    if (d->failed) {
        d->failed = 0;
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory while decoding");
    }
    return 0;
}

int gm_detok_push(gm_detok *d, int32_t id, const char **text, size_t *len) {
    d->out.len = 0;
    const gm_tokenizer *t = d->t;
    /* Unknown ids are dropped, as HF's decode does. */
    if (id >= 0 && id < t->n_ids && t->str[id] && !(d->skip_special && t->special[id]))
        feed(d, 0, t->str[id], t->len[id]);
    return finish_call(d, text, len);
}

int gm_detok_flush(gm_detok *d, const char **text, size_t *len) {
    d->out.len = 0;
    flush_from(d, 0);
    return finish_call(d, text, len);
}

void gm_detok_reset(gm_detok *d) {
    for (size_t k = 0; k < d->t->dec.n; k++) {
        d->st[k].hold.len = 0;
        d->st[k].count = 0;
        d->st[k].started = d->st[k].stripped = 0;
    }
    d->sink_hold.len = 0;
    d->out.len = 0;
}

void gm_detok_free(gm_detok *d) {
    if (!d) return;
    for (size_t k = 0; k < d->t->dec.n; k++) {
        gm_buf_free(&d->st[k].hold);
        gm_buf_free(&d->st[k].tmp);
    }
    free(d->st);
    gm_buf_free(&d->sink_hold);
    gm_buf_free(&d->out);
    free(d);
}

int gm_tokenizer_decode(const gm_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
                        char **text) {
    size_t len;
    return gm_tokenizer_decode_n(t, ids, n_ids, skip_special, text, &len);
}

int gm_tokenizer_decode_n(const gm_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
                          char **text, size_t *text_len) {
    gm_detok *d = gm_detok_new(t, skip_special);
    if (!d) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    gm_buf all = {0};
    const char *piece;
    size_t len;
    int rc = 0;
    for (size_t i = 0; i < n_ids && !rc; i++) {
        rc = gm_detok_push(d, ids[i], &piece, &len);
        if (!rc && gm_buf_append(&all, piece, len)) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    if (!rc) rc = gm_detok_flush(d, &piece, &len);
    if (!rc && gm_buf_append(&all, piece, len)) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    gm_detok_free(d);
    if (rc) {
        gm_buf_free(&all);
        return rc;
    }
    *text_len = all.len;
    *text = gm_buf_take(&all);
    return 0;
}
