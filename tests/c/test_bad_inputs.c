/* test_bad_inputs.c - every kind of broken model or request gives a clear
 * error with the right status, and the process stays healthy (these also
 * run under AddressSanitizer, so a leak or overflow fails them). */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "gomlx.h"
#include "mlx/mx.h"

static char tmpdir[256];
static char fixture[512];

static void write_text(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    check_write_text(p, text);
}

/* A fresh copy of the tiny Llama fixture's config in its own folder. */
static void make_model_dir(const char *dir, const char *config_text) {
    mkdir(dir, 0755);
    write_text(dir, "config.json", config_text);
}

typedef struct {
    const char *drop;       /* tensor to leave out */
    const char *reshape;    /* tensor to save with a wrong shape */
    const char **names;
    mx_array *arrays;
    int n;
} tensor_edit;

static int collect(const char *name, mx_array a, void *u) {
    tensor_edit *e = u;
    if (e->drop && !strcmp(name, e->drop)) {
        mx_free(a);
        return 0;
    }
    if (e->reshape && !strcmp(name, e->reshape)) {
        mx_array cut = mx_keep(mx_slice(a, (int[]){0}, (int[]){mx_dim(a, 0) - 1}, NULL, 1));
        mx_free(a);
        a = cut;
    }
    e->names[e->n] = strdup(name);
    e->arrays[e->n++] = a;
    return 0;
}

static void write_weights(const char *dir, const char *drop, const char *reshape) {
    const char *names[512];
    mx_array arrays[512];
    tensor_edit e = {drop, reshape, names, arrays, 0};
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/model.safetensors", fixture);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    CHECK_EQ_INT(mx_load_safetensors(src, collect, NULL, &e), 0);
    CHECK_EQ_INT(mx_save_safetensors(dst, names, arrays, e.n), 0);
    for (int i = 0; i < e.n; i++) {
        free((void *)names[i]);
        mx_free(arrays[i]);
    }
}

static gomlx_status try_load(const char *path) {
    gomlx_model *m = NULL;
    gomlx_status st = gomlx_model_load(path, NULL, &m);
    if (st != GOMLX_OK) CHECK_MSG(strlen(gomlx_last_error()) > 10, "message too short: \"%s\"", gomlx_last_error());
    else fprintf(stderr, "  unexpectedly loaded %s\n", path);
    gomlx_model_free(m);
    return st;
}

static char *fixture_config(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", fixture);
    return check_read_text(p);
}

static void test_missing_folder(void) {
    CHECK_EQ_INT(try_load("/nonexistent/model/folder"), GOMLX_ERR_NOT_FOUND);
    CHECK(strstr(gomlx_last_error(), "/nonexistent/model/folder") != NULL);
}

static void test_folder_without_config(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/empty", tmpdir);
    mkdir(d, 0755);
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_NOT_FOUND);
}

static void test_invalid_json(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/badjson", tmpdir);
    make_model_dir(d, "{\"model_type\": \"llama\", ");
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
    CHECK(strstr(gomlx_last_error(), "JSON") != NULL);
}

static void test_missing_config_key(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/nokey", tmpdir);
    make_model_dir(d, "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_attention_heads\": 4, \"vocab_size\": 100}");
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
    CHECK(strstr(gomlx_last_error(), "num_hidden_layers") != NULL);
}

static void test_unknown_model_type(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/unknown", tmpdir);
    make_model_dir(d, "{\"model_type\": \"transmogrifier\", \"hidden_size\": 64}");
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_UNSUPPORTED);
    CHECK(strstr(gomlx_last_error(), "transmogrifier") != NULL);
}

static void test_wrong_head_counts(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/heads", tmpdir);
    make_model_dir(d, "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"vocab_size\": 100}");
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
}

/* Config values that parse as JSON numbers but are no size, eps or
 * factor the model can have: each refused by name (1e30 as an int was
 * undefined behaviour and read as -2147483648). */
static void test_out_of_range_config_values(void) {
    static const struct {
        const char *extra, *named;
    } cases[] = {
        {"\"num_key_value_heads\": 1e30", "num_key_value_heads"},
        {"\"num_key_value_heads\": 2.5", "num_key_value_heads"},
        {"\"num_key_value_heads\": 2, \"head_dim\": 9223372036854775808", "head_dim"},
        {"\"num_key_value_heads\": 2, \"rms_norm_eps\": -1", "rms_norm_eps"},
        {"\"num_key_value_heads\": 2, \"max_position_embeddings\": 0", "max_position_embeddings"},
        {"\"num_key_value_heads\": 2, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": -2}", "factor"},
        {"\"num_key_value_heads\": 2, \"sliding_window\": -5", "sliding_window"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char d[300], cfg[600];
        snprintf(d, sizeof d, "%s/range%zu", tmpdir, i);
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
                 "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100, %s}",
                 cases[i].extra);
        make_model_dir(d, cfg);
        CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
        CHECK_MSG(strstr(gomlx_last_error(), cases[i].named) != NULL, "case %zu: \"%s\" does not name %s", i,
                  gomlx_last_error(), cases[i].named);
    }
}

/* A config that says fewer layers than the weights hold: refused, not run
 * cut short. */
static void test_fewer_layers_than_weights(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/fewer_layers", tmpdir);
    char *cfg = fixture_config();
    char *at = strstr(cfg, "\"num_hidden_layers\": 3");
    CHECK_MSG(at != NULL, "the fixture's config no longer has 3 layers");
    if (at) at[strlen("\"num_hidden_layers\": ")] = '2';
    make_model_dir(d, cfg);
    free(cfg);
    write_weights(d, NULL, NULL);
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
    CHECK(strstr(gomlx_last_error(), "layer 2") != NULL);
}

static void test_missing_tensor(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/missing_tensor", tmpdir);
    char *cfg = fixture_config();
    make_model_dir(d, cfg);
    free(cfg);
    write_weights(d, "model.layers.1.mlp.up_proj.weight", NULL);
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
    CHECK(strstr(gomlx_last_error(), "model.layers.1.mlp.up_proj.weight") != NULL);
}

/* The fixture's head is its own (tie_word_embeddings false): without it
 * the load names the missing head rather than reusing the embedding. */
static void test_missing_untied_head(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/missing_head", tmpdir);
    char *cfg = fixture_config();
    CHECK_MSG(strstr(cfg, "\"tie_word_embeddings\": false") != NULL, "the fixture's head is tied now");
    make_model_dir(d, cfg);
    free(cfg);
    write_weights(d, "lm_head.weight", NULL);
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
    CHECK(strstr(gomlx_last_error(), "lm_head.weight") != NULL);
}

static void test_wrong_shape(void) {
    char d[300];
    snprintf(d, sizeof d, "%s/wrong_shape", tmpdir);
    char *cfg = fixture_config();
    make_model_dir(d, cfg);
    free(cfg);
    write_weights(d, NULL, "model.layers.0.self_attn.k_proj.weight");
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
    CHECK(strstr(gomlx_last_error(), "k_proj") != NULL);
}

static void test_truncated_safetensors(void) {
    char d[300], src[600], dst[600];
    snprintf(d, sizeof d, "%s/truncated", tmpdir);
    char *cfg = fixture_config();
    make_model_dir(d, cfg);
    free(cfg);
    snprintf(src, sizeof src, "%s/model.safetensors", fixture);
    snprintf(dst, sizeof dst, "%s/model.safetensors", d);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    CHECK(in && out);
    if (in && out) {
        char buf[4096];
        size_t total = 0, n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < 100000) {
            fwrite(buf, 1, n, out);
            total += n;
        }
    }
    if (in) fclose(in);
    if (out) fclose(out);
    CHECK_EQ_INT(try_load(d), GOMLX_ERR_FORMAT);
}

static void test_bad_gguf(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/bad.gguf", tmpdir);
    write_text(tmpdir, "bad.gguf", "this is not a GGUF file at all, just text");
    CHECK_EQ_INT(try_load(p), GOMLX_ERR_FORMAT);
    /* A real GGUF header cut short. */
    char src[600];
    snprintf(src, sizeof src, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_root());
    FILE *in = fopen(src, "rb");
    CHECK_MSG(in != NULL, "%s is missing: run `make setup`", src);
    if (!in) return;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    snprintf(p, sizeof p, "%s/truncated.gguf", tmpdir);
    FILE *out = fopen(p, "wb");
    fwrite(buf, 1, n, out);
    fclose(out);
    CHECK_EQ_INT(try_load(p), GOMLX_ERR_FORMAT);
}

static void test_bad_requests(void) {
    gomlx_load_params lp = gomlx_load_params_default();
    lp.context_length = 16;
    gomlx_model *m = NULL;
    CHECK_EQ_INT(gomlx_model_load(fixture, &lp, &m), GOMLX_OK);
    if (!m) return;
    gomlx_session *s = NULL;
    CHECK_EQ_INT(gomlx_session_new(m, &s), GOMLX_OK);
    gomlx_result r;
    CHECK_EQ_INT(gomlx_generate(s, NULL, 0, NULL, &r), GOMLX_ERR_INVALID_INPUT);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = i + 3;
    CHECK_EQ_INT(gomlx_generate_ids(s, ids, 40, NULL, &r), GOMLX_ERR_INVALID_INPUT);
    CHECK(strstr(gomlx_last_error(), "context") != NULL);
    int32_t bad_id = 1 << 30;
    CHECK_EQ_INT(gomlx_generate_ids(s, &bad_id, 1, NULL, &r), GOMLX_ERR_INVALID_INPUT);
    gomlx_generate_params p = gomlx_generate_params_default();
    p.temperature = -1;
    CHECK_EQ_INT(gomlx_generate_ids(s, ids, 3, &p, &r), GOMLX_ERR_INVALID_INPUT);
    p = gomlx_generate_params_default();
    p.n_stop = 2; /* and no strings: refused, not read through NULL */
    CHECK_EQ_INT(gomlx_generate_ids(s, ids, 3, &p, &r), GOMLX_ERR_INVALID_INPUT);
    CHECK(strstr(gomlx_last_error(), "n_stop") != NULL);
    p.n_stop = -1;
    CHECK_EQ_INT(gomlx_generate_ids(s, ids, 3, &p, &r), GOMLX_ERR_INVALID_INPUT);
    gomlx_image img = {"photo.png", NULL, 0};
    gomlx_message msg = {GOMLX_ROLE_USER, "what is this?", &img, 1};
    CHECK_EQ_INT(gomlx_generate(s, &msg, 1, NULL, &r), GOMLX_ERR_UNSUPPORTED);
    gomlx_message empty = {GOMLX_ROLE_USER, NULL, NULL, 0}, odd_role = {(gomlx_role)42, "hi", NULL, 0};
    CHECK_EQ_INT(gomlx_generate(s, &empty, 1, NULL, &r), GOMLX_ERR_INVALID_INPUT);
    CHECK(strstr(gomlx_last_error(), "no content") != NULL);
    CHECK_EQ_INT(gomlx_generate(s, &odd_role, 1, NULL, &r), GOMLX_ERR_INVALID_INPUT);
    CHECK(strstr(gomlx_last_error(), "role") != NULL);
    /* The session still works after all that. */
    p = gomlx_generate_params_default();
    p.temperature = 0;
    p.max_tokens = 4;
    CHECK_EQ_INT(gomlx_generate_ids(s, ids, 3, &p, &r), GOMLX_OK);
    CHECK(r.n_tokens == 4 || r.stats.stop_reason == GOMLX_STOP_EOS);
    gomlx_result_free(&r);
    gomlx_session_free(s);
    gomlx_model_free(m);
}

int main(void) {
    snprintf(fixture, sizeof fixture, "%s/testdata/models/llama-tiny", check_root());
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gomlx-test-bad-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_missing_folder);
    RUN(test_folder_without_config);
    RUN(test_invalid_json);
    RUN(test_missing_config_key);
    RUN(test_unknown_model_type);
    RUN(test_wrong_head_counts);
    RUN(test_out_of_range_config_values);
    RUN(test_fewer_layers_than_weights);
    RUN(test_missing_tensor);
    RUN(test_missing_untied_head);
    RUN(test_wrong_shape);
    RUN(test_truncated_safetensors);
    RUN(test_bad_gguf);
    RUN(test_bad_requests);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
