/* tokenizer.c - the encode pipeline (added tokens, normalizer,
 * pre-tokenizer, BPE, post-processor), the id tables and the accessors.
 * Loading lives in tokenizer_json.c and tokenizer_gguf.c, decoding in
 * detok.c. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"
#include "text/utf8.h"
#include "util/error.h"

gm_tokenizer *gm_tokenizer_alloc(void) {
    gm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    gm_bpe_init(&t->bpe);
    t->bos_id = t->eos_id = -1;
    return t;
}

void gm_tokenizer_free(gm_tokenizer *t) {
    if (!t) return;
    gm_bpe_free(&t->bpe);
    gm_added_free(&t->added);
    gm_normalizer_free(&t->norm);
    gm_pretok_free(&t->pre);
    gm_decoder_free(&t->dec);
    free(t->prefix.v);
    free(t->suffix.v);
    free(t->str);
    free(t->len);
    free(t->special);
    free(t->bos_token);
    free(t->eos_token);
    free(t->chat_template);
    free(t->stop.v);
    free(t);
}

/* Added tokens with normalized=1 are matched as the normalizer leaves them. */
static int normalize_token(void *ctx, const char *s, size_t n, char **out, size_t *out_n) {
    gm_tokenizer *t = ctx;
    gm_matcher m;
    if (gm_matcher_init(&m)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    gm_buf a = {0}, b = {0};
    int rc = gm_normalize(&t->norm, &m, s, n, &a, &b);
    gm_matcher_free(&m);
    gm_buf_free(&b);
    if (rc) {
        gm_buf_free(&a);
        return rc;
    }
    *out_n = a.len;
    *out = gm_buf_take(&a);
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

int gm_tokenizer_finish(gm_tokenizer *t, const char *bos, const char *eos) {
    int32_t n = t->bpe.vocab.n_ids;
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.tok[i].id >= n) n = t->added.tok[i].id + 1;
    t->n_ids = n;
    t->str = calloc((size_t)n + 1, sizeof *t->str);
    t->len = calloc((size_t)n + 1, sizeof *t->len);
    t->special = calloc((size_t)n + 1, 1);
    if (!t->str || !t->len || !t->special) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (int32_t id = 0; id < t->bpe.vocab.n_ids; id++) {
        size_t len;
        const char *s = gm_vocab_str(&t->bpe.vocab, id, &len);
        t->str[id] = s;
        t->len[id] = (uint32_t)len;
    }
    for (size_t i = 0; i < t->added.n; i++) {
        const gm_added_token *a = &t->added.tok[i];
        if (a->id < 0) continue;
        t->str[a->id] = a->content;
        t->len[a->id] = (uint32_t)a->len;
        t->special[a->id] = a->special;
    }
    int rc = gm_added_build(&t->added, t->norm.n ? normalize_token : NULL, t);
    if (rc) return rc;
    gm_bpe_finish(&t->bpe);

    if (bos) t->bos_id = gm_tokenizer_token_id(t, bos);
    if (eos) t->eos_id = gm_tokenizer_token_id(t, eos);
    if (t->bos_id >= 0 && t->str[t->bos_id] && !(t->bos_token = dup_str(t->str[t->bos_id])))
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    if (t->eos_id >= 0 && t->str[t->eos_id] && !(t->eos_token = dup_str(t->str[t->eos_id])))
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");

    /* Tokens that end a turn in the chat formats we know. */
    static const char *const enders[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>",
                                         "<end_of_turn>", "</s>", "<|end|>", "<|end_of_text|>",
                                         "<eos>"};
    if (t->eos_id >= 0 && gm_ids_push(&t->stop, t->eos_id)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < sizeof enders / sizeof enders[0]; i++) {
        int32_t id = gm_tokenizer_token_id(t, enders[i]);
        if (id < 0) continue;
        int seen = 0;
        for (size_t k = 0; k < t->stop.n; k++) seen |= t->stop.v[k] == id;
        if (!seen && gm_ids_push(&t->stop, id)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    return 0;
}

/* ------------------------------------------------------------ encoding */

typedef struct {
    gm_matcher m;
    gm_buf norm, tmp;
    gm_pieces words, scratch;
    gm_split *subs;
    size_t n_subs;
} encode_ctx;

static int encode_words(const gm_tokenizer *t, encode_ctx *c, const char *s, size_t n, int first,
                        gm_ids *out) {
    if (n == 0) return 0;
    int rc = gm_pretok_run(&t->pre, &c->m, s, n, first, &c->words, &c->scratch);
    if (rc) return rc;
    for (size_t i = 0; i < c->words.n; i++) {
        const gm_piece *w = &c->words.v[i];
        if (gm_bpe_encode(&t->bpe, c->words.text.data + w->off, w->len, out))
            return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    return 0;
}

/* One stretch of text between raw-matched added tokens. */
static int encode_segment(const gm_tokenizer *t, encode_ctx *c, const char *s, size_t n, int first,
                          gm_ids *out) {
    const char *text = s;
    size_t len = n;
    if (t->norm.n) {
        int rc = gm_normalize(&t->norm, &c->m, s, n, &c->norm, &c->tmp);
        if (rc) return rc;
        text = c->norm.data;
        len = c->norm.len;
    }
    if (!t->added.norm.nodes) return encode_words(t, c, text, len, first, out);
    free(c->subs);
    c->subs = NULL;
    int rc = gm_added_split(&t->added, 1, &c->m, text, len, &c->subs, &c->n_subs);
    if (rc) return rc;
    /* Tokens with normalized=1 are found in the normalized text. */
    for (size_t i = 0; i < c->n_subs && !rc; i++) {
        const gm_split *sp = &c->subs[i];
        if (sp->tok >= 0) {
            if (gm_ids_push(out, t->added.tok[sp->tok].id)) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        } else {
            rc = encode_words(t, c, text + sp->start, sp->end - sp->start, first && sp->start == 0, out);
        }
    }
    return rc;
}

int gm_tokenizer_encode(const gm_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n_ids) {
    if (!t || (!text && len)) return gm_fail(GOMLX_ERR_INVALID_INPUT, "tokenize: NULL argument");
    gm_buf clean = {0};
    if (!gm_utf8_valid(text, len)) { /* invalid bytes become U+FFFD, as Python's decode would */
        gm_utf8_lossy(&clean, text, len, 0);
        text = clean.data;
        len = clean.len;
    }
    encode_ctx c = {0};
    gm_ids out = {0};
    gm_split *raw = NULL;
    size_t n_raw = 0;
    int rc = gm_matcher_init(&c.m) ? gm_fail(GOMLX_ERR_INTERNAL, "out of memory") : 0;
    if (!rc) rc = gm_added_split(&t->added, 0, &c.m, text, len, &raw, &n_raw);
    for (size_t i = 0; add_special && !rc && i < t->prefix.n; i++)
        if (gm_ids_push(&out, t->prefix.v[i])) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < n_raw && !rc; i++) {
        if (raw[i].tok >= 0) {
            if (gm_ids_push(&out, t->added.tok[raw[i].tok].id)) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        } else {
            rc = encode_segment(t, &c, text + raw[i].start, raw[i].end - raw[i].start, raw[i].start == 0, &out);
        }
    }
    for (size_t i = 0; add_special && !rc && i < t->suffix.n; i++)
        if (gm_ids_push(&out, t->suffix.v[i])) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    free(raw);
    free(c.subs);
    gm_matcher_free(&c.m);
    gm_buf_free(&c.norm);
    gm_buf_free(&c.tmp);
    gm_pieces_free(&c.words);
    gm_pieces_free(&c.scratch);
    gm_buf_free(&clean);
    if (rc) {
        free(out.v);
        return rc;
    }
    if (!out.v && !(out.v = malloc(sizeof *out.v))) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ------------------------------------------------------------ accessors */

int gm_tokenizer_vocab_size(const gm_tokenizer *t) { return t->n_ids; }

int32_t gm_tokenizer_token_id(const gm_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    const gm_added_token *a = gm_added_find(&t->added, token, n);
    return a ? a->id : gm_vocab_get(&t->bpe.vocab, token, n);
}

const char *gm_tokenizer_token_str(const gm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->str[id] : NULL;
}

int gm_tokenizer_is_special(const gm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->special[id];
}

int32_t gm_tokenizer_bos_id(const gm_tokenizer *t) { return t->bos_id; }
int32_t gm_tokenizer_eos_id(const gm_tokenizer *t) { return t->eos_id; }

const int32_t *gm_tokenizer_stop_ids(const gm_tokenizer *t, size_t *n) {
    *n = t->stop.n;
    return t->stop.v;
}

int gm_tokenizer_adds_bos(const gm_tokenizer *t) {
    return t->prefix.n > 0 && (t->bos_id < 0 || t->prefix.v[0] == t->bos_id);
}

const char *gm_tokenizer_chat_template(const gm_tokenizer *t) { return t->chat_template; }
const char *gm_tokenizer_bos_token(const gm_tokenizer *t) { return t->bos_token; }
const char *gm_tokenizer_eos_token(const gm_tokenizer *t) { return t->eos_token; }
