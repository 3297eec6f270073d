/* test_model_files.c - the ways a model folder can hold its weights:
 * sharded safetensors with an index, and dense float16/bfloat16 instead of
 * float32. The tiny Llama fixture's weights are rewritten into a temp
 * folder and the logits compared with mlx-lm's reference for the original
 * float32 weights: exactly for shards (same numbers), within the rounding
 * of the narrower dtype otherwise. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"
#include "gomlx.h"
#include "mlx/mx.h"

static char fixture[512], tmpdir[256];
static int32_t prompt[64];
static int n_prompt;

typedef struct {
    const char *names[512];
    mx_array arrays[512];
    int n;
} tensors;

static int collect(const char *name, mx_array a, void *u) {
    tensors *t = u;
    if (t->n >= 512) {
        mx_free(a);
        return 1;
    }
    t->names[t->n] = strdup(name);
    t->arrays[t->n++] = a;
    return 0;
}

static void free_tensors(tensors *t) {
    for (int i = 0; i < t->n; i++) {
        free((void *)t->names[i]);
        mx_free(t->arrays[i]);
    }
    t->n = 0;
}

/* Copies config.json (with torch_dtype set) and tokenizer files. */
static void copy_config(const char *dir, const char *dtype) {
    char src[600], dst[600];
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/config.json", fixture);
    char *text = check_read_text(src);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(cfg != NULL);
    if (!cfg) return;
    cJSON_DeleteItemFromObject(cfg, "torch_dtype");
    cJSON_AddStringToObject(cfg, "torch_dtype", dtype);
    char *out = cJSON_Print(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    check_write_text(dst, out);
    free(out);
    cJSON_Delete(cfg);
}

/* Logits for the reference prompt, compared with mlx-lm's float32 logits:
 * returns the max abs difference, and the share of rows whose argmax agrees.
 * On the CPU: MLX's CUDA backend multiplies float32 matrices in TF32
 * (relative error ~3e-4 on an H100, against ~1e-6 on the CPU), which a
 * float32 tolerance cannot hold. */
static double compare(const char *dir, double *argmax_agree) {
    gomlx_model *m = NULL;
    *argmax_agree = 0;
    gomlx_load_params lp = gomlx_load_params_default();
    lp.device = GOMLX_DEVICE_CPU;
    CHECK_MSG(gomlx_model_load(dir, &lp, &m) == GOMLX_OK, "%s", gomlx_last_error());
    if (!m) return INFINITY;
    float *got = NULL;
    int vocab = 0;
    CHECK_EQ_INT(gomlx_logits(m, prompt, (size_t)n_prompt, &got, &vocab), GOMLX_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/reference/logits_mlx.npy", fixture);
    int rows = 0, cols = 0;
    float *want = check_read_npy(p, &rows, &cols);
    double worst = INFINITY;
    if (got && want && rows == n_prompt && cols == vocab) {
        worst = 0;
        int agree = 0;
        for (int r = 0; r < rows; r++) {
            int ag = 0, aw = 0;
            for (int c = 0; c < cols; c++) {
                double d = fabs((double)got[r * cols + c] - want[r * cols + c]);
                if (d > worst) worst = d;
                if (got[r * cols + c] > got[r * cols + ag]) ag = c;
                if (want[r * cols + c] > want[r * cols + aw]) aw = c;
            }
            agree += ag == aw;
        }
        *argmax_agree = (double)agree / rows;
    }
    free(want);
    gomlx_free(got);
    gomlx_model_free(m);
    return worst;
}

static void test_sharded(void) {
    char dir[300], path[700];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    copy_config(dir, "float32");
    tensors t = {.n = 0};
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    CHECK_EQ_INT(mx_load_safetensors(path, collect, NULL, &t), 0);
    /* Two shards and the index that maps every tensor to its file. */
    int half = t.n / 2;
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    for (int i = 0; i < t.n; i++)
        cJSON_AddStringToObject(map, t.names[i], i < half ? "model-00001-of-00002.safetensors"
                                                           : "model-00002-of-00002.safetensors");
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK_EQ_INT(mx_save_safetensors(path, t.names, t.arrays, half), 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    CHECK_EQ_INT(mx_save_safetensors(path, t.names + half, t.arrays + half, t.n - half), 0);
    char *text = cJSON_Print(index);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    check_write_text(path, text);
    free(text);
    cJSON_Delete(index);
    free_tensors(&t);
    double agree, d = compare(dir, &agree);
    CHECK_MSG(d <= 1e-4, "sharded: max abs %g", d);
    /* A shard the index names but that is missing is a clear error. */
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    remove(path);
    gomlx_model *m = NULL;
    CHECK_EQ_INT(gomlx_model_load(dir, NULL, &m), GOMLX_ERR_NOT_FOUND);
    CHECK(strstr(gomlx_last_error(), "model-00002-of-00002") != NULL);
}

static void check_dtype(mx_dtype t, const char *name, double tol) {
    char dir[300], path[700];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    copy_config(dir, name);
    tensors src = {.n = 0};
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    CHECK_EQ_INT(mx_load_safetensors(path, collect, NULL, &src), 0);
    for (int i = 0; i < src.n; i++) {
        mx_array narrow = mx_keep(mx_astype(src.arrays[i], t));
        mx_free(src.arrays[i]);
        src.arrays[i] = narrow;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_EQ_INT(mx_save_safetensors(path, src.names, src.arrays, src.n), 0);
    free_tensors(&src);
    double agree, d = compare(dir, &agree);
    /* Weights and activations rounded to 8 (bfloat16) or 11 (float16)
     * significant bits move logits of a few units by a few hundredths;
     * the top token must still agree almost everywhere. */
    CHECK_MSG(d <= tol, "%s: max abs %g > %g", name, d, tol);
    CHECK_MSG(agree >= 0.9, "%s: argmax agrees on %.0f%% of rows", name, agree * 100);
    gomlx_model *m = NULL;
    gomlx_model_info info;
    if (gomlx_model_load(dir, NULL, &m) == GOMLX_OK && gomlx_model_get_info(m, &info) == GOMLX_OK)
        CHECK_STR(info.dtype, name);
    gomlx_model_free(m);
}

static void test_bfloat16(void) { check_dtype(MX_BFLOAT16, "bfloat16", 0.5); }
static void test_float16(void) { check_dtype(MX_FLOAT16, "float16", 0.05); }

int main(void) {
    snprintf(fixture, sizeof fixture, "%s/testdata/models/llama-tiny", check_root());
    char p[600];
    snprintf(p, sizeof p, "%s/reference/greedy.json", fixture);
    char *text = check_read_text(p);
    cJSON *root = text ? cJSON_Parse(text) : NULL, *e;
    free(text);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "prompt_ids")) if (n_prompt < 64)
        prompt[n_prompt++] = (int32_t)e->valuedouble;
    cJSON_Delete(root);
    if (!n_prompt) {
        fprintf(stderr, "cannot read %s\n", p);
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gomlx-test-files-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_sharded);
    RUN(test_bfloat16);
    RUN(test_float16);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
