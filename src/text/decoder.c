/* decoder.c - reads the decoder section of tokenizer.json into steps. */
#include "text/decoder.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"
#include "util/error.h"

static char *dup(const char *s, size_t *n) {
    *n = strlen(s);
    char *d = malloc(*n + 1);
    if (d) memcpy(d, s, *n + 1);
    return d;
}

int gm_decoder_add(gm_decoder *d, gm_dec_step st) {
    gm_dec_step *v = realloc(d->steps, (d->n + 1) * sizeof *v);
    if (!v) {
        free(st.pattern);
        free(st.content);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    d->steps = v;
    for (size_t i = 0; i < d->n; i++)
        if (v[i].kind == GM_DEC_FUSE || v[i].kind == GM_DEC_BYTE_LEVEL || v[i].kind == GM_DEC_JOIN_SPACE)
            st.fused = 1;
    d->steps[d->n++] = st;
    return 0;
}

static int one_char(const char *s, gm_dec_step *st) {
    int k = gm_utf8_next(s, strlen(s), NULL);
    if (k <= 0 || s[k] != 0) return gm_fail(GOMLX_ERR_FORMAT, "decoder: expected one character, got '%s'", s);
    memcpy(st->ch, s, (size_t)k);
    st->n_ch = (size_t)k;
    return 0;
}

static int replace_step(gm_decoder *d, const char *pattern, const char *content) {
    gm_dec_step st = {.kind = GM_DEC_REPLACE};
    st.pattern = dup(pattern, &st.n_pattern);
    st.content = dup(content, &st.n_content);
    if (!st.pattern || !st.content) {
        free(st.pattern);
        free(st.content);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    return gm_decoder_add(d, st);
}

static int parse(const cJSON *j, gm_decoder *d) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(type)) return gm_fail(GOMLX_ERR_FORMAT, "decoder without a type");
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "decoders")) {
            int rc = parse(it, d);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) return gm_decoder_add(d, (gm_dec_step){.kind = GM_DEC_BYTE_LEVEL});
    if (!strcmp(t, "ByteFallback")) return gm_decoder_add(d, (gm_dec_step){.kind = GM_DEC_BYTE_FALLBACK});
    if (!strcmp(t, "Fuse")) return gm_decoder_add(d, (gm_dec_step){.kind = GM_DEC_FUSE});
    if (!strcmp(t, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
        if (!cJSON_IsString(str) || !cJSON_IsString(content))
            return gm_fail(GOMLX_ERR_UNSUPPORTED, "Replace decoder: only string patterns are supported");
        if (!*str->valuestring) return 0;
        return replace_step(d, str->valuestring, content->valuestring);
    }
    if (!strcmp(t, "Strip")) {
        gm_dec_step st = {.kind = GM_DEC_STRIP};
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
        int rc = one_char(cJSON_IsString(c) ? c->valuestring : " ", &st);
        if (rc) return rc;
        st.start = cJSON_IsNumber(a) ? a->valueint : 0;
        st.stop = cJSON_IsNumber(b) ? b->valueint : 0;
        return gm_decoder_add(d, st);
    }
    if (!strcmp(t, "Metaspace")) {
        gm_dec_step st = {.kind = GM_DEC_METASPACE, .drop_first = 1};
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        int rc = one_char(cJSON_IsString(r) ? r->valuestring : "\xE2\x96\x81", &st);
        if (rc) return rc;
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
        if (cJSON_IsString(scheme)) st.drop_first = strcmp(scheme->valuestring, "never") != 0;
        else if (cJSON_IsBool(aps)) st.drop_first = cJSON_IsTrue(aps);
        return gm_decoder_add(d, st);
    }
    return gm_fail(GOMLX_ERR_UNSUPPORTED, "decoder type '%s' is not supported", t);
}

int gm_decoder_from_json(const cJSON *j, gm_decoder *out) {
    memset(out, 0, sizeof *out);
    int rc = !j || cJSON_IsNull(j) ? gm_decoder_add(out, (gm_dec_step){.kind = GM_DEC_JOIN_SPACE})
                                    : parse(j, out);
    if (rc) gm_decoder_free(out);
    return rc;
}

int gm_decoder_sentencepiece(gm_decoder *d, int strip_space) {
    int rc = replace_step(d, "\xE2\x96\x81", " ");
    if (!rc) rc = gm_decoder_add(d, (gm_dec_step){.kind = GM_DEC_BYTE_FALLBACK});
    if (!rc) rc = gm_decoder_add(d, (gm_dec_step){.kind = GM_DEC_FUSE});
    if (!rc && strip_space)
        rc = gm_decoder_add(d, (gm_dec_step){.kind = GM_DEC_STRIP, .ch = " ", .n_ch = 1, .start = 1});
    return rc;
}

void gm_decoder_free(gm_decoder *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->steps[i].pattern);
        free(d->steps[i].content);
    }
    free(d->steps);
    memset(d, 0, sizeof *d);
}
