/* regex.c - Oniguruma-compatible pattern rewriting and PCRE2 matching. */
#include "text/regex.h"

#include <string.h>

#include "util/buf.h"
#include "util/error.h"

#define WORD_CLASS "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"

/* Rewrites the escapes whose meaning differs; everything else is copied. */
static int translate(const char *p, size_t n, gm_buf *out) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            const char *in = NULL, *outside = NULL;
            switch (e) {
            case 's': in = "\\p{White_Space}"; outside = in; break;
            case 'S': in = "\\P{White_Space}"; outside = in; break;
            case 'w': in = WORD_CLASS; outside = "[" WORD_CLASS "]"; break;
            case 'W': outside = "[^" WORD_CLASS "]"; break;
            case 'h': in = "0-9a-fA-F"; outside = "[0-9a-fA-F]"; break;
            case 'H': outside = "[^0-9a-fA-F]"; break;
            default: break;
            }
            const char *rep = in_class ? in : outside;
            if (rep) {
                if (gm_buf_puts(out, rep)) return -1;
            } else {
                char pair[2] = {'\\', e};
                if (gm_buf_append(out, pair, 2)) return -1;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            if (gm_buf_append(out, p + i, 1)) return -1;
            if (i + 1 < n && p[i + 1] == '^' && gm_buf_append(out, p + ++i, 1)) return -1;
            if (i + 1 < n && p[i + 1] == ']' && gm_buf_append(out, p + ++i, 1)) return -1;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {
            const char *end = strstr(p + i, ":]");
            size_t k = end && (size_t)(end - p) < n ? (size_t)(end - p) + 2 - i : 1;
            if (gm_buf_append(out, p + i, k)) return -1;
            i += k - 1;
            continue;
        }
        if (in_class && c == ']') in_class = 0;
        if (gm_buf_append(out, p + i, 1)) return -1;
    }
    return 0;
}

int gm_regex_compile(const char *pattern, size_t len, pcre2_code **out) {
    gm_buf t = {0};
    if (translate(pattern, len, &t)) {
        gm_buf_free(&t);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(t.data ? t.data : ""), t.len, PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        int rc = gm_fail(GOMLX_ERR_UNSUPPORTED, "regex /%.*s/: %s at offset %zu", (int)len, pattern,
                         (const char *)msg, (size_t)off);
        gm_buf_free(&t);
        return rc;
    }
    gm_buf_free(&t);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* failure just means the interpreter runs */
    *out = re;
    return 0;
}

int gm_matcher_init(gm_matcher *m) {
    memset(m, 0, sizeof *m);
    m->md = pcre2_match_data_create(8, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    /* Long whitespace or letter runs can need more than the default 32 KiB. */
    m->jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!m->md || !m->mctx) {
        gm_matcher_free(m);
        return -1;
    }
    if (m->jit) pcre2_jit_stack_assign(m->mctx, NULL, m->jit);
    return 0;
}

void gm_matcher_free(gm_matcher *m) {
    if (m->md) pcre2_match_data_free(m->md);
    if (m->mctx) pcre2_match_context_free(m->mctx);
    if (m->jit) pcre2_jit_stack_free(m->jit);
    memset(m, 0, sizeof *m);
}

int gm_regex_find(const pcre2_code *re, gm_matcher *m, const char *s, size_t n, size_t from,
                  size_t *ms, size_t *me) {
    if (from > n) return 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)(n ? s : ""), n, from, PCRE2_NO_UTF_CHECK, m->md, m->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        gm_fail(GOMLX_ERR_INTERNAL, "regex match failed: %s", (const char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}
