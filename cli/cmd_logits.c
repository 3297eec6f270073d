/* cmd_logits.c - `gomlx logits`: float32 logits at every position for
 * given ids, written as .npy; used by the reference tests. */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

/* NumPy .npy version 1.0: magic, header length, a dict padded to 64 bytes. */
static int write_npy(const char *path, const float *data, size_t rows, int cols) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    char header[128];
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", rows, cols);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t count = rows * (size_t)cols;
    int ok = fwrite(data, sizeof(float), count, f) == count;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL, *out = NULL;
    int chunk = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_arg = argv[++i];
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-' && !model_path) model_path = argv[i];
        else return cli_error("logits", "usage: gomlx logits MODEL --ids 1,2,3 --out FILE.npy [--chunk N]");
    }
    if (!model_path || !ids_arg || !out) return cli_error("logits", "usage: gomlx logits MODEL --ids 1,2,3 --out FILE.npy [--chunk N]");
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_arg, &ids, &n)) return cli_error("logits", "bad --ids %s", ids_arg);
    gomlx_model *model = cli_load(model_path, GOMLX_DEVICE_AUTO, -1);
    if (!model) {
        free(ids);
        return 1;
    }
    float *logits = NULL;
    int vocab = 0, code = 0;
    if (gomlx_logits_chunked(model, ids, n, chunk, &logits, &vocab) != GOMLX_OK) {
        fprintf(stderr, "gomlx: %s\n", gomlx_last_error());
        code = 1;
    } else if (write_npy(out, logits, n, vocab)) {
        fprintf(stderr, "gomlx logits: cannot write %s\n", out);
        code = 1;
    }
    gomlx_free(logits);
    free(ids);
    gomlx_model_free(model);
    return code;
}
