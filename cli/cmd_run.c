/* cmd_run.c - `gomlx run`: one answer, streamed, then stats on stderr. */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

static int print_piece(const char *text, size_t len, void *user) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int usage(void) {
    fprintf(stderr,
            "usage: gomlx run [MODEL] [options] \"prompt\"\n"
            "  --max-tokens N   tokens to generate (default 2048)\n"
            "  --temp T         temperature, 0 = greedy (default 0.7)\n"
            "  --top-p P        nucleus sampling (default 0.9)\n"
            "  --top-k K        keep the K likeliest tokens (default off)\n"
            "  --min-p M        drop tokens below M x the top probability (default off)\n"
            "  --seed S         reproducible sampling\n"
            "  --system TEXT    a system message\n"
            "  --stop TEXT      stop string (repeatable)\n"
            "  --raw            no chat template: the prompt is fed as it is\n"
            "  --ids 1,2,3      feed these token ids instead of a prompt\n"
            "  --ignore-eos     keep generating past end-of-sequence tokens\n"
            "  --prefill-chunk N  prompt tokens per prefill step (default 512)\n"
            "  --json           print one JSON object (text, tokens, stats) instead of streaming\n"
            "  --device D       auto, cpu or gpu\n"
            "  --memory-limit B MLX's memory limit (e.g. 6GiB): past it MLX waits for queued\n"
            "                   work to free memory before it allocates more (slower, not an error)\n"
            "  --cache-limit B  freed buffers MLX keeps for reuse (e.g. 256MiB; 0: none)\n"
            "  --no-cpu-kernels use MLX's own CPU quantized matmul\n");
    return 2;
}

int cmd_run(int argc, char **argv) {
    gomlx_generate_params p = gomlx_generate_params_default();
    const char *positional[2] = {0};
    int n_pos = 0, raw = 0, json = 0, cpu_kernels = -1;
    const char *system = NULL, *ids_arg = NULL, *memory_limit = NULL, *cache_limit = NULL;
    const char *stops[16];
    int n_stops = 0;
    gomlx_device device = GOMLX_DEVICE_AUTO;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long iv;
        double fv;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage();
        if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--ignore-eos")) p.ignore_eos = 1;
        else if (!strcmp(a, "--no-cpu-kernels")) cpu_kernels = 0;
        else if (a[0] == '-' && a[1] == '-' && !v) return cli_error("run", "%s needs a value", a);
        else if (!strcmp(a, "--max-tokens")) {
            if (cli_parse_int(v, 0, 1 << 24, &iv)) return cli_error("run", "bad --max-tokens %s", v);
            p.max_tokens = (int)iv, i++;
        } else if (!strcmp(a, "--temp")) {
            if (cli_parse_float(v, &fv) || fv < 0) return cli_error("run", "bad --temp %s", v);
            p.temperature = (float)fv, i++;
        } else if (!strcmp(a, "--top-p")) {
            if (cli_parse_float(v, &fv)) return cli_error("run", "bad --top-p %s", v);
            p.top_p = (float)fv, i++;
        } else if (!strcmp(a, "--top-k")) {
            if (cli_parse_int(v, 0, 1 << 30, &iv)) return cli_error("run", "bad --top-k %s", v);
            p.top_k = (int)iv, i++;
        } else if (!strcmp(a, "--min-p")) {
            if (cli_parse_float(v, &fv)) return cli_error("run", "bad --min-p %s", v);
            p.min_p = (float)fv, i++;
        } else if (!strcmp(a, "--seed")) {
            if (cli_parse_int(v, 0, (1ll << 62), &iv)) return cli_error("run", "bad --seed %s", v);
            p.seed = (uint64_t)iv, p.has_seed = 1, i++;
        } else if (!strcmp(a, "--system")) {
            system = v, i++;
        } else if (!strcmp(a, "--stop")) {
            if (n_stops == 16) return cli_error("run", "at most 16 stop strings");
            stops[n_stops++] = v, i++;
        } else if (!strcmp(a, "--prefill-chunk")) {
            if (cli_parse_int(v, 1, 1 << 20, &iv)) return cli_error("run", "bad --prefill-chunk %s", v);
            p.prefill_chunk = (int)iv, i++;
        } else if (!strcmp(a, "--ids")) {
            ids_arg = v, i++;
        } else if (!strcmp(a, "--memory-limit")) {
            memory_limit = v, i++;
        } else if (!strcmp(a, "--cache-limit")) {
            cache_limit = v, i++;
        } else if (!strcmp(a, "--device")) {
            if (cli_parse_device(v, &device)) return cli_error("run", "bad --device %s (auto, cpu, gpu)", v);
            i++;
        } else if (a[0] == '-' && a[1] == '-') {
            return cli_error("run", "unknown option %s (see --help)", a);
        } else if (n_pos < 2) {
            positional[n_pos++] = a;
        } else {
            return cli_error("run", "too many arguments (quote the prompt)");
        }
    }
    const char *model_path = NULL, *prompt = NULL;
    if (n_pos == 2) model_path = positional[0], prompt = positional[1];
    else if (n_pos == 1 && (ids_arg || cli_is_model_path(positional[0]))) model_path = positional[0];
    else if (n_pos == 1) prompt = positional[0];
    if (!model_path) model_path = cli_default_model();
    if (!prompt && !ids_arg) return cli_error("run", "no prompt given (see --help)");
    p.stop = stops;
    p.n_stop = n_stops;
    if (!json) {
        p.on_token = print_piece;
    }

    if (cli_set_memory_limits("run", memory_limit, cache_limit)) return 1;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (ids_arg && cli_parse_ids(ids_arg, &ids, &n_ids)) return cli_error("run", "bad --ids %s (comma-separated token ids)", ids_arg);
    gomlx_model *model = cli_load(model_path, device, cpu_kernels);
    if (!model) {
        free(ids);
        return 1;
    }
    gomlx_session *session = NULL;
    gomlx_result r;
    gomlx_status st = gomlx_session_new(model, &session);
    if (st == GOMLX_OK) {
        if (ids) {
            st = gomlx_generate_ids(session, ids, n_ids, &p, &r);
        } else if (raw) {
            st = gomlx_generate_text(session, prompt, &p, &r);
        } else {
            gomlx_message msgs[2] = {{GOMLX_ROLE_SYSTEM, system, NULL, 0}, {GOMLX_ROLE_USER, prompt, NULL, 0}};
            st = gomlx_generate(session, system ? msgs : msgs + 1, system ? 2 : 1, &p, &r);
        }
    }
    int code = 0;
    if (st != GOMLX_OK && st != GOMLX_ERR_CANCELLED) {
        fprintf(stderr, "\ngomlx: %s (%s)\n", gomlx_last_error(), gomlx_status_string(st));
        code = 1;
    } else if (json) {
        printf("{\"text\":");
        cli_json_string(stdout, r.text, strlen(r.text));
        printf(",\"tokens\":[");
        for (int i = 0; i < r.n_tokens; i++) printf("%s%d", i ? "," : "", r.tokens[i]);
        const gomlx_stats *s = &r.stats;
        printf("],\"stats\":{\"prompt_tokens\":%d,\"cached_tokens\":%d,\"generated_tokens\":%d,"
               "\"prompt_tps\":%.3f,\"decode_tps\":%.3f,\"ttft_ms\":%.3f,\"total_ms\":%.3f,"
               "\"peak_memory\":%llu,\"stop_reason\":\"%s\"}}\n",
               s->prompt_tokens, s->cached_tokens, s->generated_tokens, s->prompt_tps, s->decode_tps,
               s->ttft_ms, s->total_ms, (unsigned long long)s->peak_memory,
               gomlx_stop_reason_string(s->stop_reason));
        gomlx_result_free(&r);
    } else {
        printf("\n");
        fflush(stdout); /* the answer's newline before the stats on stderr */
        cli_print_stats(stderr, &r.stats);
        gomlx_result_free(&r);
    }
    free(ids);
    gomlx_session_free(session);
    gomlx_model_free(model);
    return code;
}
