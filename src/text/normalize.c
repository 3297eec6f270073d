/* normalize.c - tokenizer.json normalizers applied in sequence. */
#include "text/normalize.h"

#include <stdlib.h>
#include <string.h>

#include "text/nfc.h"
#include "text/utf8.h"
#include "util/error.h"

static int add(gm_normalizer *n, gm_norm_step st) {
    gm_norm_step *v = realloc(n->steps, (n->n + 1) * sizeof *v);
    if (!v) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    n->steps = v;
    n->steps[n->n++] = st;
    return 0;
}

static char *dup(const char *s, size_t *n) {
    *n = strlen(s);
    char *d = malloc(*n + 1);
    if (d) memcpy(d, s, *n + 1);
    return d;
}

static void step_free(gm_norm_step *st) {
    free(st->a);
    free(st->b);
    if (st->re) pcre2_code_free(st->re);
}

int gm_normalizer_add_replace(gm_normalizer *n, const char *pattern, const char *content) {
    gm_norm_step st = {.kind = GM_NORM_REPLACE};
    st.a = dup(pattern, &st.na);
    st.b = dup(content, &st.nb);
    if (!st.a || !st.b) {
        step_free(&st);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    int rc = add(n, st);
    if (rc) step_free(&st);
    return rc;
}

int gm_normalizer_add_prepend(gm_normalizer *n, const char *text) {
    gm_norm_step st = {.kind = GM_NORM_PREPEND};
    st.a = dup(text, &st.na);
    if (!st.a) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    int rc = add(n, st);
    if (rc) step_free(&st);
    return rc;
}

static int parse(const cJSON *j, gm_normalizer *n) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return gm_fail(GOMLX_ERR_FORMAT, "normalizer without a type");
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "normalizers")) {
            int rc = parse(it, n);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(t, "NFC")) return add(n, (gm_norm_step){.kind = GM_NORM_NFC});
    if (!strcmp(t, "NFD")) return add(n, (gm_norm_step){.kind = GM_NORM_NFD});
    if (!strcmp(t, "Prepend")) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prepend");
        if (!cJSON_IsString(p)) return gm_fail(GOMLX_ERR_FORMAT, "Prepend normalizer without text");
        return gm_normalizer_add_prepend(n, p->valuestring);
    }
    if (!strcmp(t, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
        if (!cJSON_IsString(content) || (!cJSON_IsString(str) && !cJSON_IsString(re)))
            return gm_fail(GOMLX_ERR_FORMAT, "Replace normalizer without pattern or content");
        if (cJSON_IsString(str)) return gm_normalizer_add_replace(n, str->valuestring, content->valuestring);
        gm_norm_step st = {.kind = GM_NORM_REPLACE};
        int rc = gm_regex_compile(re->valuestring, strlen(re->valuestring), &st.re);
        if (rc) return rc;
        st.b = dup(content->valuestring, &st.nb);
        if (!st.b) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        if (!rc) rc = add(n, st);
        if (rc) step_free(&st);
        return rc;
    }
    if (!strcmp(t, "Strip")) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "strip_left");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "strip_right");
        return add(n, (gm_norm_step){.kind = GM_NORM_STRIP, .left = cJSON_IsTrue(l),
                                     .right = cJSON_IsTrue(r)});
    }
    return gm_fail(GOMLX_ERR_UNSUPPORTED, "normalizer type '%s' is not supported", t);
}

int gm_normalizer_from_json(const cJSON *j, gm_normalizer *out) {
    memset(out, 0, sizeof *out);
    if (!j || cJSON_IsNull(j)) return 0;
    int rc = parse(j, out);
    if (rc) gm_normalizer_free(out);
    return rc;
}

void gm_normalizer_free(gm_normalizer *n) {
    for (size_t i = 0; i < n->n; i++) step_free(&n->steps[i]);
    free(n->steps);
    memset(n, 0, sizeof *n);
}

/* Replaces every non-overlapping occurrence, left to right. */
static int replace(const gm_norm_step *st, gm_matcher *m, const char *s, size_t n, gm_buf *out) {
    size_t from = 0;
    while (from < n) {
        size_t ms, me;
        if (st->re) {
            int rc = gm_regex_find(st->re, m, s, n, from, &ms, &me);
            if (rc < 0) return -1;
            if (rc == 0) break;
            if (me == ms) { /* empty match: keep the character and move on */
                int k = gm_utf8_next(s + ms, n - ms, NULL);
                size_t step = k > 0 ? (size_t)k : 1;
                if (gm_buf_append(out, s + from, ms + step - from)) return -1;
                from = ms + step;
                continue;
            }
        } else {
            const char *hit = st->na && st->na <= n - from ? gm_find_bytes(s + from, n - from, st->a, st->na) : NULL;
            if (!hit) break;
            ms = (size_t)(hit - s);
            me = ms + st->na;
        }
        if (gm_buf_append(out, s + from, ms - from) || gm_buf_append(out, st->b, st->nb)) return -1;
        from = me;
    }
    return gm_buf_append(out, s + from, n - from);
}

static int strip(const gm_norm_step *st, const char *s, size_t n, gm_buf *out) {
    size_t a = 0, b = n;
    uint32_t cp;
    int k;
    while (st->left && a < b && (k = gm_utf8_next(s + a, b - a, &cp)) > 0 && gm_is_white_space(cp))
        a += (size_t)k;
    while (st->right && b > a) {
        size_t p = gm_utf8_prev(s, b);
        if (gm_utf8_next(s + p, b - p, &cp) <= 0 || !gm_is_white_space(cp)) break;
        b = p;
    }
    return gm_buf_append(out, s + a, b - a);
}

int gm_normalize(const gm_normalizer *n, gm_matcher *m, const char *s, size_t len, gm_buf *out,
                 gm_buf *tmp) {
    out->len = 0;
    if (gm_buf_append(out, s, len)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        const gm_norm_step *st = &n->steps[i];
        if (out->len == 0) break; /* every normalizer leaves empty text empty */
        tmp->len = 0;
        int rc = 0;
        switch (st->kind) {
        case GM_NORM_NFC: rc = gm_nfc(tmp, out->data, out->len); break;
        case GM_NORM_NFD: rc = gm_nfd(tmp, out->data, out->len); break;
        case GM_NORM_PREPEND:
            rc = gm_buf_append(tmp, st->a, st->na) || gm_buf_append(tmp, out->data, out->len);
            break;
        case GM_NORM_REPLACE: rc = replace(st, m, out->data, out->len, tmp); break;
        case GM_NORM_STRIP: rc = strip(st, out->data, out->len, tmp); break;
        }
        if (rc) return *gm_error_message() ? GOMLX_ERR_INTERNAL : gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        gm_buf t = *out;
        *out = *tmp;
        *tmp = t;
    }
    if (!out->data && gm_buf_append(out, "", 0)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    return 0;
}
