/* test_gemma2.c - Gemma 2 specifics on the tiny fixture (sliding window 8,
 * layers 0 and 2 sliding): the window is really applied (and the test
 * would see it missing), chunked prefill across the window gives
 * transformers' greedy tokens, and broken Gemma checkpoints or configs fail
 * with a clear message. Logit parity at large is tests/py/test_parity.py. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "gomlx.h"
#include "mlx/mx.h"

static char tmpdir[256];
static char fixture[512];   /* the folder under test: dense, then 4-bit */
static char fixture_q4[512];

enum { MAX_PROMPT = 64, MAX_GEN = 64 };
static int32_t prompt[MAX_PROMPT], hf_tokens[MAX_GEN];
static int n_prompt, n_hf;

static int read_ids(const cJSON *root, const char *key, int32_t *out, int cap) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key), *e;
    int n = 0;
    cJSON_ArrayForEach(e, a) if (n < cap) out[n++] = (int32_t)e->valuedouble;
    return n;
}

/* The prompt and transformers' 40 greedy tokens from reference/greedy.json. */
static int load_reference(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/reference/greedy.json", fixture);
    char *text = check_read_text(p);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) return -1;
    n_prompt = read_ids(root, "prompt_ids", prompt, MAX_PROMPT);
    n_hf = read_ids(root, "hf_tokens", hf_tokens, MAX_GEN);
    cJSON_Delete(root);
    return n_prompt > 0 && n_hf > 0 ? 0 : -1;
}

/* Folder `dir` with the weights of model folder `from` (minus `drop`) and
 * its config after edit(config) (edit may be NULL). */
typedef struct {
    const char *drop;
    const char **names;
    mx_array *arrays;
    int n;
} tensor_copy;

static int collect(const char *name, mx_array a, void *u) {
    tensor_copy *c = u;
    if ((c->drop && !strcmp(name, c->drop)) || c->n >= 512) {
        mx_free(a);
        return 0;
    }
    c->names[c->n] = strdup(name);
    c->arrays[c->n++] = a;
    return 0;
}

static void make_variant(const char *from, const char *dir, const char *drop, void (*edit)(cJSON *cfg)) {
    char src[600], dst[600];
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/config.json", from);
    char *text = check_read_text(src);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(cfg != NULL);
    if (!cfg) return;
    if (edit) edit(cfg);
    char *out = cJSON_Print(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    check_write_text(dst, out);
    free(out);
    cJSON_Delete(cfg);

    const char *names[512];
    mx_array arrays[512];
    tensor_copy c = {drop, names, arrays, 0};
    snprintf(src, sizeof src, "%s/model.safetensors", from);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    CHECK_EQ_INT(mx_load_safetensors(src, collect, NULL, &c), 0);
    CHECK_EQ_INT(mx_save_safetensors(dst, names, arrays, c.n), 0);
    for (int i = 0; i < c.n; i++) {
        free((void *)names[i]);
        mx_free(arrays[i]);
    }
}

static void set_item(cJSON *cfg, const char *key, cJSON *value) {
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, key);
    cJSON_AddItemToObject(cfg, key, value);
}

static gomlx_status try_load(const char *path) {
    gomlx_model *m = NULL;
    gomlx_status st = gomlx_model_load(path, NULL, &m);
    if (st == GOMLX_OK) fprintf(stderr, "  unexpectedly loaded %s\n", path);
    gomlx_model_free(m);
    return st;
}

/* On the CPU: MLX's CUDA backend multiplies float32 matrices in TF32
 * (relative error ~3e-4 on an H100), which the float32 tolerances below
 * cannot hold. */
static float *logits_of(const char *path, int *vocab) {
    gomlx_model *m = NULL;
    float *out = NULL;
    gomlx_load_params lp = gomlx_load_params_default();
    lp.device = GOMLX_DEVICE_CPU;
    CHECK_EQ_INT(gomlx_model_load(path, &lp, &m), GOMLX_OK);
    if (m) CHECK_EQ_INT(gomlx_logits(m, prompt, (size_t)n_prompt, &out, vocab), GOMLX_OK);
    gomlx_model_free(m);
    return out;
}

static double max_abs_rows(const float *a, const float *b, int from, int to, int vocab) {
    double d = 0;
    for (size_t i = (size_t)from * vocab; i < (size_t)to * vocab; i++)
        if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
    return d;
}

static void no_window(cJSON *cfg) { set_item(cfg, "sliding_window", cJSON_CreateNull()); }

/* Without the window every row past the window changes, and the engine then
 * reproduces mlx-lm, whose gemma2 has no window: so the reference logits
 * tell a windowed engine from one that forgot the window. Dense within
 * 1e-4 of both references, 4-bit within 1e-3 (same packed weights). */
static void window_matters(const char *model, const char *hf_name, double tol) {
    char d[300], p[600];
    snprintf(d, sizeof d, "%s/nowindow-%s", tmpdir, strrchr(model, '/') + 1);
    make_variant(model, d, NULL, no_window);
    int vocab = 0, vocab2 = 0, rows = 0, cols = 0, rows2 = 0, cols2 = 0;
    float *win = logits_of(model, &vocab), *full = logits_of(d, &vocab2);
    snprintf(p, sizeof p, "%s/reference/%s", model, hf_name);
    float *hf = check_read_npy(p, &rows, &cols);
    snprintf(p, sizeof p, "%s/reference/logits_mlx.npy", model);
    float *mlx = check_read_npy(p, &rows2, &cols2);
    CHECK(win && full && hf && mlx);
    CHECK(n_prompt > 8 + 8); /* crosses the window of 8 well */
    if (win && full && hf && mlx && rows == n_prompt && cols == vocab && rows2 == rows && cols2 == cols) {
        double within = max_abs_rows(win, full, 0, 8, vocab), past = max_abs_rows(win, full, 8, n_prompt, vocab);
        CHECK_MSG(within == 0, "rows inside the window differ by %g", within);
        CHECK_MSG(past > 1.0, "the window changes rows past it by only %g", past);
        double d_hf = max_abs_rows(win, hf, 0, n_prompt, vocab);
        double d_mlx = max_abs_rows(full, mlx, 0, n_prompt, vocab);
        CHECK_MSG(d_hf <= tol, "%s windowed vs transformers: max abs %g", model, d_hf);
        CHECK_MSG(d_mlx <= tol, "%s no window vs mlx-lm: max abs %g", model, d_mlx);
        CHECK_MSG(max_abs_rows(win, mlx, 8, n_prompt, vocab) > 1.0, "the reference cannot see the window");
    } else {
        CHECK_MSG(0, "reference shapes [%d, %d] / [%d, %d], engine vocab %d, prompt %d", rows, cols,
                  rows2, cols2, vocab, n_prompt);
    }
    gomlx_free(win);
    gomlx_free(full);
    free(hf);
    free(mlx);
}

static void test_window_matters(void) { window_matters(fixture, "logits_hf.npy", 1e-4); }
static void test_window_matters_q4(void) { window_matters(fixture_q4, "logits_hf_dequant.npy", 1e-3); }

/* Prefill in chunks of 5 (chunk edges fall inside and across the window of
 * 8) and in one piece; both must decode transformers' 40 greedy tokens. */
static void test_chunked_prefill_greedy(void) {
    gomlx_model *m = NULL;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    if (!m) return;
    int chunks[2] = {5, 512};
    for (int c = 0; c < 2; c++) {
        gomlx_session *s = NULL;
        CHECK_EQ_INT(gomlx_session_new(m, &s), GOMLX_OK);
        gomlx_generate_params p = gomlx_generate_params_default();
        p.temperature = 0;
        p.max_tokens = n_hf;
        p.ignore_eos = 1;
        p.prefill_chunk = chunks[c];
        gomlx_result r = {0};
        CHECK_EQ_INT(gomlx_generate_ids(s, prompt, (size_t)n_prompt, &p, &r), GOMLX_OK);
        CHECK_EQ_INT(r.n_tokens, n_hf);
        int first_diff = -1;
        for (int i = 0; i < r.n_tokens && i < n_hf; i++)
            if (r.tokens[i] != hf_tokens[i] && first_diff < 0) first_diff = i;
        CHECK_MSG(first_diff < 0, "chunk %d: token %d is %d, transformers says %d", chunks[c],
                  first_diff, first_diff >= 0 ? r.tokens[first_diff] : 0,
                  first_diff >= 0 ? hf_tokens[first_diff] : 0);
        gomlx_result_free(&r);
        gomlx_session_free(s);
    }
    gomlx_model_free(m);
}

static void test_missing_norm(void) {
    static const char *names[] = {"model.layers.0.pre_feedforward_layernorm.weight",
                                  "model.layers.3.post_attention_layernorm.weight",
                                  "model.layers.1.post_feedforward_layernorm.weight"};
    for (int i = 0; i < 3; i++) {
        char d[300];
        snprintf(d, sizeof d, "%s/missing%d", tmpdir, i);
        make_variant(fixture, d, names[i], NULL);
        CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
        CHECK_MSG(strstr(gomlx_last_error(), names[i]) != NULL, "\"%s\" does not name %s",
                  gomlx_last_error(), names[i]);
    }
}

static void bad_kv_heads(cJSON *cfg) { set_item(cfg, "num_key_value_heads", cJSON_CreateNumber(3)); }
static void bad_layer_types(cJSON *cfg) {
    const char *t[4] = {"full_attention", "sliding_attention", "sliding_attention", "full_attention"};
    set_item(cfg, "layer_types", cJSON_CreateStringArray(t, 4));
}
static void short_layer_types(cJSON *cfg) {
    const char *t[2] = {"sliding_attention", "full_attention"};
    set_item(cfg, "layer_types", cJSON_CreateStringArray(t, 2));
}
static void bad_softcap(cJSON *cfg) { set_item(cfg, "attn_logit_softcapping", cJSON_CreateString("50")); }
static void bad_scalar(cJSON *cfg) { set_item(cfg, "query_pre_attn_scalar", cJSON_CreateNumber(0)); }
static void bad_activation(cJSON *cfg) { set_item(cfg, "hidden_activation", cJSON_CreateString("relu")); }

static void test_bad_configs(void) {
    struct {
        void (*edit)(cJSON *);
        gomlx_status want;
        const char *says;
    } cases[] = {
        {bad_kv_heads, GOMLX_ERR_FORMAT, "num_key_value_heads"},
        {bad_layer_types, GOMLX_ERR_UNSUPPORTED, "layer_types"},
        {short_layer_types, GOMLX_ERR_FORMAT, "layer_types"},
        {bad_softcap, GOMLX_ERR_FORMAT, "attn_logit_softcapping"},
        {bad_scalar, GOMLX_ERR_FORMAT, "query_pre_attn_scalar"},
        {bad_activation, GOMLX_ERR_UNSUPPORTED, "relu"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char d[300];
        snprintf(d, sizeof d, "%s/config%zu", tmpdir, i);
        make_variant(fixture, d, NULL, cases[i].edit);
        CHECK_EQ_INT(try_load(d), cases[i].want);
        CHECK_MSG(strstr(gomlx_last_error(), cases[i].says) != NULL, "case %zu: \"%s\" does not mention %s",
                  i, gomlx_last_error(), cases[i].says);
    }
}

int main(void) {
    snprintf(fixture, sizeof fixture, "%s/testdata/models/gemma2-tiny", check_root());
    snprintf(fixture_q4, sizeof fixture_q4, "%s/testdata/models/gemma2-tiny-q4", check_root());
    if (load_reference()) {
        fprintf(stderr, "cannot read %s/reference/greedy.json (generate it with tools/make_fixtures.py)\n", fixture);
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gomlx-test-gemma2-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_window_matters);
    RUN(test_window_matters_q4);
    RUN(test_chunked_prefill_greedy);
    RUN(test_missing_norm);
    RUN(test_bad_configs);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
