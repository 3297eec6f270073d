/* tokenizer_gguf.c - gm_tokenizer_from_gguf: builds the tokenizer a GGUF
 * file's tokenizer.ggml.* metadata describes, the way transformers'
 * GGUF conversion (integrations/gguf/gguf_tokenizer_mapping.py) does:
 *  - "gpt2": byte-level BPE over the file's merges; tokens not spelled in
 *    the byte alphabet are respelled; the split pattern comes from
 *    tokenizer.ggml.pre (table below), else GPT-2's own pattern;
 *  - "llama": SentencePiece-style BPE with byte fallback and Metaspace
 *    (prefix space on the first word), merges recovered from the scores;
 *    Gemma architectures spell spaces as "▁", rank merges by token order and
 *    add no prefix space.
 * Control tokens (type 3) become special added tokens, user-defined ones
 * (type 4) plain added tokens. */
#include <stdlib.h>
#include <string.h>

#include "text/byte_level.h"
#include "text/sentencepiece.h"
#include "text/tok_internal.h"
#include "util/error.h"

#define LLAMA3_SPLIT                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_SPLIT                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"  \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN35_SPLIT                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}" \
    "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TEKKEN_SPLIT                                                                           \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"  \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" \
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define GPT4O_SPLIT                                                                            \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"  \
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}"      \
    "\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* tokenizer.ggml.pre -> split pattern, as transformers' GGUF_PRE_TOKENIZER_SPLITS
 * maps them (names llama.cpp's convert_hf_to_gguf.py writes). A name not
 * here ("smollm", "gpt2", "default", ...) gets GPT-2's pattern, which is
 * what transformers falls back to too. Note llama.cpp itself splits digits
 * one by one for "smollm"; the SmolLM2 vocabulary has no digit merges, so
 * the two differ only in whether a space before a number stays separate. */
static const struct {
    const char *name, *pattern;
} pre_splits[] = {
    {"llama3", LLAMA3_SPLIT},      {"llama-v3", LLAMA3_SPLIT},    {"llama-bpe", LLAMA3_SPLIT},
    {"falcon3", LLAMA3_SPLIT},     {"falcon-h1", LLAMA3_SPLIT},   {"pixtral", LLAMA3_SPLIT},
    {"midm-2.0", LLAMA3_SPLIT},    {"lfm2", LLAMA3_SPLIT},        {"jina-v5-nano", LLAMA3_SPLIT},
    {"dbrx", LLAMA3_SPLIT},        {"smaug-bpe", LLAMA3_SPLIT},   {"tekken", TEKKEN_SPLIT},
    {"qwen2", QWEN2_SPLIT},        {"deepseek-r1-qwen", QWEN2_SPLIT}, {"kormo", QWEN2_SPLIT},
    {"f2llmv2", QWEN2_SPLIT},      {"megrez", QWEN2_SPLIT},       {"qwen35", QWEN35_SPLIT},
    {"gpt-4o", GPT4O_SPLIT},       {"llama4", GPT4O_SPLIT},       {"kanana2", GPT4O_SPLIT},
    {"talkie", GPT4O_SPLIT},       {"minimax-m2", GPT4O_SPLIT},
};

enum { TYPE_CONTROL = 3, TYPE_USER = 4 };

static int oom(void) { return gm_fail(GOMLX_ERR_INTERNAL, "out of memory"); }

static int is_gemma(const char *arch) {
    return arch && (!strcmp(arch, "gemma") || !strcmp(arch, "gemma2") || !strcmp(arch, "gemma3"));
}

/* The vocabulary spellings: byte-level vocabularies respell tokens outside
 * the byte alphabet; Gemma stores runs of spaces as spaces, not "▁". */
static char **spell_tokens(const gm_gguf_tokenizer_spec *spec, int byte_level, int gemma) {
    char **out = calloc(spec->n_tokens, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < spec->n_tokens; i++) {
        const char *s = spec->tokens[i] ? spec->tokens[i] : "";
        size_t n = strlen(s);
        gm_buf b = {0};
        int all_spaces = n > 0;
        for (size_t k = 0; k < n; k++) all_spaces &= s[k] == ' ';
        if (byte_level && !gm_byte_level_spelled(s, n)) {
            gm_byte_level_encode(&b, s, n);
        } else if (gemma && all_spaces) {
            for (size_t k = 0; k < n; k++) gm_buf_append(&b, "\xE2\x96\x81", 3);
        } else {
            gm_buf_append(&b, s, n);
        }
        out[i] = b.data ? gm_buf_take(&b) : NULL;
        if (!out[i]) {
            for (size_t k = 0; k < i; k++) free(out[k]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static int add_specials(gm_tokenizer *t, const gm_gguf_tokenizer_spec *spec, char **spelled,
                        int byte_level) {
    int32_t named[] = {spec->bos_id, spec->eos_id, spec->unk_id, spec->pad_id};
    for (size_t i = 0; i < spec->n_tokens; i++) {
        const char *raw = spec->tokens[i] ? spec->tokens[i] : "";
        int type = spec->token_types ? spec->token_types[i] : 1;
        int rc = 0;
        int is_named = 0;
        for (int k = 0; k < 4; k++) is_named |= named[k] == (int32_t)i;
        if ((type == TYPE_CONTROL && (!byte_level || gm_byte_level_spelled(raw, strlen(raw)))) || is_named)
            rc = gm_added_add(&t->added, spelled[i], (int32_t)i, 1, 0, 0, 0, 0);
        else if (type == TYPE_USER && gm_vocab_get(&t->bpe.vocab, raw, strlen(raw)) >= 0)
            rc = gm_added_add(&t->added, raw, gm_vocab_get(&t->bpe.vocab, raw, strlen(raw)), 0, 0, 0, 0, 0);
        if (rc) return rc;
    }
    return 0;
}

static int build(gm_tokenizer *t, const gm_gguf_tokenizer_spec *spec) {
    int byte_level = !strcmp(spec->model, "gpt2");
    int sp = !strcmp(spec->model, "llama");
    if (!byte_level && !sp)
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "GGUF tokenizer model '%s' is not supported (gpt2, llama)",
                       spec->model);
    if (sp && !spec->scores && !spec->merges)
        return gm_fail(GOMLX_ERR_FORMAT, "GGUF llama tokenizer without scores or merges");
    if (spec->n_tokens > (size_t)GM_VOCAB_MAX_ID + 1)
        return gm_fail(GOMLX_ERR_FORMAT, "GGUF tokenizer with %zu tokens (at most %d)", spec->n_tokens,
                       GM_VOCAB_MAX_ID + 1);
    int gemma = sp && is_gemma(spec->arch);
    char **spelled = spell_tokens(spec, byte_level, gemma);
    if (!spelled) return oom();
    int rc = gm_vocab_init(&t->bpe.vocab, spec->n_tokens) ? oom() : 0;
    for (size_t i = 0; i < spec->n_tokens && !rc; i++)
        if (gm_vocab_put(&t->bpe.vocab, spelled[i], strlen(spelled[i]), (int32_t)i)) rc = oom();

    if (!rc && spec->merges) {
        rc = gm_pairmap_init(&t->bpe.merges, spec->n_merges) ? oom() : 0;
        for (size_t i = 0; i < spec->n_merges && !rc; i++) {
            const char *m = spec->merges[i] ? spec->merges[i] : "";
            const char *space = strchr(m, ' ');
            if (!space) rc = gm_fail(GOMLX_ERR_FORMAT, "GGUF merge %zu ('%s') is not a pair", i, m);
            else rc = gm_bpe_add_merge(&t->bpe, m, (size_t)(space - m), space + 1, strlen(space + 1), (uint32_t)i);
        }
    } else if (!rc) {
        float *scores = malloc(spec->n_tokens * sizeof *scores);
        if (!scores) rc = oom();
        /* Gemma's scores do not follow its merge order; token order does. */
        for (size_t i = 0; i < spec->n_tokens && !rc; i++) scores[i] = gemma ? -(float)i : spec->scores[i];
        if (!rc) rc = gm_sp_merges_from_scores(&t->bpe, (const char *const *)spelled, spec->n_tokens, scores);
        free(scores);
    }

    if (!rc && byte_level) {
        const char *pattern = NULL;
        for (size_t i = 0; spec->pre && i < sizeof pre_splits / sizeof pre_splits[0]; i++)
            if (!strcmp(spec->pre, pre_splits[i].name)) pattern = pre_splits[i].pattern;
        rc = gm_pretok_byte_level(&t->pre, pattern);
        if (!rc) rc = gm_decoder_add(&t->dec, (gm_dec_step){.kind = GM_DEC_BYTE_LEVEL});
    } else if (!rc) {
        t->bpe.byte_fallback = 1;
        t->bpe.fuse_unk = 1;
        if (spec->unk_id >= 0 && (size_t)spec->unk_id < spec->n_tokens) t->bpe.unk_id = spec->unk_id;
        else t->bpe.unk_id = gm_vocab_get(&t->bpe.vocab, "<unk>", 5);
        if (gemma) {
            rc = gm_normalizer_add_replace(&t->norm, " ", "\xE2\x96\x81");
            if (!rc) rc = gm_decoder_sentencepiece(&t->dec, 0);
        } else {
            int prefix = spec->add_space_prefix != 0;
            rc = gm_pretok_metaspace(&t->pre, prefix ? GM_PREPEND_FIRST : GM_PREPEND_NEVER, 0);
            if (!rc) rc = gm_decoder_sentencepiece(&t->dec, prefix);
        }
    }
    if (!rc) rc = add_specials(t, spec, spelled, byte_level);
    for (size_t i = 0; i < spec->n_tokens; i++) free(spelled[i]);
    free(spelled);
    if (rc) return rc;

    if (spec->bos_id >= 0 && (size_t)spec->bos_id < spec->n_tokens) t->bos_id = spec->bos_id;
    if (spec->eos_id >= 0 && (size_t)spec->eos_id < spec->n_tokens) t->eos_id = spec->eos_id;
    if (spec->chat_template) {
        size_t n = strlen(spec->chat_template);
        if (!(t->chat_template = malloc(n + 1))) return oom();
        memcpy(t->chat_template, spec->chat_template, n + 1);
    }
    rc = gm_tokenizer_finish(t, NULL, NULL);
    if (rc) return rc;
    /* transformers: a "llama" vocabulary adds BOS unless the file says no;
     * GPT-2 style ones add nothing unless told. */
    int add_bos = spec->add_bos >= 0 ? spec->add_bos : sp;
    if (add_bos && t->bos_id >= 0 && gm_ids_push(&t->prefix, t->bos_id)) return oom();
    if (spec->add_eos > 0 && t->eos_id >= 0 && gm_ids_push(&t->suffix, t->eos_id)) return oom();
    if (spec->eot_id >= 0 && spec->eot_id < t->n_ids) {
        int seen = 0;
        for (size_t k = 0; k < t->stop.n; k++) seen |= t->stop.v[k] == spec->eot_id;
        if (!seen && gm_ids_push(&t->stop, spec->eot_id)) return oom();
    }
    return 0;
}

int gm_tokenizer_from_gguf(const gm_gguf_tokenizer_spec *spec, gm_tokenizer **out) {
    if (!spec || !out) return gm_fail(GOMLX_ERR_INVALID_INPUT, "gm_tokenizer_from_gguf: NULL argument");
    if (!spec->model) return gm_fail(GOMLX_ERR_FORMAT, "GGUF file has no tokenizer.ggml.model");
    if (!spec->tokens || spec->n_tokens == 0 || spec->n_tokens > INT32_MAX)
        return gm_fail(GOMLX_ERR_FORMAT, "GGUF file has no tokenizer.ggml.tokens");
    gm_tokenizer *t = gm_tokenizer_alloc();
    if (!t) return oom();
    int rc = build(t, spec);
    if (rc) {
        gm_fail_context(rc, "GGUF tokenizer");
        gm_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
