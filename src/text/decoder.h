/* decoder.h - the decoders of tokenizer.json (ByteLevel, Replace,
 * ByteFallback, Fuse, Strip, Metaspace, Sequence; none = join with spaces)
 * compiled into a list of steps that detok.c runs as a stream. */
#ifndef GM_DECODER_H
#define GM_DECODER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gm_dec_step {
    enum {
        GM_DEC_BYTE_LEVEL,
        GM_DEC_REPLACE,
        GM_DEC_BYTE_FALLBACK,
        GM_DEC_FUSE,
        GM_DEC_STRIP,
        GM_DEC_METASPACE,
        GM_DEC_JOIN_SPACE
    } kind;
    char *pattern, *content; /* Replace (literal) */
    size_t n_pattern, n_content;
    char ch[8];              /* Strip content / Metaspace replacement (one character) */
    size_t n_ch;
    int start, stop;         /* Strip */
    int drop_first;          /* Metaspace: the first token loses its replacements */
    int fused;               /* an earlier step made the stream one token */
} gm_dec_step;

typedef struct gm_decoder {
    gm_dec_step *steps;
    size_t n;
} gm_decoder;

/* j may be NULL or JSON null (tokens joined with spaces, as HF does). */
int gm_decoder_from_json(const cJSON *j, gm_decoder *out);
int gm_decoder_add(gm_decoder *d, gm_dec_step st); /* takes the strings */
/* The SentencePiece decoder: Replace(▁→space), ByteFallback, Fuse, and
 * Strip(one leading space) when strip_space. */
int gm_decoder_sentencepiece(gm_decoder *d, int strip_space);
void gm_decoder_free(gm_decoder *d);

#endif
