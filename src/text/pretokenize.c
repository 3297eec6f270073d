/* pretokenize.c - the pre-tokenizer steps and HF's split behaviours. Each
 * step maps every current word to zero or more new words; empty words are
 * dropped, as HF's PreTokenizedString::split does. */
#include "text/pretokenize.h"

#include <stdlib.h>
#include <string.h>

#include "text/byte_level.h"
#include "text/utf8.h"
#include "util/error.h"

/* GPT-2's pattern, the one HF's ByteLevel pre-tokenizer uses with use_regex. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int gm_pieces_add(gm_pieces *p, const char *s, size_t n, int first) {
    if (n == 0) return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        gm_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) return -1;
        p->v = v;
        p->cap = cap;
    }
    size_t off = p->text.len;
    if (gm_buf_append(&p->text, s, n)) return -1;
    p->v[p->n++] = (gm_piece){off, n, first};
    return 0;
}

void gm_pieces_clear(gm_pieces *p) {
    p->n = 0;
    p->text.len = 0;
}

void gm_pieces_free(gm_pieces *p) {
    gm_buf_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------ splitting */

typedef struct {
    size_t start, end;
    int match;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spans;

static int spans_push(spans *a, size_t start, size_t end, int match) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        span *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (span){start, end, match};
    return 0;
}

/* Matches and the gaps between them, covering s (HF Pattern::find_matches). */
static int find_matches(const gm_pt_step *st, gm_matcher *m, const char *s, size_t n, spans *out) {
    size_t prev = 0, from = 0;
    if (n == 0) return spans_push(out, 0, 0, 0);
    while (from <= n) {
        size_t ms, me;
        if (st->re) {
            int rc = gm_regex_find(st->re, m, s, n, from, &ms, &me);
            if (rc < 0) return GOMLX_ERR_INTERNAL;
            if (rc == 0) break;
        } else {
            if (st->lit_len == 0) break;
            const char *hit = st->lit_len <= n - from ? gm_find_bytes(s + from, n - from, st->lit, st->lit_len) : NULL;
            if (!hit) break;
            ms = (size_t)(hit - s);
            me = ms + st->lit_len;
        }
        if (me == ms) { /* an empty match splits nothing; step over one character */
            if (ms >= n) break;
            int k = gm_utf8_next(s + ms, n - ms, NULL);
            from = ms + (size_t)(k > 0 ? k : 1);
            continue;
        }
        if (ms > prev && spans_push(out, prev, ms, 0)) return GOMLX_ERR_INTERNAL;
        if (spans_push(out, ms, me, 1)) return GOMLX_ERR_INTERNAL;
        prev = from = me;
    }
    if (prev < n && spans_push(out, prev, n, 0)) return GOMLX_ERR_INTERNAL;
    return 0;
}

/* Applies a split behaviour to the spans in place (HF NormalizedString::split);
 * afterwards every span with match=1 is one to drop. */
static void apply_behavior(spans *a, gm_split_behavior b) {
    size_t out = 0;
    int prev_match = 0;
    switch (b) {
    case GM_SPLIT_REMOVED:
        return;
    case GM_SPLIT_ISOLATED:
        for (size_t i = 0; i < a->n; i++) a->v[i].match = 0;
        return;
    case GM_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < a->n; i++) {
            span s = a->v[i];
            if (s.match && !prev_match && out > 0) a->v[out - 1].end = s.end;
            else a->v[out++] = (span){s.start, s.end, 0};
            prev_match = s.match;
        }
        break;
    case GM_SPLIT_MERGED_WITH_NEXT:
        /* Walk backwards so a match joins the piece after it. */
        for (size_t k = a->n; k-- > 0;) {
            span s = a->v[k];
            if (s.match && !prev_match && out > 0) a->v[a->n - out].start = s.start;
            else a->v[a->n - ++out] = (span){s.start, s.end, 0};
            prev_match = s.match;
        }
        memmove(a->v, a->v + (a->n - out), out * sizeof *a->v);
        break;
    case GM_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < a->n; i++) {
            span s = a->v[i];
            if (out > 0 && s.match == prev_match) a->v[out - 1].end = s.end;
            else a->v[out++] = (span){s.start, s.end, 0};
            prev_match = s.match;
        }
        break;
    }
    a->n = out;
}

static int split_word(const gm_pt_step *st, gm_matcher *m, const char *s, size_t n, int first,
                      gm_pieces *out, spans *sp) {
    sp->n = 0;
    int rc = find_matches(st, m, s, n, sp);
    if (rc) return rc;
    if (st->invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = !sp->v[i].match;
    apply_behavior(sp, st->behavior);
    for (size_t i = 0; i < sp->n; i++) {
        if (sp->v[i].match) continue;
        if (gm_pieces_add(out, s + sp->v[i].start, sp->v[i].end - sp->v[i].start,
                          first && sp->v[i].start == 0))
            return GOMLX_ERR_INTERNAL;
    }
    return 0;
}

/* ------------------------------------------------------------ steps */

static int run_step(const gm_pt_step *st, gm_matcher *m, const char *s, size_t n, int first,
                    gm_pieces *out, spans *sp, gm_buf *tmp) {
    switch (st->kind) {
    case GM_PT_SPLIT:
        return split_word(st, m, s, n, first, out, sp);
    case GM_PT_BYTE_LEVEL: {
        tmp->len = 0;
        if (st->add_prefix_space && (n == 0 || s[0] != ' ') && gm_buf_append(tmp, " ", 1))
            return GOMLX_ERR_INTERNAL;
        if (gm_buf_append(tmp, s, n)) return GOMLX_ERR_INTERNAL;
        size_t base = out->n;
        if (st->re) {
            gm_pt_step gpt2 = {.kind = GM_PT_SPLIT, .re = st->re, .behavior = GM_SPLIT_ISOLATED};
            int rc = split_word(&gpt2, m, tmp->data, tmp->len, first, out, sp);
            if (rc) return rc;
        } else if (gm_pieces_add(out, tmp->data, tmp->len, first)) {
            return GOMLX_ERR_INTERNAL;
        }
        /* Respell the new words in the byte alphabet, in place at the end. */
        for (size_t i = base; i < out->n; i++) {
            gm_piece *p = &out->v[i];
            tmp->len = 0;
            if (gm_byte_level_encode(tmp, out->text.data + p->off, p->len)) return GOMLX_ERR_INTERNAL;
            p->off = out->text.len;
            p->len = tmp->len;
            if (gm_buf_append(&out->text, tmp->data, tmp->len)) return GOMLX_ERR_INTERNAL;
        }
        return 0;
    }
    case GM_PT_METASPACE: {
        tmp->len = 0;
        int starts = n >= st->repl_len && memcmp(s, st->repl, st->repl_len) == 0;
        /* A leading space becomes the replacement too, so check the text after replacing. */
        if (n > 0 && s[0] == ' ') starts = 1;
        if (!starts && (st->prepend == GM_PREPEND_ALWAYS || (st->prepend == GM_PREPEND_FIRST && first)))
            if (gm_buf_append(tmp, st->repl, st->repl_len)) return GOMLX_ERR_INTERNAL;
        for (size_t i = 0; i < n; i++) {
            int rc = s[i] == ' ' ? gm_buf_append(tmp, st->repl, st->repl_len) : gm_buf_append(tmp, s + i, 1);
            if (rc) return GOMLX_ERR_INTERNAL;
        }
        if (!st->split) return gm_pieces_add(out, tmp->data, tmp->len, first) ? GOMLX_ERR_INTERNAL : 0;
        gm_pt_step lit = {.kind = GM_PT_SPLIT, .lit = (char *)st->repl, .lit_len = st->repl_len,
                          .behavior = GM_SPLIT_MERGED_WITH_NEXT};
        /* split_word copies out of tmp before tmp is touched again. */
        return split_word(&lit, m, tmp->data, tmp->len, first, out, sp);
    }
    }
    return 0;
}

int gm_pretok_run(const gm_pretok *p, gm_matcher *m, const char *s, size_t n, int first,
                  gm_pieces *out, gm_pieces *tmp) {
    gm_pieces_clear(out);
    if (gm_pieces_add(out, s, n, first)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    spans sp = {0};
    gm_buf scratch = {0};
    int rc = 0;
    for (size_t k = 0; k < p->n && !rc; k++) {
        gm_pieces_clear(tmp);
        for (size_t i = 0; i < out->n && !rc; i++) {
            gm_piece w = out->v[i];
            rc = run_step(&p->steps[k], m, out->text.data + w.off, w.len, w.first, tmp, &sp, &scratch);
        }
        gm_pieces t = *out;
        *out = *tmp;
        *tmp = t;
    }
    free(sp.v);
    gm_buf_free(&scratch);
    if (rc && !*gm_error_message()) gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    return rc;
}

/* ------------------------------------------------------------ building */

static int add_step(gm_pretok *p, gm_pt_step st) {
    gm_pt_step *v = realloc(p->steps, (p->n + 1) * sizeof *v);
    if (!v) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    p->steps = v;
    p->steps[p->n++] = st;
    return 0;
}

static int add_regex_split(gm_pretok *p, const char *pattern, gm_split_behavior b, int invert) {
    gm_pt_step st = {.kind = GM_PT_SPLIT, .behavior = b, .invert = invert};
    int rc = gm_regex_compile(pattern, strlen(pattern), &st.re);
    if (rc) return rc;
    rc = add_step(p, st);
    if (rc) pcre2_code_free(st.re);
    return rc;
}

int gm_pretok_byte_level(gm_pretok *p, const char *pattern) {
    gm_pt_step st = {.kind = GM_PT_BYTE_LEVEL};
    int rc;
    if (pattern && (rc = add_regex_split(p, pattern, GM_SPLIT_ISOLATED, 0))) return rc;
    if (!pattern && (rc = gm_regex_compile(GPT2_PATTERN, strlen(GPT2_PATTERN), &st.re))) return rc;
    rc = add_step(p, st);
    if (rc && st.re) pcre2_code_free(st.re);
    return rc;
}

int gm_pretok_metaspace(gm_pretok *p, gm_prepend_scheme prepend, int split) {
    gm_pt_step st = {.kind = GM_PT_METASPACE, .prepend = prepend, .split = split};
    memcpy(st.repl, "\xE2\x96\x81", 3); /* U+2581 */
    st.repl_len = 3;
    return add_step(p, st);
}

static gm_split_behavior parse_behavior(const cJSON *j, int *ok) {
    const char *s = cJSON_IsString(j) ? j->valuestring : "";
    *ok = 1;
    if (!strcmp(s, "Removed")) return GM_SPLIT_REMOVED;
    if (!strcmp(s, "Isolated")) return GM_SPLIT_ISOLATED;
    if (!strcmp(s, "MergedWithPrevious")) return GM_SPLIT_MERGED_WITH_PREVIOUS;
    if (!strcmp(s, "MergedWithNext")) return GM_SPLIT_MERGED_WITH_NEXT;
    if (!strcmp(s, "Contiguous")) return GM_SPLIT_CONTIGUOUS;
    *ok = 0;
    return GM_SPLIT_ISOLATED;
}

static int flag(const cJSON *j, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int parse(const cJSON *j, gm_pretok *p) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return gm_fail(GOMLX_ERR_FORMAT, "pre_tokenizer without a type");
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *it;
        cJSON_ArrayForEach(it, list) {
            int rc = parse(it, p);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(t, "Split")) {
        int ok;
        gm_split_behavior b = parse_behavior(cJSON_GetObjectItemCaseSensitive(j, "behavior"), &ok);
        if (!ok) return gm_fail(GOMLX_ERR_UNSUPPORTED, "Split pre-tokenizer: unknown behavior");
        int invert = flag(j, "invert", 0);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if (cJSON_IsString(re)) return add_regex_split(p, re->valuestring, b, invert);
        if (!cJSON_IsString(str)) return gm_fail(GOMLX_ERR_FORMAT, "Split pre-tokenizer without a pattern");
        gm_pt_step st = {.kind = GM_PT_SPLIT, .behavior = b, .invert = invert};
        st.lit_len = strlen(str->valuestring);
        st.lit = malloc(st.lit_len + 1);
        if (!st.lit) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        memcpy(st.lit, str->valuestring, st.lit_len + 1);
        int rc = add_step(p, st);
        if (rc) free(st.lit);
        return rc;
    }
    if (!strcmp(t, "ByteLevel")) {
        gm_pt_step st = {.kind = GM_PT_BYTE_LEVEL, .add_prefix_space = flag(j, "add_prefix_space", 1)};
        int rc;
        if (flag(j, "use_regex", 1) && (rc = gm_regex_compile(GPT2_PATTERN, strlen(GPT2_PATTERN), &st.re)))
            return rc;
        rc = add_step(p, st);
        if (rc && st.re) pcre2_code_free(st.re);
        return rc;
    }
    if (!strcmp(t, "Metaspace")) {
        gm_prepend_scheme ps = GM_PREPEND_ALWAYS;
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        if (cJSON_IsString(scheme)) {
            if (!strcmp(scheme->valuestring, "first")) ps = GM_PREPEND_FIRST;
            else if (!strcmp(scheme->valuestring, "never")) ps = GM_PREPEND_NEVER;
        } else if (!flag(j, "add_prefix_space", 1)) {
            ps = GM_PREPEND_NEVER; /* older files */
        }
        gm_pt_step st = {.kind = GM_PT_METASPACE, .prepend = ps, .split = flag(j, "split", 1)};
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        const char *rs = cJSON_IsString(r) ? r->valuestring : "\xE2\x96\x81";
        int k = gm_utf8_next(rs, strlen(rs), NULL);
        if (k <= 0) return gm_fail(GOMLX_ERR_FORMAT, "Metaspace: bad replacement");
        memcpy(st.repl, rs, (size_t)k);
        st.repl_len = (size_t)k;
        return add_step(p, st);
    }
    if (!strcmp(t, "Digits"))
        return add_regex_split(p, flag(j, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+",
                               GM_SPLIT_ISOLATED, 0);
    if (!strcmp(t, "Whitespace")) return add_regex_split(p, "\\w+|[^\\w\\s]+", GM_SPLIT_REMOVED, 1);
    if (!strcmp(t, "WhitespaceSplit")) return add_regex_split(p, "\\s+", GM_SPLIT_REMOVED, 0);
    if (!strcmp(t, "Punctuation")) {
        int ok = 1;
        const cJSON *bj = cJSON_GetObjectItemCaseSensitive(j, "behavior");
        gm_split_behavior b = bj ? parse_behavior(bj, &ok) : GM_SPLIT_ISOLATED;
        if (!ok) return gm_fail(GOMLX_ERR_UNSUPPORTED, "Punctuation pre-tokenizer: unknown behavior");
        /* Rust's char::is_ascii_punctuation or a Unicode punctuation category. */
        return add_regex_split(p, "[\\p{P}!-/:-@\\[-`{-~]", b, 0);
    }
    return gm_fail(GOMLX_ERR_UNSUPPORTED, "pre_tokenizer type '%s' is not supported", t);
}

int gm_pretok_from_json(const cJSON *j, gm_pretok *out) {
    memset(out, 0, sizeof *out);
    if (!j || cJSON_IsNull(j)) return 0;
    int rc = parse(j, out);
    if (rc) gm_pretok_free(out);
    return rc;
}

void gm_pretok_free(gm_pretok *p) {
    for (size_t i = 0; i < p->n; i++) {
        if (p->steps[i].re) pcre2_code_free(p->steps[i].re);
        free(p->steps[i].lit);
    }
    free(p->steps);
    memset(p, 0, sizeof *p);
}
