/* test_tokenizer.c - tokenizer unit cases that need no assets: tiny GGUF
 * vocabularies (byte-level and SentencePiece-style), streaming decode across
 * split UTF-8, added-token options, NFC, and bad tokenizer.json files. The
 * real vocabularies are checked against Hugging Face in tests/py. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "gomlx.h"
#include "text/tokenizer.h"
#include "util/error.h"

/* GPT-2's byte alphabet, written out here independently of src/text. */
static void byte_char(int b, char out[4]) {
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static int32_t *encode(const gm_tokenizer *t, const char *s, int special, size_t *n) {
    int32_t *ids = NULL;
    int rc = gm_tokenizer_encode(t, s, strlen(s), special, &ids, n);
    CHECK_MSG(rc == 0, "encode '%s': %s", s, gm_error_message());
    return ids;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

#define CHECK_IDS(t, text, special, ...)                                                    \
    do {                                                                                    \
        const int32_t want_[] = {__VA_ARGS__};                                              \
        size_t n_;                                                                          \
        int32_t *got_ = encode(t, text, special, &n_);                                      \
        CHECK_MSG(ids_equal(got_, n_, want_, sizeof want_ / sizeof want_[0]), "ids of '%s'", text); \
        free(got_);                                                                         \
    } while (0)

static char *decode(const gm_tokenizer *t, const int32_t *ids, size_t n, int skip) {
    char *s = NULL;
    int rc = gm_tokenizer_decode(t, ids, n, skip, &s);
    CHECK_MSG(rc == 0, "decode: %s", gm_error_message());
    return s;
}

/* Streams ids one by one and checks the pieces against `want`, then that
 * they add up to the full decode. */
static void check_stream(const gm_tokenizer *t, const int32_t *ids, size_t n, const char *const *want) {
    gm_detok *d = gm_detok_new(t, 0);
    CHECK(d != NULL);
    if (!d) return;
    char all[256] = "";
    for (size_t i = 0; i <= n; i++) {
        const char *p;
        size_t len;
        int rc = i < n ? gm_detok_push(d, ids[i], &p, &len) : gm_detok_flush(d, &p, &len);
        CHECK(rc == 0);
        CHECK_MSG(len == strlen(want[i]) && memcmp(p, want[i], len) == 0, "piece %zu: '%.*s' want '%s'",
                  i, (int)len, p, want[i]);
        strncat(all, p, len);
    }
    char *full = decode(t, ids, n, 0);
    CHECK_STR(all, full);
    free(full);
    gm_detok_free(d);
}

/* ---------------------------------------------------------------- GPT-2 style */

enum { HELLO = 256, WORLD = 264, EOT = 265, IM_END = 266, THINK = 267, N_GPT2 = 268 };

/* 256 byte tokens (id = byte), then the merge results and three specials;
 * "\xC4\xA0" (Ġ) spells the space. */
static gm_tokenizer *tiny_gpt2(void) {
    static char bytes[256][4];
    static const char *more[N_GPT2 - 256] = {"hello", "he", "ll", "hell", "\xC4\xA0w", "or",
                                             "\xC4\xA0wor", "ld", "\xC4\xA0world", "<|endoftext|>",
                                             "<|im_end|>", "<think>"};
    static const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 w", "o r",
                                   "\xC4\xA0w or", "l d", "\xC4\xA0wor ld"};
    const char *tokens[N_GPT2];
    int32_t types[N_GPT2];
    for (int i = 0; i < N_GPT2; i++) {
        if (i < 256) {
            byte_char(i, bytes[i]);
            tokens[i] = bytes[i];
        } else {
            tokens[i] = more[i - 256];
        }
        types[i] = 1;
    }
    types[EOT] = 3;
    types[IM_END] = 3;
    types[THINK] = 4;
    gm_gguf_tokenizer_spec spec = {
        .model = "gpt2", .pre = "smollm", .tokens = tokens, .n_tokens = N_GPT2,
        .token_types = types, .merges = merges, .n_merges = sizeof merges / sizeof merges[0],
        .bos_id = EOT, .eos_id = IM_END, .unk_id = -1, .pad_id = -1, .eot_id = -1,
        .add_bos = -1, .add_eos = -1, .add_space_prefix = -1,
    };
    gm_tokenizer *t = NULL;
    int rc = gm_tokenizer_from_gguf(&spec, &t);
    CHECK_MSG(rc == 0, "from_gguf: %s", gm_error_message());
    return t;
}

static void test_gpt2_encode_decode(void) {
    gm_tokenizer *t = tiny_gpt2();
    if (!t) return;
    CHECK_IDS(t, "hello world", 0, HELLO, WORLD);
    CHECK_IDS(t, "hello world", 1, HELLO, WORLD); /* add_bos absent: GPT-2 style adds nothing */
    CHECK_IDS(t, "hello<|endoftext|> world", 0, HELLO, EOT, WORLD);
    CHECK_IDS(t, "<think>hello", 0, THINK, HELLO);
    CHECK_IDS(t, "hi", 0, 'h', 'i');
    CHECK_IDS(t, "\xC3\xA9", 0, 0xC3, 0xA9);         /* é: two byte tokens */
    CHECK_IDS(t, "a\xFF" "b", 0, 'a', 0xEF, 0xBF, 0xBD, 'b'); /* invalid input byte -> U+FFFD */
    CHECK_IDS(t, "", 1);
    int32_t ids[] = {HELLO, EOT, WORLD, IM_END};
    char *s = decode(t, ids, 4, 0);
    CHECK_STR(s, "hello<|endoftext|> world<|im_end|>");
    free(s);
    s = decode(t, ids, 4, 1);
    CHECK_STR(s, "hello world");
    free(s);
    int32_t bad[] = {HELLO, -5, 99999, WORLD};
    s = decode(t, bad, 4, 0);
    CHECK_STR(s, "hello world"); /* unknown ids are dropped, as HF does */
    free(s);
    CHECK_EQ_INT(gm_tokenizer_vocab_size(t), N_GPT2);
    CHECK_EQ_INT(gm_tokenizer_token_id(t, "hello"), HELLO);
    CHECK_EQ_INT(gm_tokenizer_token_id(t, "nope"), -1);
    CHECK_STR(gm_tokenizer_token_str(t, WORLD), "\xC4\xA0world");
    CHECK(gm_tokenizer_is_special(t, EOT));
    CHECK(!gm_tokenizer_is_special(t, THINK));
    CHECK_EQ_INT(gm_tokenizer_bos_id(t), EOT);
    CHECK_EQ_INT(gm_tokenizer_eos_id(t), IM_END);
    CHECK(!gm_tokenizer_adds_bos(t));
    size_t n_stop;
    const int32_t *stop = gm_tokenizer_stop_ids(t, &n_stop);
    int has_end = 0, has_eot = 0;
    for (size_t i = 0; i < n_stop; i++) {
        has_end |= stop[i] == IM_END;
        has_eot |= stop[i] == EOT;
    }
    CHECK(has_end && has_eot);
    gm_tokenizer_free(t);
}

static void test_gpt2_stream_utf8(void) {
    gm_tokenizer *t = tiny_gpt2();
    if (!t) return;
    /* "é" split over two byte tokens, then a 4-byte emoji in four tokens. */
    int32_t ids[] = {'a', 0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80, HELLO};
    const char *want[] = {"a", "", "\xC3\xA9", "", "", "", "\xF0\x9F\x98\x80", "hello", ""};
    check_stream(t, ids, 8, want);
    /* A lead byte followed by ASCII: U+FFFD once the next byte shows it is broken. */
    int32_t broken[] = {0xC3, 'a', 0xE2, 0x82};
    const char *want2[] = {"", "\xEF\xBF\xBD" "a", "", "", "\xEF\xBF\xBD"};
    check_stream(t, broken, 4, want2);
    /* A lone continuation byte is replaced at once. */
    int32_t cont[] = {0x80, 'b'};
    const char *want3[] = {"\xEF\xBF\xBD", "b", ""};
    check_stream(t, cont, 2, want3);
    gm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- SentencePiece style */

enum { UNK = 0, BOS = 1, EOS = 2, BYTE0 = 3, SP_BASE = 259 };
static const char *sp_words[] = {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d",
                                 "\xE2\x96\x81h", "\xE2\x96\x81he", "\xE2\x96\x81hel", "\xE2\x96\x81hell",
                                 "\xE2\x96\x81hello", "\xE2\x96\x81w", "\xE2\x96\x81wo", "\xE2\x96\x81wor",
                                 "\xE2\x96\x81worl", "\xE2\x96\x81world"};
enum { SP_SPACE = SP_BASE, SP_H, SP_E, SP_L, SP_O, SP_HELLO = SP_BASE + 12, SP_WORLD = SP_BASE + 17,
       N_SP = SP_BASE + 18 };

static gm_tokenizer *tiny_sp(int add_space_prefix) {
    static char bytes[256][8];
    const char *tokens[N_SP];
    float scores[N_SP];
    int32_t types[N_SP];
    tokens[UNK] = "<unk>";
    tokens[BOS] = "<s>";
    tokens[EOS] = "</s>";
    types[UNK] = 2;
    types[BOS] = types[EOS] = 3;
    scores[UNK] = scores[BOS] = scores[EOS] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[BYTE0 + b] = bytes[b];
        types[BYTE0 + b] = 6;
        scores[BYTE0 + b] = 0;
    }
    for (int i = 0; i < N_SP - SP_BASE; i++) {
        tokens[SP_BASE + i] = sp_words[i];
        types[SP_BASE + i] = 1;
        scores[SP_BASE + i] = -(float)i;
    }
    gm_gguf_tokenizer_spec spec = {
        .model = "llama", .tokens = tokens, .n_tokens = N_SP, .scores = scores, .token_types = types,
        .bos_id = BOS, .eos_id = EOS, .unk_id = UNK, .pad_id = -1, .eot_id = -1,
        .add_bos = -1, .add_eos = -1, .add_space_prefix = add_space_prefix,
    };
    gm_tokenizer *t = NULL;
    int rc = gm_tokenizer_from_gguf(&spec, &t);
    CHECK_MSG(rc == 0, "from_gguf: %s", gm_error_message());
    return t;
}

static void test_sentencepiece(void) {
    gm_tokenizer *t = tiny_sp(-1);
    if (!t) return;
    CHECK(gm_tokenizer_adds_bos(t)); /* llama vocabularies add BOS unless told not to */
    CHECK_IDS(t, "hello world", 1, BOS, SP_HELLO, SP_WORLD);
    CHECK_IDS(t, "hello world", 0, SP_HELLO, SP_WORLD);
    /* é is not in the vocabulary: its bytes. */
    CHECK_IDS(t, "h\xC3\xA9", 0, SP_BASE + 8, BYTE0 + 0xC3, BYTE0 + 0xA9);
    /* The prefix space goes on the first piece only, not after a special token. */
    CHECK_IDS(t, "<s>hello", 0, BOS, SP_H, SP_E, SP_L, SP_L, SP_O);
    int32_t ids[] = {SP_HELLO, SP_WORLD};
    char *s = decode(t, ids, 2, 0);
    CHECK_STR(s, "hello world"); /* one leading space stripped */
    free(s);
    int32_t with_bos[] = {BOS, SP_HELLO};
    s = decode(t, with_bos, 2, 0);
    CHECK_STR(s, "<s> hello");
    free(s);
    s = decode(t, with_bos, 2, 1);
    CHECK_STR(s, "hello");
    free(s);
    /* Streamed: the leading space goes only at the very start, bytes wait
     * for their group to end, and a broken group is U+FFFD per byte. */
    int32_t st[] = {SP_HELLO, BYTE0 + 0xC3, BYTE0 + 0xA9, SP_WORLD, BYTE0 + 0xC3, SP_O};
    const char *want[] = {"hello", "", "", "\xC3\xA9 world", "", "\xEF\xBF\xBDo", ""};
    check_stream(t, st, 6, want);
    int32_t bytes_then_end[] = {SP_SPACE, BYTE0 + 0xE2, BYTE0 + 0x82};
    const char *want2[] = {"", "", "", "\xEF\xBF\xBD\xEF\xBF\xBD"};
    check_stream(t, bytes_then_end, 3, want2);
    /* A flush keeps the stream's place; a reset starts a new stream. */
    gm_detok *d = gm_detok_new(t, 0);
    const char *p;
    size_t len;
    CHECK(d && gm_detok_push(d, SP_HELLO, &p, &len) == 0 && len == 5 && !memcmp(p, "hello", 5));
    CHECK(d && gm_detok_flush(d, &p, &len) == 0 && len == 0);
    CHECK(d && gm_detok_push(d, SP_WORLD, &p, &len) == 0 && len == 6 && !memcmp(p, " world", 6));
    if (d) gm_detok_reset(d);
    CHECK(d && gm_detok_push(d, SP_WORLD, &p, &len) == 0 && len == 5 && !memcmp(p, "world", 5));
    gm_detok_free(d);
    gm_tokenizer_free(t);

    t = tiny_sp(0); /* add_space_prefix false: no prefix, no strip */
    if (!t) return;
    CHECK_IDS(t, " hello", 0, SP_HELLO);
    s = decode(t, ids, 2, 0);
    CHECK_STR(s, " hello world");
    free(s);
    gm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- tokenizer.json */

static char tmpdir[256];

static const char *write_json(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void expect_error(const char *json, int status, const char *fragment) {
    const char *path = write_json("tokenizer.json", json);
    gm_tokenizer *t = NULL;
    int rc = gm_tokenizer_load(path, &t);
    CHECK_EQ_INT(rc, status);
    CHECK(t == NULL);
    CHECK_MSG(strstr(gm_error_message(), fragment) != NULL, "message '%s' lacks '%s'", gm_error_message(),
              fragment);
    gm_tokenizer_free(t);
}

static void test_bad_json(void) {
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", GOMLX_ERR_FORMAT, "not valid JSON");
    expect_error("{\"added_tokens\": []}", GOMLX_ERR_FORMAT, "no model");
    expect_error("[1, 2]", GOMLX_ERR_FORMAT, "not an object");
    expect_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", GOMLX_ERR_UNSUPPORTED, "Unigram");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
                 GOMLX_ERR_FORMAT, "'b' is not in the vocabulary");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                 " \"normalizer\": {\"type\": \"Precompiled\"}}",
                 GOMLX_ERR_UNSUPPORTED, "Precompiled");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                 " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
                 GOMLX_ERR_UNSUPPORTED, "regex");
    /* Ids past 0 .. GM_VOCAB_MAX_ID or not whole: refused, not cast (a
     * fuzzed 2147483647 overflowed the id table's growth). */
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2147483647}, \"merges\": []}}",
                 GOMLX_ERR_FORMAT, "token 'b' has no id");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0.5}, \"merges\": []}}", GOMLX_ERR_FORMAT,
                 "token 'a' has no id");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                 " \"post_processor\": {\"type\": \"TemplateProcessing\","
                 "  \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}],"
                 "  \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1e30]}}}}",
                 GOMLX_ERR_FORMAT, "bad ids for <s>");
    gm_tokenizer *t = NULL;
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nowhere", tmpdir);
    CHECK_EQ_INT(gm_tokenizer_load(missing, &t), GOMLX_ERR_NOT_FOUND);
    CHECK_EQ_INT(gm_tokenizer_open(missing, &t), GOMLX_ERR_NOT_FOUND);
    gm_gguf_tokenizer_spec spec = {.model = "t5", .tokens = (const char *const[]){"a"}, .n_tokens = 1};
    CHECK_EQ_INT(gm_tokenizer_from_gguf(&spec, &t), GOMLX_ERR_UNSUPPORTED);
    spec.model = NULL;
    CHECK_EQ_INT(gm_tokenizer_from_gguf(&spec, &t), GOMLX_ERR_FORMAT);
    CHECK(t == NULL);
}

/* A small byte-less BPE: NFC normalizer, template post-processor and added
 * tokens with lstrip/rstrip/single_word. */
static const char *SMALL_JSON =
    "{\"added_tokens\": ["
    " {\"id\": 8, \"content\": \"<s>\", \"special\": true, \"lstrip\": false, \"rstrip\": false,"
    "  \"single_word\": false, \"normalized\": false},"
    " {\"id\": 9, \"content\": \"<m>\", \"special\": true, \"lstrip\": true, \"rstrip\": true,"
    "  \"single_word\": false, \"normalized\": false},"
    " {\"id\": 10, \"content\": \"ab\", \"special\": false, \"lstrip\": false, \"rstrip\": false,"
    "  \"single_word\": true, \"normalized\": true}],"
    " \"normalizer\": {\"type\": \"NFC\"},"
    " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"},"
    " \"post_processor\": {\"type\": \"TemplateProcessing\","
    "  \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],"
    "  \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [8], \"tokens\": [\"<s>\"]}}},"
    " \"decoder\": null,"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"fuse_unk\": true,"
    "  \"vocab\": {\"a\": 0, \"b\": 1, \" \": 2, \"\xC3\xA9\": 3, \"e\": 4, \"?\": 5, \"\xED\x95\x9C\": 6, \"x\": 7},"
    "  \"merges\": []}}";

static void test_json_features(void) {
    char path[600];
    snprintf(path, sizeof path, "%s", write_json("tokenizer.json", SMALL_JSON));
    write_json("tokenizer_config.json", "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"<m>\","
                                        " \"chat_template\": \"{{ messages }}\"}");
    gm_tokenizer *t = NULL;
    int rc = gm_tokenizer_load(tmpdir, &t);
    CHECK_MSG(rc == 0, "load: %s", gm_error_message());
    if (!t) return;
    CHECK(gm_tokenizer_adds_bos(t));
    CHECK_STR(gm_tokenizer_chat_template(t), "{{ messages }}");
    CHECK_STR(gm_tokenizer_bos_token(t), "<s>");
    CHECK_EQ_INT(gm_tokenizer_eos_id(t), 9);
    CHECK_IDS(t, "a b", 1, 8, 0, 2, 1);
    /* NFC: e + U+0301 becomes é; Hangul jamo compose to 한. */
    CHECK_IDS(t, "e\xCC\x81", 0, 3);
    CHECK_IDS(t, "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", 0, 6);
    /* lstrip/rstrip: <m> swallows the spaces around it. */
    CHECK_IDS(t, "a  <m>  b", 0, 0, 9, 1);
    /* single_word: "ab" alone is the added token, inside a word it is not. */
    CHECK_IDS(t, "ab", 0, 10);
    CHECK_IDS(t, "x ab x", 0, 7, 2, 10, 2, 7);
    CHECK_IDS(t, "xab", 0, 7, 0, 1);
    /* Unknown characters fuse into one unknown token. */
    CHECK_IDS(t, "a\xE4\xB8\xAD\xE6\x96\x87" "b", 0, 0, 5, 1);
    /* No decoder: HF joins the tokens with spaces. */
    int32_t ids[] = {0, 1, 8};
    char *s = decode(t, ids, 3, 0);
    CHECK_STR(s, "a b <s>");
    free(s);
    gm_tokenizer_free(t);
    /* The file itself works as the path too. */
    t = NULL;
    rc = gm_tokenizer_open(path, &t);
    CHECK_MSG(rc == 0, "open: %s", gm_error_message());
    gm_tokenizer_free(t);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/gomlx_tok_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_gpt2_encode_decode);
    RUN(test_gpt2_stream_utf8);
    RUN(test_sentencepiece);
    RUN(test_bad_json);
    RUN(test_json_features);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tmpdir);
    remove(path);
    rmdir(tmpdir);
    return check_summary();
}
