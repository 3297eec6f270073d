/* test_generate.c - generation behaviour through the public API on the
 * tiny Llama fixture, dense and 4-bit (on the CPU the 4-bit one decodes
 * through the fused layer that writes the KV cache in place, so prefix
 * reuse after decoding covers that hand-over): chunked prefill and prefix
 * reuse give the same
 * tokens as a plain run, cancellation and callbacks stop it, sessions on
 * several threads agree, memory returns to its baseline and the per-token
 * time split adds up. (Token
 * values themselves are checked against mlx-lm and transformers in
 * tests/py/test_parity.py.) */
#include <pthread.h>

#include "check.h"
#include "gomlx.h"
#include "generate/memory_limits.h"
#include "mlx/mx.h" /* MLX's memory limit */

static char fixture[512];
static const int32_t PROMPT[12] = {5, 17, 42, 99, 150, 7, 3, 250, 31, 64, 128, 11};

static gomlx_generate_params greedy(int max_tokens) {
    gomlx_generate_params p = gomlx_generate_params_default();
    p.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = 1;
    return p;
}

static int run_ids(gomlx_model *m, const int32_t *ids, size_t n, gomlx_generate_params *p, int32_t *out) {
    gomlx_session *s = NULL;
    if (gomlx_session_new(m, &s) != GOMLX_OK) return -1;
    gomlx_result r = {0};
    int rc = gomlx_generate_ids(s, ids, n, p, &r);
    int count = rc == GOMLX_OK ? r.n_tokens : -1;
    if (rc == GOMLX_OK) memcpy(out, r.tokens, sizeof(int32_t) * (size_t)r.n_tokens);
    gomlx_result_free(&r);
    gomlx_session_free(s);
    return count;
}

static void test_chunked_prefill_matches(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    int32_t a[16], b[16];
    gomlx_generate_params p = greedy(16);
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, a), 16);
    p.prefill_chunk = 5; /* 12 tokens in chunks of 5, 5 and 2 */
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, b), 16);
    CHECK(!memcmp(a, b, sizeof a));
    gomlx_model_free(m);
}

static void test_prefix_reuse_matches(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    gomlx_generate_params p = greedy(8);
    int32_t fresh[8];
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, fresh), 8);
    gomlx_session *s = NULL;
    gomlx_session_new(m, &s);
    gomlx_result r = {0};
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 8, &p, &r), GOMLX_OK);
    gomlx_result_free(&r);
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12, &p, &r), GOMLX_OK);
    CHECK_EQ_INT(r.stats.cached_tokens, 8);
    CHECK_EQ_INT(r.stats.prompt_tokens, 4);
    CHECK(r.n_tokens == 8 && !memcmp(r.tokens, fresh, sizeof fresh));
    gomlx_result_free(&r);
    gomlx_session_free(s);
    gomlx_model_free(m);
}

typedef struct {
    gomlx_session *s;
    int seen;
    int stop_after;
    int use_cancel;
} stopper;

static int on_token(const char *text, size_t len, void *user) {
    (void)text;
    (void)len;
    stopper *st = user;
    if (++st->seen == st->stop_after) {
        if (st->use_cancel) gomlx_cancel(st->s);
        else return 1;
    }
    return 0;
}

static void test_cancel_and_callback_stop(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    gomlx_session *s = NULL;
    gomlx_session_new(m, &s);
    gomlx_generate_params p = greedy(64);
    stopper st = {s, 0, 3, 1};
    p.on_token = on_token;
    p.user = &st;
    gomlx_result r = {0};
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12, &p, &r), GOMLX_ERR_CANCELLED);
    CHECK_EQ_INT(r.stats.stop_reason, GOMLX_STOP_CANCELLED);
    CHECK(r.n_tokens <= 4); /* stops within one token of the request */
    gomlx_result_free(&r);
    st = (stopper){s, 0, 5, 0};
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12, &p, &r), GOMLX_OK);
    CHECK_EQ_INT(r.stats.stop_reason, GOMLX_STOP_CALLBACK);
    gomlx_result_free(&r);
    /* A cancel with nothing in flight is ignored, and the flag does not
     * leak into the next call. */
    gomlx_cancel(s);
    p.on_token = NULL;
    p.max_tokens = 6;
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12, &p, &r), GOMLX_OK);
    CHECK_EQ_INT(r.n_tokens, 6);
    CHECK_EQ_INT(r.stats.stop_reason, GOMLX_STOP_MAX_TOKENS);
    gomlx_result_free(&r);
    gomlx_session_free(s);
    gomlx_model_free(m);
}

typedef struct {
    gomlx_model *m;
    int32_t tokens[12];
    int n;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    gomlx_generate_params p = greedy(12);
    j->n = run_ids(j->m, PROMPT, 12, &p, j->tokens);
    return NULL;
}

static void test_threads_agree(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    int32_t want[12];
    gomlx_generate_params p = greedy(12);
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, want), 12);
    pthread_t t[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].m = m;
        pthread_create(&t[i], NULL, thread_main, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(jobs[i].n, 12);
        CHECK(!memcmp(jobs[i].tokens, want, sizeof want));
    }
    gomlx_model_free(m);
}

static void test_memory_returns_to_baseline(void) {
    gomlx_clear_cache();
    gomlx_memory_stats before, loaded, after_gen, after_free;
    gomlx_get_memory_stats(&before);
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    gomlx_get_memory_stats(&loaded);
    gomlx_session *s = NULL;
    gomlx_session_new(m, &s);
    gomlx_generate_params p = greedy(8);
    for (int i = 0; i < 50; i++) {
        gomlx_result r = {0};
        CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12 - (size_t)(i % 3), &p, &r), GOMLX_OK);
        gomlx_result_free(&r);
        gomlx_session_reset(s);
    }
    gomlx_get_memory_stats(&after_gen);
    CHECK_MSG(after_gen.active == loaded.active, "active %llu after 50 generations, %llu after load",
              (unsigned long long)after_gen.active, (unsigned long long)loaded.active);
    gomlx_session_free(s);
    gomlx_model_free(m);
    gomlx_get_memory_stats(&after_free);
    CHECK_MSG(after_free.active == before.active, "active %llu after free, %llu before load",
              (unsigned long long)after_free.active, (unsigned long long)before.active);
}

/* A CPU prefill bounds MLX's memory limit while its graph is handed over
 * (generate/prefill_memory.h) and puts the caller's limit back after: on
 * success, in chunks, cancelled mid-decode, with max_tokens 0 and on
 * sessions of several threads at once. */
static void test_memory_limit_restored(void) {
    const size_t mark = (size_t)3 << 40; /* not MLX's default */
    size_t original = mx_set_memory_limit(mark);
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    int32_t out[16];
    gomlx_generate_params p = greedy(8);
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, out), 8);
    CHECK_EQ_INT(gm_prefill_memory_open(), 0);
    CHECK(mx_set_memory_limit(mark) == mark);
    p.prefill_chunk = 5;
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, out), 8);
    p = greedy(0);
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, out), 0);
    gomlx_session *s = NULL;
    gomlx_session_new(m, &s);
    p = greedy(64);
    stopper st = {s, 0, 2, 1};
    p.on_token = on_token;
    p.user = &st;
    gomlx_result r = {0};
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12, &p, &r), GOMLX_ERR_CANCELLED);
    gomlx_result_free(&r);
    gomlx_session_free(s);
    pthread_t th[3];
    thread_job jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (thread_job){m, {0}, 0};
        pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(jobs[i].n, 12);
    }
    gomlx_model_free(m);
    CHECK_EQ_INT(gm_prefill_memory_open(), 0);
    CHECK(mx_set_memory_limit(original) == mark);
}

/* The caller's memory limit (gomlx_set_memory_limit): 0 refused, the
 * previous one returned, a CPU prefill's bound kept under it (a lower
 * one stands during the prefill, a higher bound is cut to it), one set
 * while a prefill is open is what comes back after it, and generations
 * leave it as set. */
static void test_user_memory_limit(void) {
    uint64_t original = 0, prev = 0;
    CHECK_EQ_INT(gomlx_set_memory_limit(0, NULL), GOMLX_ERR_INVALID_INPUT);
    CHECK_EQ_INT(gomlx_set_memory_limit((uint64_t)5 << 40, &original), GOMLX_OK);
    CHECK(original > 0);
    CHECK_EQ_INT(gomlx_set_memory_limit((uint64_t)6 << 40, &prev), GOMLX_OK);
    CHECK(prev == (uint64_t)5 << 40);
    if (mx_device_is_gpu()) { /* no prefill bound on a GPU */
        CHECK_EQ_INT(gomlx_set_memory_limit(original, NULL), GOMLX_OK);
        return;
    }
    gm_model *gm;
    CHECK_EQ_INT(gm_model_load(fixture, NULL, NULL, &gm), 0);
    /* A high limit: the prefill's own bound (its need + 4%) stands. */
    int open = gm_prefill_memory_begin(gm, 12, 512);
    CHECK_EQ_INT(open, 1);
    size_t bound = mx_memory_limit();
    CHECK_MSG(bound > mx_active_memory() && bound < ((size_t)6 << 40), "bound %zu under a 6 TiB limit", bound);
    /* Set below it while the prefill is open: in force at once, and what
     * comes back when the prefill ends. */
    const size_t low = bound / 2;
    CHECK_EQ_INT(gomlx_set_memory_limit(low, &prev), GOMLX_OK);
    CHECK(prev == (uint64_t)6 << 40);
    CHECK(mx_memory_limit() == low);
    gm_prefill_memory_end(open);
    CHECK(mx_memory_limit() == low);
    /* A prefill under a limit below its need keeps the caller's. */
    open = gm_prefill_memory_begin(gm, 12, 512);
    CHECK(mx_memory_limit() == low);
    gm_prefill_memory_end(open);
    CHECK(mx_memory_limit() == low);
    gm_model_free(gm);
    /* Generations under it: slower (MLX waits on queued work), same tokens. */
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    int32_t a[8], b[8];
    gomlx_generate_params p = greedy(8);
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, a), 8);
    CHECK(mx_memory_limit() == low);
    CHECK_EQ_INT(gomlx_set_memory_limit(original, NULL), GOMLX_OK);
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, b), 8);
    CHECK(!memcmp(a, b, sizeof a));
    gomlx_model_free(m);
    CHECK(mx_memory_limit() == original);
}

/* The cache limit (gomlx_set_cache_limit): the previous one returned, and
 * at 0 no freed buffer is kept after a generation, where the default
 * keeps some. */
static void test_cache_limit(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    int32_t out[8];
    gomlx_generate_params p = greedy(8);
    gomlx_clear_cache();
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, out), 8);
    gomlx_memory_stats st;
    gomlx_get_memory_stats(&st);
    CHECK_MSG(st.cache > 0, "MLX's default kept no buffers (%llu bytes): the check below proves nothing",
              (unsigned long long)st.cache);
    uint64_t original = 0, prev = 1;
    CHECK_EQ_INT(gomlx_set_cache_limit(0, &original), GOMLX_OK);
    CHECK(original > 0);
    gomlx_clear_cache();
    CHECK_EQ_INT(run_ids(m, PROMPT, 12, &p, out), 8);
    gomlx_get_memory_stats(&st);
    CHECK_MSG(st.cache == 0, "%llu bytes cached under a cache limit of 0", (unsigned long long)st.cache);
    CHECK_EQ_INT(gomlx_set_cache_limit(original, &prev), GOMLX_OK);
    CHECK(prev == 0);
    gomlx_model_free(m);
}

/* The CPU has no recommended working set, so a generation wires nothing
 * there (on Metal mx_recommended_wired is the figure it wires). */
static void test_wired_figure(void) {
    if (!mx_device_is_gpu()) CHECK(mx_recommended_wired() == 0);
}

/* The per-token time split (host, MLX's dispatch, waiting on the token)
 * is filled in and accounts for disjoint parts of the call: summed over
 * the tokens it fits in the call's total time. */
static void test_time_split(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    gomlx_session *s = NULL;
    CHECK_EQ_INT(gomlx_session_new(m, &s), GOMLX_OK);
    gomlx_generate_params p = greedy(16);
    gomlx_result r = {0};
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 12, &p, &r), GOMLX_OK);
    const gomlx_stats *st = &r.stats;
    int n = st->generated_tokens;
    CHECK_EQ_INT(n, 16);
    CHECK(st->host_ms_per_token > 0 && st->dispatch_ms_per_token > 0 && st->wait_ms_per_token >= 0);
    double parts = (st->host_ms_per_token + st->dispatch_ms_per_token) * n + st->wait_ms_per_token * (n - 1);
    CHECK_MSG(parts <= st->total_ms, "host %.3f + dispatch %.3f + wait %.3f ms a token over %d tokens > %.3f ms",
              st->host_ms_per_token, st->dispatch_ms_per_token, st->wait_ms_per_token, n, st->total_ms);
    gomlx_result_free(&r);
    gomlx_session_free(s);
    gomlx_model_free(m);
}

static void test_use_after_close(void) {
    gomlx_model *m;
    CHECK_EQ_INT(gomlx_model_load(fixture, NULL, &m), GOMLX_OK);
    gomlx_session *s = NULL;
    gomlx_session_new(m, &s);
    gomlx_model_free(m);
    gomlx_result r = {0};
    gomlx_generate_params p = greedy(2);
    CHECK_EQ_INT(gomlx_generate_ids(s, PROMPT, 3, &p, &r), GOMLX_ERR_CLOSED);
    gomlx_session_free(s);
}

int main(void) {
    static const char *fixtures[] = {"llama-tiny", "llama-tiny-q4"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        snprintf(fixture, sizeof fixture, "%s/testdata/models/%s", check_root(), fixtures[i]);
        fprintf(stderr, "-- %s\n", fixtures[i]);
        RUN(test_chunked_prefill_matches);
        RUN(test_prefix_reuse_matches);
        RUN(test_cancel_and_callback_stop);
        RUN(test_threads_agree);
        RUN(test_memory_returns_to_baseline);
        RUN(test_memory_limit_restored);
        RUN(test_user_memory_limit);
        RUN(test_cache_limit);
        RUN(test_wired_figure);
        RUN(test_time_split);
        RUN(test_use_after_close);
    }
    return check_summary();
}
