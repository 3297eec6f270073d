/* generate.c - prompt → chunked prefill → pipelined decode → stream.
 *
 * Prefill runs the prompt through the model in chunks, evaluating only the
 * cache, and unembeds only the last position. Decode is pipelined as in
 * mlx-lm: the graph for token n+1 is built and queued (async_eval) before
 * token n is read back, so the host work of one step overlaps the device
 * work of the next. */
#include "generate/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate/memory_limits.h"
#include "generate/sampler.h"
#include "generate/stop.h"
#include "util/buf.h"
#include "util/env.h"
#include "util/clock.h"
#include "util/error.h"

int gm_session_init(gm_session *s, gm_model *m, int context_length) {
    memset(s, 0, sizeof *s);
    s->model = m;
    s->context_length = context_length > 0 ? context_length : m->cfg.max_position_embeddings;
    return gm_kv_cache_init(&s->cache, m);
}

void gm_session_clear(gm_session *s) {
    gm_kv_cache_free(&s->cache);
    gm_kv_cache_init(&s->cache, s->model);
    s->n_tokens = 0;
}

void gm_session_destroy(gm_session *s) {
    gm_kv_cache_free(&s->cache);
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

static int record_tokens(gm_session *s, const int32_t *ids, size_t n) {
    if (s->n_tokens + n > s->cap_tokens) {
        size_t cap = s->cap_tokens ? s->cap_tokens : 256;
        while (cap < s->n_tokens + n) cap *= 2;
        int32_t *p = realloc(s->tokens, cap * sizeof *p);
        if (!p) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        s->tokens = p;
        s->cap_tokens = cap;
    }
    memcpy(s->tokens + s->n_tokens, ids, n * sizeof *ids);
    s->n_tokens += n;
    return 0;
}

size_t gm_model_stop_ids(const gm_model *m, int32_t *out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < m->cfg.n_eos && n < cap; i++) out[n++] = m->cfg.eos_ids[i];
    if (m->tok) {
        size_t k;
        const int32_t *ids = gm_tokenizer_stop_ids(m->tok, &k);
        for (size_t i = 0; i < k && n < cap; i++) {
            int seen = 0;
            for (size_t j = 0; j < n; j++) seen |= out[j] == ids[i];
            if (!seen) out[n++] = ids[i];
        }
    }
    return n;
}

/* Runs ids through the model, appending to the cache. The graph is built
 * in its own scope and the scope closed before evaluation: holding handles
 * to every intermediate would keep all of their buffers alive during eval
 * (about hidden x layers x 20 floats per prompt token). With want_logits
 * the last position's logits come back unevaluated and owned by the
 * caller; else the cache is evaluated. */
static int forward_chunk(gm_session *s, const int32_t *ids, int n, int want_logits,
                         mx_array *logits) {
    gm_model *m = s->model;
    mx_scope *scope = mx_scope_open();
    mx_array in = mx_from_data(ids, (int[]){1, n}, 2, MX_INT32);
    mx_array out = mx_keep(m->arch->forward(m, in, &s->cache, want_logits ? GM_LOGITS_LAST : GM_LOGITS_NONE));
    mx_scope_close(scope);
    if (!out) return gm_fail_mlx("running the model");
    if (record_tokens(s, ids, (size_t)n)) {
        mx_free(out);
        return GOMLX_ERR_INTERNAL;
    }
    if (want_logits) {
        *logits = out;
        return 0;
    }
    mx_array arrays[2 * 256 + 1];
    int k = gm_kv_cache_arrays(&s->cache, arrays, 2 * 256);
    arrays[k++] = out;
    int rc = mx_eval(arrays, k) ? gm_fail_mlx("prefill") : 0;
    mx_free(out);
    return rc;
}

static int is_stop_id(const int32_t *ids, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

/* Emits released text to the callback and the result buffer. */
static int emit(const gomlx_generate_params *p, gm_buf *text, const char *piece, size_t len,
                int *stopped_by_callback) {
    if (!len) return 0;
    if (gm_buf_append(text, piece, len)) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    if (p->on_token && p->on_token(piece, len, p->user)) *stopped_by_callback = 1;
    return 0;
}

int gm_generate(gm_session *s, const int32_t *prompt, size_t n_prompt,
                const gomlx_generate_params *p, const atomic_int *cancel, gomlx_result *out) {
    gm_model *m = s->model;
    memset(out, 0, sizeof *out);
    if (!n_prompt) return gm_fail(GOMLX_ERR_INVALID_INPUT, "the prompt is empty");
    if (p->max_tokens < 0) return gm_fail(GOMLX_ERR_INVALID_INPUT, "max_tokens must be >= 0");
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop))
        return gm_fail(GOMLX_ERR_INVALID_INPUT, "n_stop is %d but stop is %s", p->n_stop, p->stop ? "set" : "NULL");
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size)
            return gm_fail(GOMLX_ERR_INVALID_INPUT, "token id %d at position %zu is outside the vocabulary (0..%d)", prompt[i], i, m->cfg.vocab_size - 1);
    if ((int64_t)n_prompt >= s->context_length)
        return gm_fail(GOMLX_ERR_INVALID_INPUT, "the prompt has %zu tokens but the context holds %d", n_prompt, s->context_length);

    gm_sampler sampler;
    uint64_t seed = p->has_seed ? p->seed : ((uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)s) * 0x9E3779B97F4A7C15ull;
    int rc = gm_sampler_init(&sampler, p->temperature, p->top_p, p->top_k, p->min_p, seed);
    if (rc) return rc;
    int32_t stop_ids[64];
    size_t n_stop_ids = p->ignore_eos ? 0 : gm_model_stop_ids(m, stop_ids, 64);
    gm_stop stops;
    gm_stop_init(&stops, p->stop, p->n_stop);
    gm_detok *detok = m->tok ? gm_detok_new(m->tok, 1) : NULL;
    gm_buf text = {0};
    int32_t *generated = malloc(sizeof(int32_t) * (size_t)(p->max_tokens + 1));
    int n_generated = 0, stopped_by_callback = 0;
    gomlx_stop_reason reason = GOMLX_STOP_NONE;
    mx_array y = NULL, next = NULL;
    int prefill_bound = 0; /* gm_prefill_memory_begin's, until the prompt is handed to MLX */
    gm_wired_begin(); /* Metal: the working set kept resident */
    if (!generated || (m->tok && !detok)) {
        rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        goto done;
    }

    /* The last generation's buffers released before the peak is reset (on
     * a GPU MLX lets go of them on a worker thread, and the step queued
     * past its stop may still hold some). */
    if (!gm_env_off("GOMLX_SETTLE")) mx_settle(); /* =0: not (A/B runs) */
    double t0 = gm_now_ms();
    mx_reset_peak_memory();
    /* Reuse the cached prefix; at least one token must run to get logits. */
    size_t common = 0;
    while (common < s->n_tokens && common < n_prompt && s->tokens[common] == prompt[common]) common++;
    if (common == n_prompt) common--;
    if (gm_kv_cache_rewind(&s->cache, m, (int)common)) {
        /* A sliding-window layer already dropped keys this prefix needs. */
        gm_session_clear(s);
        common = 0;
    }
    s->n_tokens = common;
    out->stats.cached_tokens = (int)common;
    out->stats.prompt_tokens = (int)(n_prompt - common);

    int chunk = p->prefill_chunk > 0 ? p->prefill_chunk : 512;
    size_t pos = common;
    prefill_bound = gm_prefill_memory_begin(m, n_prompt - pos, chunk);
    if (cancel && atomic_load(cancel)) {
        reason = GOMLX_STOP_CANCELLED;
        goto done;
    }
    while (n_prompt - pos > (size_t)chunk) {
        if (cancel && atomic_load(cancel)) {
            reason = GOMLX_STOP_CANCELLED;
            goto done;
        }
        rc = forward_chunk(s, prompt + pos, chunk, 0, NULL);
        if (rc) goto fail_session;
        pos += (size_t)chunk;
    }
    if (p->max_tokens == 0) {
        /* Nothing to generate: still fill the cache with the whole prompt. */
        rc = forward_chunk(s, prompt + pos, (int)(n_prompt - pos), 0, NULL);
        if (rc) goto fail_session;
        reason = GOMLX_STOP_MAX_TOKENS;
        goto done;
    }
    {
        mx_array logits = NULL;
        rc = forward_chunk(s, prompt + pos, (int)(n_prompt - pos), 1, &logits);
        if (!rc) {
            mx_scope *scope = mx_scope_open();
            y = mx_keep(mx_reshape(gm_sampler_sample(&sampler, mx_reshape(logits, (int[]){1, -1}, 2)), (int[]){1, 1}, 2));
            mx_scope_close(scope);
            mx_free(logits);
            if (!y || mx_async_eval(&y, 1)) rc = gm_fail_mlx("sampling");
        }
        /* The prompt's nodes are all handed to MLX (their outputs
         * allocated) once async_eval returns. */
        gm_prefill_memory_end(prefill_bound);
        prefill_bound = 0;
        if (rc) goto fail_session;
    }

    double t_first = 0, host_ms = 0, dispatch_ms = 0, wait_ms = 0;
    int budget = p->max_tokens;
    int room = s->context_length - (int)n_prompt;
    if (budget > room) budget = room;
    for (int i = 0; i < budget; i++) {
        /* Queue step i+1 before reading token i. */
        double t_host = gm_now_ms();
        if (i + 1 < budget) {
            mx_scope *scope = mx_scope_open();
            mx_array logits = m->arch->forward(m, y, &s->cache, GM_LOGITS_LAST);
            next = mx_keep(mx_reshape(gm_sampler_sample(&sampler, mx_reshape(logits, (int[]){1, -1}, 2)), (int[]){1, 1}, 2));
            mx_scope_close(scope);
            /* async_eval is not host overhead: MLX blocks in it while too
             * many of its tasks are pending (always so on the CPU). */
            double t_dispatch = gm_now_ms();
            host_ms += t_dispatch - t_host;
            if (!next || mx_async_eval(&next, 1)) {
                rc = gm_fail_mlx("decoding");
                goto fail_session;
            }
            dispatch_ms += gm_now_ms() - t_dispatch;
        } else {
            host_ms += gm_now_ms() - t_host;
        }
        int64_t tok;
        double t_wait = gm_now_ms();
        if (mx_item_int(y, &tok)) {
            rc = gm_fail_mlx("reading a token");
            goto fail_session;
        }
        if (i > 0) wait_ms += gm_now_ms() - t_wait; /* token 0 waits for the prompt */
        mx_free(y);
        y = next;
        next = NULL;
        int32_t id = (int32_t)tok;
        if (i + 1 < budget && record_tokens(s, &id, 1)) {
            rc = GOMLX_ERR_INTERNAL;
            goto fail_session;
        }
        if (i == 0) {
            t_first = gm_now_ms();
            out->stats.ttft_ms = t_first - t0;
        }
        if (is_stop_id(stop_ids, n_stop_ids, id)) {
            reason = GOMLX_STOP_EOS;
            break;
        }
        generated[n_generated++] = id;
        t_host = gm_now_ms();
        if (detok) {
            const char *piece;
            size_t len;
            char *released;
            size_t rlen;
            if ((rc = gm_detok_push(detok, id, &piece, &len))) goto fail_session;
            int hit = gm_stop_push(&stops, piece, len, &released, &rlen);
            if (hit < 0 || (rc = emit(p, &text, released, rlen, &stopped_by_callback))) {
                if (!rc) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
                goto fail_session;
            }
            if (hit) {
                reason = GOMLX_STOP_STRING;
                break;
            }
        }
        host_ms += gm_now_ms() - t_host;
        if (stopped_by_callback) {
            reason = GOMLX_STOP_CALLBACK;
            break;
        }
        if (cancel && atomic_load(cancel)) {
            reason = GOMLX_STOP_CANCELLED;
            break;
        }
    }
    if (reason == GOMLX_STOP_NONE) reason = budget < p->max_tokens ? GOMLX_STOP_CONTEXT : GOMLX_STOP_MAX_TOKENS;
    if (detok && reason != GOMLX_STOP_STRING) {
        const char *piece;
        size_t len;
        char *released;
        size_t rlen;
        if (!gm_detok_flush(detok, &piece, &len) && gm_stop_push(&stops, piece, len, &released, &rlen) >= 0) {
            int dummy = 0;
            emit(p, &text, released, rlen, &dummy);
            if (reason != GOMLX_STOP_STRING) {
                gm_stop_flush(&stops, &released, &rlen);
                emit(p, &text, released, rlen, &dummy);
            }
        }
    }
    {
        double t_end = gm_now_ms();
        out->stats.total_ms = t_end - t0;
        if (t_first > t0) out->stats.prompt_tps = out->stats.prompt_tokens / ((t_first - t0) / 1e3);
        if (n_generated > 1 && t_end > t_first)
            out->stats.decode_tps = (n_generated - 1) / ((t_end - t_first) / 1e3);
        if (n_generated) {
            out->stats.host_ms_per_token = host_ms / n_generated;
            out->stats.dispatch_ms_per_token = dispatch_ms / n_generated;
            if (n_generated > 1) out->stats.wait_ms_per_token = wait_ms / (n_generated - 1);
        }
    }
    /* A step queued past the stop fed a token the caller never saw: drop
     * it from the cache bookkeeping. */
    if (s->cache.offset > (int)s->n_tokens) s->cache.offset = (int)s->n_tokens;
    goto done;

fail_session:
    /* The cache may hold half a step: start the next call from scratch. */
    gm_session_clear(s);
done:
    gm_prefill_memory_end(prefill_bound);
    gm_wired_end();
    mx_free(y);
    mx_free(next);
    if (!rc && reason == GOMLX_STOP_CANCELLED) rc = gm_fail(GOMLX_ERR_CANCELLED, "generation was cancelled");
    out->stats.generated_tokens = n_generated;
    out->stats.stop_reason = reason;
    out->stats.peak_memory = mx_peak_memory();
    out->text = gm_buf_take(&text);
    out->tokens = generated;
    out->n_tokens = n_generated;
    gm_detok_free(detok);
    gm_stop_free(&stops);
    gm_sampler_free(&sampler);
    if (rc && rc != GOMLX_ERR_CANCELLED) {
        free(out->text);
        free(out->tokens);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int gm_logits(gm_model *m, const int32_t *ids, size_t n, int chunk, float **out, int *vocab) {
    *out = NULL;
    if (!n) return gm_fail(GOMLX_ERR_INVALID_INPUT, "no token ids given");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return gm_fail(GOMLX_ERR_INVALID_INPUT, "token id %d at position %zu is outside the vocabulary (0..%d)", ids[i], i, m->cfg.vocab_size - 1);
    gm_kv_cache cache;
    int rc = gm_kv_cache_init(&cache, m);
    if (rc) return rc;
    int v = m->cfg.vocab_size;
    float *buf = malloc(sizeof(float) * n * (size_t)v);
    if (!buf) {
        gm_kv_cache_free(&cache);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory for %zu x %d logits", n, v);
    }
    if (chunk <= 0) chunk = 512;
    for (size_t pos = 0; pos < n && !rc; pos += (size_t)chunk) {
        int len = n - pos < (size_t)chunk ? (int)(n - pos) : chunk;
        mx_scope *scope = mx_scope_open();
        mx_array in = mx_from_data(ids + pos, (int[]){1, len}, 2, MX_INT32);
        mx_array logits = mx_keep(m->arch->forward(m, in, &cache, GM_LOGITS_ALL));
        mx_scope_close(scope); /* before eval, so intermediates can be freed as it runs */
        if (!logits || mx_read(logits, MX_FLOAT32, buf + pos * (size_t)v, sizeof(float) * (size_t)len * (size_t)v))
            rc = gm_fail_mlx("computing logits");
        mx_free(logits);
    }
    gm_kv_cache_free(&cache);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *vocab = v;
    return 0;
}
