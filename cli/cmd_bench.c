/* cmd_bench.c - `gomlx bench`: load time, prompt tok/s for a long prompt,
 * decode tok/s at two lengths with EOS ignored, time to first token and
 * peak memory, as a table or JSON. tools/bench.py runs it side by side
 * with mlx-lm. */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "kernels/pool.h"
#include "kernels/read_probe.h"
#include "mlx/mx.h"
#include "util/clock.h"

typedef struct {
    int gen;
    double prompt_tps, decode_tps, ttft_ms, total_ms, host_ms, dispatch_ms, wait_ms;
    uint64_t peak, expected;
    double roof_pct; /* decode as % of the bandwidth roofline; < 0: not measured */
} bench_row;

/* What a generation needs at its widest point, by hand: the weights, the KV
 * cache at the capacity the engine allocates (room for the text and one
 * more token, in steps of 256), and the activations alive in a prefill
 * chunk's MLP (the residual stream, its norm, gate|up and the activation:
 * T x (2 hidden + 3 intermediate) values), plus two rows of float32
 * logits. The peak should stay within 10% of it. */
static uint64_t expected_memory(const gomlx_model_info *info, int prompt, int gen) {
    uint64_t es = !strcmp(info->dtype, "float32") ? 4 : 2;
    uint64_t cap = (uint64_t)((prompt + gen) / 256 + 1) * 256;
    uint64_t t = prompt < 512 ? (uint64_t)prompt : 512; /* the prefill chunk */
    uint64_t act = t * (2 * (uint64_t)info->hidden_size + 3 * (uint64_t)info->intermediate_size) * es;
    return info->weight_bytes + info->kv_bytes_per_token * cap + act + 2 * 4 * (uint64_t)info->vocab_size;
}

static int usage(void) {
    fprintf(stderr, "usage: gomlx bench [MODEL] [--prompt-tokens N] [--gen 32,128] [--runs R] [--json] [--device cpu|gpu] [--no-cpu-kernels] [--no-bandwidth]\n");
    return 2;
}

/* The bandwidth roofline's denominator: how fast the device the model ran
 * on reads memory, measured after the runs (the probe's buffer would count
 * in their peak). 0 with *what saying why when it cannot be measured;
 * otherwise *what says how it was. */
static double read_bandwidth_gbps(const char *device, char *what, size_t what_len) {
    if (!strcmp(device, "cpu")) {
        int threads = gm_pool_threads();
        double gbps = gm_read_probe_gbps((size_t)512 << 20, threads, 5);
        if (gbps > 0) snprintf(what, what_len, "cpu, %d threads streaming 512 MiB, best of 5", threads);
        else snprintf(what, what_len, "cpu probe failed: 512 MiB could not be allocated");
        return gbps;
    }
    if (!mx_cuda_available()) {
        snprintf(what, what_len, "no probe for this GPU backend");
        return 0;
    }
    char err[256];
    double gbps = mx_cuda_read_gbps((size_t)1 << 30, 5, err, sizeof err);
    mx_clear_cache();
    if (gbps > 0) snprintf(what, what_len, "gpu, a streaming read kernel over 1 GiB, 24 launches a pass, best of 5");
    else snprintf(what, what_len, "gpu probe failed: %s", err);
    return gbps;
}

/* Median of the runs, so one slow outlier on a shared machine does not
 * decide the result. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *gen_arg = "32,128";
    int prompt_tokens = 512, runs = 3, json = 0, cpu_kernels = -1, bandwidth = 1;
    gomlx_device device = GOMLX_DEVICE_AUTO;
    for (int i = 0; i < argc; i++) {
        long long v;
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-cpu-kernels")) cpu_kernels = 0;
        else if (!strcmp(a, "--no-bandwidth")) bandwidth = 0;
        else if (!strcmp(a, "--prompt-tokens") && i + 1 < argc && !cli_parse_int(argv[i + 1], 1, 1 << 20, &v)) prompt_tokens = (int)v, i++;
        else if (!strcmp(a, "--runs") && i + 1 < argc && !cli_parse_int(argv[i + 1], 1, 100, &v)) runs = (int)v, i++;
        else if (!strcmp(a, "--gen") && i + 1 < argc) gen_arg = argv[++i];
        else if (!strcmp(a, "--device") && i + 1 < argc && !cli_parse_device(argv[i + 1], &device)) i++;
        else if (a[0] != '-' && !model_path) model_path = a;
        else return usage();
    }
    int32_t *gens;
    size_t n_gens;
    if (cli_parse_ids(gen_arg, &gens, &n_gens)) return cli_error("bench", "bad --gen %s", gen_arg);
    if (!model_path) model_path = cli_default_model();

    double t0 = gm_now_ms();
    gomlx_model *model = cli_load(model_path, device, cpu_kernels);
    if (!model) {
        free(gens);
        return 1;
    }
    double load_ms = gm_now_ms() - t0;
    gomlx_model_info info;
    gomlx_model_get_info(model, &info);

    /* A fixed pseudo-random prompt: speed does not depend on the ids. */
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)prompt_tokens);
    uint64_t x = 0x243F6A8885A308D3ull;
    int lo = info.vocab_size > 1000 ? 100 : 0, span = info.vocab_size - 2 * lo;
    for (int i = 0; i < prompt_tokens; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = lo + (int32_t)(x % (uint64_t)span);
    }
    bench_row *rows = calloc(n_gens, sizeof *rows);
    int code = 0;
    for (size_t g = 0; g < n_gens && !code; g++) {
        double pt[100], dt[100], tt[100], tot[100], hm[100], dm[100], wm[100];
        uint64_t peak = 0;
        for (int r = -1; r < runs && !code; r++) { /* run -1 warms up */
            gomlx_session *s;
            gomlx_result res;
            gomlx_generate_params p = gomlx_generate_params_default();
            p.temperature = 0;
            p.max_tokens = gens[g];
            p.ignore_eos = 1;
            p.prefill_chunk = 2048;
            gomlx_reset_peak_memory();
            if (gomlx_session_new(model, &s) != GOMLX_OK ||
                gomlx_generate_ids(s, prompt, (size_t)prompt_tokens, &p, &res) != GOMLX_OK) {
                fprintf(stderr, "gomlx bench: %s\n", gomlx_last_error());
                code = 1;
                break;
            }
            if (r >= 0) {
                pt[r] = res.stats.prompt_tps;
                dt[r] = res.stats.decode_tps;
                tt[r] = res.stats.ttft_ms;
                tot[r] = res.stats.total_ms;
                hm[r] = res.stats.host_ms_per_token;
                dm[r] = res.stats.dispatch_ms_per_token;
                wm[r] = res.stats.wait_ms_per_token;
                if (res.stats.peak_memory > peak) peak = res.stats.peak_memory;
            }
            gomlx_result_free(&res);
            gomlx_session_free(s);
        }
        if (code) break;
        rows[g] = (bench_row){gens[g], median(pt, runs), median(dt, runs), median(tt, runs), median(tot, runs), median(hm, runs),
                             median(dm, runs), median(wm, runs), peak,
                             expected_memory(&info, prompt_tokens, gens[g]), -1};
    }
    /* Roofline: the decode rate if a token cost only reading its weights
     * at the measured bandwidth. */
    char probe_what[320] = "not measured (--no-bandwidth)";
    double gbps = !code && bandwidth ? read_bandwidth_gbps(info.device, probe_what, sizeof probe_what) : 0;
    double roof_tps = gbps > 0 && info.step_weight_bytes ? gbps * 1e9 / (double)info.step_weight_bytes : 0;
    for (size_t g = 0; g < n_gens && !code; g++) rows[g].roof_pct = roof_tps > 0 ? 100 * rows[g].decode_tps / roof_tps : -1;
    if (!code && json) {
        printf("{\"model\":");
        cli_json_string(stdout, info.name, strlen(info.name));
        printf(",\"architecture\":\"%s\",\"format\":\"%s\",\"device\":\"%s\",\"quantization\":", info.architecture, info.format, info.device);
        cli_json_string(stdout, info.quantization, strlen(info.quantization));
        /* MLX's command batch size when set, as a number (docs/GPU.md) */
        const char *ops_env = getenv("MLX_MAX_OPS_PER_BUFFER");
        char ops[16] = "null";
        if (ops_env && atoi(ops_env) > 0) snprintf(ops, sizeof ops, "%d", atoi(ops_env));
        /* which of our CUDA kernels ran (GPU; "not used yet" elsewhere) */
        printf(",\"cuda_layer\":");
        cli_json_string(stdout, mx_cuda_layer_status(), strlen(mx_cuda_layer_status()));
        printf(",\"cuda_qmv\":");
        cli_json_string(stdout, mx_cuda_qmv_status(), strlen(mx_cuda_qmv_status()));
        printf(",\"read_probe\":");
        cli_json_string(stdout, probe_what, strlen(probe_what));
        if (gbps > 0) printf(",\"read_gbps\":%.2f,\"roofline_tps\":%.2f", gbps, roof_tps);
        else printf(",\"read_gbps\":null,\"roofline_tps\":null");
        printf(",\"step_weight_bytes\":%llu", (unsigned long long)info.step_weight_bytes);
        printf(",\"weight_bytes\":%llu,\"kv_bytes_per_token\":%llu,\"load_ms\":%.1f,\"prompt_tokens\":%d,\"runs\":%d,\"mlx\":\"%s\",\"mlx_max_ops_per_buffer\":%s,\"results\":[",
               (unsigned long long)info.weight_bytes, (unsigned long long)info.kv_bytes_per_token, load_ms,
               prompt_tokens, runs, gomlx_mlx_version(), ops);
        for (size_t g = 0; g < n_gens; g++) {
            char roof[32] = "null";
            if (rows[g].roof_pct >= 0) snprintf(roof, sizeof roof, "%.2f", rows[g].roof_pct);
            printf("%s{\"gen\":%d,\"roofline_pct\":%s,\"prompt_tps\":%.2f,\"decode_tps\":%.2f,\"ttft_ms\":%.2f,\"total_ms\":%.2f,\"host_ms_per_token\":%.4f,\"dispatch_ms_per_token\":%.4f,\"wait_ms_per_token\":%.4f,\"peak_memory\":%llu,\"expected_memory\":%llu}",
                   g ? "," : "", rows[g].gen, roof, rows[g].prompt_tps, rows[g].decode_tps, rows[g].ttft_ms,
                   rows[g].total_ms, rows[g].host_ms, rows[g].dispatch_ms, rows[g].wait_ms, (unsigned long long)rows[g].peak,
                   (unsigned long long)rows[g].expected);
        }
        printf("]}\n");
    } else if (!code) {
        printf("model %s (%s, %s, %s), weights %.1f MiB, load %.0f ms, MLX %s, median of %d runs\n",
               info.name, info.architecture, info.quantization, info.device,
               (double)info.weight_bytes / 1048576.0, load_ms, gomlx_mlx_version(), runs);
        printf("%-8s %12s %12s %7s %10s %14s %12s %10s %12s %12s %10s\n", "gen", "prompt tok/s", "decode tok/s", "%roof",
               "TTFT ms", "host ms/token", "dispatch ms", "wait ms", "peak MiB", "needed MiB", "peak/need");
        for (size_t g = 0; g < n_gens; g++) {
            char roof[16] = "-";
            if (rows[g].roof_pct >= 0) snprintf(roof, sizeof roof, "%.1f", rows[g].roof_pct);
            printf("%-8d %12.1f %12.1f %7s %10.1f %14.3f %12.3f %10.3f %12.1f %12.1f %10.2f\n", rows[g].gen,
                   rows[g].prompt_tps, rows[g].decode_tps, roof, rows[g].ttft_ms, rows[g].host_ms, rows[g].dispatch_ms,
                   rows[g].wait_ms, (double)rows[g].peak / 1048576.0, (double)rows[g].expected / 1048576.0,
                   (double)rows[g].peak / (double)rows[g].expected);
        }
        if (roof_tps > 0)
            printf("roofline: a token reads %.1f MiB of weights; memory reads %.1f GB/s (%s): %.1f tok/s\n",
                   (double)info.step_weight_bytes / 1048576.0, gbps, probe_what, roof_tps);
        else
            printf("roofline: a token reads %.1f MiB of weights; bandwidth %s\n",
                   (double)info.step_weight_bytes / 1048576.0, probe_what);
        if (!strcmp(info.device, "gpu") && mx_cuda_available())
            printf("our CUDA kernels: layers %s; mat-vec %s\n", mx_cuda_layer_status(), mx_cuda_qmv_status());
        printf("(prompt of %d tokens, EOS ignored, greedy; host = building the next step, dispatch = MLX handing it to\n"
               " the device, wait = blocked on the token; needed = weights + KV cache + prefill activations)\n",
               prompt_tokens);
    }
    free(rows);
    free(prompt);
    free(gens);
    gomlx_model_free(model);
    return code;
}
