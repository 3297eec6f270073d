/* common.c - shared CLI helpers. */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

const char *cli_default_model(void) {
    static char path[PATH_MAX];
    const char *env = getenv("GOMLX_MODEL");
    if (env && *env) return env;
    if (exists(DEFAULT_MODEL_FILE)) return DEFAULT_MODEL_FILE;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        /* build/gomlx → <repo>/models/... ; walk up a few levels */
        for (int up = 0; up < 3; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = 0;
            int n = snprintf(path, sizeof path, "%s/%s", exe, DEFAULT_MODEL_FILE);
            if (n > 0 && (size_t)n < sizeof path && exists(path)) return path;
        }
    }
    return NULL;
}

int cli_is_model_path(const char *arg) {
    struct stat st;
    if (stat(arg, &st) != 0) return 0;
    if (S_ISDIR(st.st_mode)) return 1;
    size_t len = strlen(arg);
    return len > 5 && !strcmp(arg + len - 5, ".gguf");
}

static void progress_bar(float fraction, const char *message, void *user) {
    (void)user;
    if (!isatty(2)) return;
    int width = 30, filled = (int)(fraction * (float)width + 0.5f);
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++) fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%% %-40.40s", (int)(fraction * 100.0f + 0.5f), message);
    if (fraction >= 1.0f) fprintf(stderr, "\r%*s\r", width + 50, "");
    fflush(stderr);
}

gomlx_model *cli_load(const char *path, gomlx_device device, int cpu_kernels) {
    if (!path) {
        fprintf(stderr, "gomlx: no model given and the default model (%s) is missing; run `make setup`\n", DEFAULT_MODEL_FILE);
        return NULL;
    }
    gomlx_load_params p = gomlx_load_params_default();
    p.progress = progress_bar;
    p.device = device;
    p.cpu_kernels = cpu_kernels;
    gomlx_model *m = NULL;
    gomlx_status st = gomlx_model_load(path, &p, &m);
    if (st != GOMLX_OK) {
        if (isatty(2)) fprintf(stderr, "\r%80s\r", "");
        fprintf(stderr, "gomlx: %s (%s)\n", gomlx_last_error(), gomlx_status_string(st));
        return NULL;
    }
    return m;
}

int cli_parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16, count = 0;
    int32_t *out = malloc(cap * sizeof *out);
    if (!out) return -1;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            free(out);
            return -1;
        }
        if (count == cap) {
            int32_t *grown = realloc(out, (cap *= 2) * sizeof *out);
            if (!grown) {
                free(out);
                return -1;
            }
            out = grown;
        }
        out[count++] = (int32_t)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    if (!count) {
        free(out);
        return -1;
    }
    *ids = out;
    *n = count;
    return 0;
}

int cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno) return -1;
    *out = v;
    return 0;
}

void cli_json_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

void cli_print_stats(FILE *f, const gomlx_stats *st) {
    fprintf(f, "[prompt %d tok (%d cached), %.1f tok/s | generated %d tok, %.1f tok/s | first token %.0f ms | total %.0f ms | peak %.1f MB | stop: %s]\n",
            st->prompt_tokens, st->cached_tokens, st->prompt_tps, st->generated_tokens, st->decode_tps,
            st->ttft_ms, st->total_ms, (double)st->peak_memory / 1e6, gomlx_stop_reason_string(st->stop_reason));
}

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gomlx %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_parse_device(const char *s, gomlx_device *out) {
    if (!strcmp(s, "auto")) *out = GOMLX_DEVICE_AUTO;
    else if (!strcmp(s, "cpu")) *out = GOMLX_DEVICE_CPU;
    else if (!strcmp(s, "gpu")) *out = GOMLX_DEVICE_GPU;
    else return -1;
    return 0;
}

int cli_parse_bytes(const char *s, uint64_t *out) {
    static const struct {
        const char *unit;
        uint64_t scale;
    } units[] = {{"", 1},
                 {"K", 1ull << 10}, {"KiB", 1ull << 10}, {"KB", 1000ull},
                 {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"MB", 1000000ull},
                 {"G", 1ull << 30}, {"GiB", 1ull << 30}, {"GB", 1000000000ull},
                 {"T", 1ull << 40}, {"TiB", 1ull << 40}, {"TB", 1000000000000ull}};
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcmp(end, units[i].unit)) continue;
        if (v > UINT64_MAX / units[i].scale) return -1;
        *out = (uint64_t)v * units[i].scale;
        return 0;
    }
    return -1;
}

int cli_set_memory_limits(const char *cmd, const char *memory, const char *cache) {
    uint64_t bytes;
    if (memory) {
        if (cli_parse_bytes(memory, &bytes)) return cli_error(cmd, "bad --memory-limit %s (e.g. 6GiB)", memory);
        if (gomlx_set_memory_limit(bytes, NULL) != GOMLX_OK) return cli_error(cmd, "--memory-limit: %s", gomlx_last_error());
    }
    if (cache) {
        if (cli_parse_bytes(cache, &bytes)) return cli_error(cmd, "bad --cache-limit %s (e.g. 512MiB, 0)", cache);
        gomlx_set_cache_limit(bytes, NULL);
    }
    return 0;
}
