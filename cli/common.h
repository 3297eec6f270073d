/* common.h - helpers shared by the CLI subcommands: finding the default
 * model, loading with a progress bar, parsing numbers and id lists, JSON
 * string output. */
#ifndef GOMLX_CLI_COMMON_H
#define GOMLX_CLI_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gomlx.h"

#define DEFAULT_MODEL_FILE "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* GOMLX_MODEL, else ./models/..., else <repo>/models/... next to the
 * binary's build folder. Returns a static buffer or NULL. */
const char *cli_default_model(void);
/* 1 when arg names an existing folder or .gguf file. */
int cli_is_model_path(const char *arg);
/* Loads with a progress bar on stderr (when it is a terminal); prints a
 * one-line error and returns NULL on failure. */
gomlx_model *cli_load(const char *path, gomlx_device device, int cpu_kernels);
int cli_parse_ids(const char *s, int32_t **ids, size_t *n);
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int cli_parse_float(const char *s, double *out);
void cli_json_string(FILE *f, const char *s, size_t len);
void cli_print_stats(FILE *f, const gomlx_stats *st);
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "--device cpu|gpu|auto". */
int cli_parse_device(const char *s, gomlx_device *out);
/* Parses a byte count: digits with an optional unit, K/M/G/T or
 * KiB/MiB/GiB/TiB (powers of 1024) or KB/MB/GB/TB (powers of 1000). */
int cli_parse_bytes(const char *s, uint64_t *out);
/* --memory-limit and --cache-limit (NULL: left as they are): parsed and
 * set; a one-line error and 1 on failure. */
int cli_set_memory_limits(const char *cmd, const char *memory, const char *cache);

#endif
