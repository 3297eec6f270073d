/* cmd_tokenize.c - `gomlx tokenize MODEL [--special]`: one JSON array of ids
 * per input line; `--decode [--skip-special]` turns JSON id arrays back into
 * JSON strings (--stream: the pieces of a streamed decode). Used by the
 * tokenizer tests against Hugging Face. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "text/tokenizer.h"
#include "util/buf.h"
#include "util/error.h"

static void usage(void) {
    fprintf(stderr, "usage: gomlx tokenize MODEL [--special] < text      one JSON array of ids per line\n"
                    "       gomlx tokenize MODEL --decode [--skip-special] < ids   one JSON string per line\n"
                    "       (--stream: a JSON array of the pieces a streaming decode gives)\n"
                    "MODEL: a folder with tokenizer.json, a tokenizer.json file or a .gguf file\n");
}

/* JSON string with only what JSON requires escaped (text is valid UTF-8). */
static void put_json_string(gm_buf *b, const char *s, size_t n) {
    gm_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            gm_buf_append(b, e, 2);
        } else if (c < 0x20) {
            gm_buf_printf(b, "\\u%04x", c);
        } else {
            gm_buf_append(b, s + i, 1);
        }
    }
    gm_buf_append(b, "\"", 1);
}

static int encode_line(const gm_tokenizer *t, const char *line, size_t n, int special, gm_buf *out) {
    int32_t *ids;
    size_t n_ids;
    int rc = gm_tokenizer_encode(t, line, n, special, &ids, &n_ids);
    if (rc) return rc;
    gm_buf_append(out, "[", 1);
    for (size_t i = 0; i < n_ids; i++) gm_buf_printf(out, i ? ",%d" : "%d", ids[i]);
    gm_buf_append(out, "]\n", 2);
    free(ids);
    return 0;
}

/* Streams the ids through gm_detok; prints the pieces as a JSON array. */
static int stream_ids(const gm_tokenizer *t, const int32_t *ids, size_t n, int skip, gm_buf *out) {
    gm_detok *d = gm_detok_new(t, skip);
    if (!d) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    const char *piece;
    size_t len;
    int rc = 0;
    gm_buf_append(out, "[", 1);
    for (size_t i = 0; i <= n && !rc; i++) {
        rc = i < n ? gm_detok_push(d, ids[i], &piece, &len) : gm_detok_flush(d, &piece, &len);
        if (rc) break;
        if (i) gm_buf_append(out, ",", 1);
        put_json_string(out, piece, len);
    }
    gm_buf_append(out, "]\n", 2);
    gm_detok_free(d);
    return rc;
}

static int decode_line(const gm_tokenizer *t, const char *line, size_t n, int skip, int stream,
                       gm_buf *out) {
    cJSON *arr = cJSON_ParseWithLength(line, n);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return gm_fail(GOMLX_ERR_INVALID_INPUT, "expected a JSON array of ids");
    }
    int count = cJSON_GetArraySize(arr);
    int32_t *ids = malloc((size_t)(count ? count : 1) * sizeof *ids);
    if (!ids) {
        cJSON_Delete(arr);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) ids[k++] = cJSON_IsNumber(it) ? (int32_t)it->valuedouble : -1;
    cJSON_Delete(arr);
    if (stream) {
        int rc = stream_ids(t, ids, (size_t)count, skip, out);
        free(ids);
        return rc;
    }
    char *text;
    size_t len;
    int rc = gm_tokenizer_decode_n(t, ids, (size_t)count, skip, &text, &len);
    free(ids);
    if (rc) return rc;
    put_json_string(out, text, len);
    gm_buf_append(out, "\n", 1);
    free(text);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    int special = 0, decode = 0, skip = 0, stream = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--skip-special")) skip = 1;
        else if (!strcmp(argv[i], "--stream")) stream = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' || model) {
            usage();
            return 2;
        } else {
            model = argv[i];
        }
    }
    if (!model) {
        usage();
        return 2;
    }
    gm_tokenizer *t;
    if (gm_tokenizer_open(model, &t)) {
        fprintf(stderr, "gomlx tokenize: %s\n", gm_error_message());
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    gm_buf out = {0};
    while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') n--;
        out.len = 0;
        rc = decode ? decode_line(t, line, (size_t)n, skip, stream, &out) : encode_line(t, line, (size_t)n, special, &out);
        if (!rc) fwrite(out.data, 1, out.len, stdout);
    }
    if (rc) fprintf(stderr, "gomlx tokenize: %s\n", gm_error_message());
    free(line);
    gm_buf_free(&out);
    gm_tokenizer_free(t);
    return rc ? 1 : 0;
}
