/* tokenizer.h - text <-> token ids, from tokenizer.json or GGUF metadata.
 *
 * Models: byte-level BPE (GPT-2 style byte mapping; Llama 3, Qwen2, SmolLM2
 * split patterns through PCRE2) and SentencePiece-style BPE (scores or
 * merges, `▁` for spaces, byte fallback <0xNN>; Llama 2, Mistral, Gemma).
 * Added/special tokens are matched before pre-tokenization.
 * All functions return 0 or a gomlx_status with the message set
 * (util/error.h). A tokenizer is immutable after loading and safe to use
 * from several threads. */
#ifndef GM_TOKENIZER_H
#define GM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct gm_tokenizer gm_tokenizer;

/* Loads tokenizer.json from a folder (or the file itself). Reads
 * tokenizer_config.json beside it when present (bos/eos tokens, add_bos_token,
 * add_eos_token, chat_template). */
int gm_tokenizer_load(const char *path, gm_tokenizer **out);

/* What GGUF metadata says of a tokenizer (tokenizer.ggml.*). Strings are
 * borrowed for the duration of the call. */
typedef struct gm_gguf_tokenizer_spec {
    const char *model;              /* tokenizer.ggml.model: "gpt2" or "llama" */
    const char *pre;                /* tokenizer.ggml.pre: "llama-bpe", "smollm", "qwen2", ... or NULL */
    const char *const *tokens;      /* tokenizer.ggml.tokens */
    size_t n_tokens;
    const float *scores;            /* tokenizer.ggml.scores or NULL */
    const int32_t *token_types;     /* tokenizer.ggml.token_type or NULL (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) */
    const char *const *merges;      /* tokenizer.ggml.merges ("a b") or NULL */
    size_t n_merges;
    int32_t bos_id, eos_id, unk_id, pad_id, eot_id; /* -1 when absent */
    int add_bos, add_eos;           /* -1 when absent (model default) */
    int add_space_prefix;           /* -1 when absent */
    const char *chat_template;      /* or NULL */
    const char *arch;               /* general.architecture or NULL; Gemma vocabularies need it */
} gm_gguf_tokenizer_spec;

int gm_tokenizer_from_gguf(const gm_gguf_tokenizer_spec *spec, gm_tokenizer **out);

/* Opens the tokenizer of a model: a folder with tokenizer.json, a
 * tokenizer.json file, or a .gguf file (its tokenizer.ggml.* metadata). */
int gm_tokenizer_open(const char *path, gm_tokenizer **out);

void gm_tokenizer_free(gm_tokenizer *t);

/* Encodes UTF-8 text. add_special: BOS/EOS as the post-processor (or the
 * add_bos/add_eos flags) would add them. *ids is malloc'ed (free()). */
int gm_tokenizer_encode(const gm_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n_ids);

/* Decodes ids to UTF-8 (invalid bytes become U+FFFD, as HF does).
 * skip_special drops special/control tokens. *text is malloc'ed. */
int gm_tokenizer_decode(const gm_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
                        char **text);
/* The same, with the length (the text may hold U+0000). */
int gm_tokenizer_decode_n(const gm_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special,
                          char **text, size_t *len);

int gm_tokenizer_vocab_size(const gm_tokenizer *t);
/* id of an exact token string (added tokens included), or -1. */
int32_t gm_tokenizer_token_id(const gm_tokenizer *t, const char *token);
/* The token's string as stored in the vocabulary, or NULL. */
const char *gm_tokenizer_token_str(const gm_tokenizer *t, int32_t id);
int gm_tokenizer_is_special(const gm_tokenizer *t, int32_t id);
int32_t gm_tokenizer_bos_id(const gm_tokenizer *t); /* -1 if none */
int32_t gm_tokenizer_eos_id(const gm_tokenizer *t); /* -1 if none */
/* Every id that ends a turn (eos, <|eot_id|>, <|im_end|>, <end_of_turn>, ...)
 * known to the tokenizer; *n set to the count. The array belongs to t. */
const int32_t *gm_tokenizer_stop_ids(const gm_tokenizer *t, size_t *n);
/* Whether encode(add_special=1) prepends BOS. */
int gm_tokenizer_adds_bos(const gm_tokenizer *t);
/* The chat template found with the tokenizer (tokenizer_config.json or
 * GGUF), or NULL. */
const char *gm_tokenizer_chat_template(const gm_tokenizer *t);
/* The token strings named in tokenizer_config.json (or GGUF ids), or NULL. */
const char *gm_tokenizer_bos_token(const gm_tokenizer *t);
const char *gm_tokenizer_eos_token(const gm_tokenizer *t);

/* Streaming detokenizer: push ids one at a time and get the text they
 * complete. Never returns half a UTF-8 character, and handles
 * SentencePiece's leading-space rule the way a full decode would: the
 * concatenation of all pieces equals gm_tokenizer_decode() of all ids. */
typedef struct gm_detok gm_detok;
gm_detok *gm_detok_new(const gm_tokenizer *t, int skip_special);
/* *text points into the detokenizer (valid until the next call). */
int gm_detok_push(gm_detok *d, int32_t id, const char **text, size_t *len);
/* Whatever is still held back (incomplete UTF-8 is emitted as U+FFFD).
 * Meant for the end of a stream; gm_detok_reset starts a new one. */
int gm_detok_flush(gm_detok *d, const char **text, size_t *len);
void gm_detok_reset(gm_detok *d);
void gm_detok_free(gm_detok *d);

#endif
