/* api.c - the public C API (include/gomlx.h) over the engine: handles,
 * status codes and messages, and the hand-off of every call to the
 * model's worker thread. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "generate/memory_limits.h"
#include "gomlx.h"
#include "mlx/mx.h"
#include "models/model.h"
#include "text/chat.h"
#include "util/error.h"
#include "worker.h"

/* The model handle outlives the model while sessions still point at it:
 * it is freed when the last of them goes. */
struct gomlx_model {
    gm_worker worker;
    gm_model *m;
    int context_length;
    int device_gpu;
    atomic_int refs;
    atomic_int closed;
    pthread_mutex_t sessions_mu;
    gomlx_session *sessions;
    char quant_desc[96];
};

struct gomlx_session {
    gomlx_model *model;
    gm_session s;
    atomic_int cancel;
    /* Generate calls queued or running. cancel_mu makes "is a call in
     * flight? then set cancel" and "last call done: clear cancel" atomic
     * with respect to each other: a cancel racing the end of a call must
     * not survive into the next call. */
    int in_flight;
    pthread_mutex_t cancel_mu;
    int alive; /* cache not yet freed */
    gomlx_session *next;
};

const char *gomlx_version(void) { return GOMLX_VERSION; }
const char *gomlx_mlx_version(void) { return mx_version(); }
const char *gomlx_last_error(void) { return gm_error_message(); }
void gomlx_free(void *p) { free(p); }

const char *gomlx_status_string(gomlx_status s) {
    switch (s) {
    case GOMLX_OK: return "ok";
    case GOMLX_ERR_NOT_FOUND: return "not found";
    case GOMLX_ERR_UNSUPPORTED: return "unsupported";
    case GOMLX_ERR_INVALID_INPUT: return "invalid input";
    case GOMLX_ERR_FORMAT: return "bad format";
    case GOMLX_ERR_CANCELLED: return "cancelled";
    case GOMLX_ERR_CLOSED: return "closed";
    case GOMLX_ERR_BACKEND: return "backend error";
    default: return "internal error";
    }
}

const char *gomlx_stop_reason_string(gomlx_stop_reason r) {
    static const char *names[] = {"none", "eos", "stop_string", "max_tokens", "cancelled", "callback", "context"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "none";
}

static gomlx_status ret(int rc) {
    if (!rc) gm_error_clear();
    return (gomlx_status)rc;
}

gomlx_load_params gomlx_load_params_default(void) {
    gomlx_load_params p = {GOMLX_DEVICE_AUTO, NULL, NULL, 0, -1};
    return p;
}

gomlx_generate_params gomlx_generate_params_default(void) {
    gomlx_generate_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 2048;
    p.temperature = 0.7f;
    p.top_p = 0.9f;
    p.prefill_chunk = 512;
    return p;
}

void gomlx_result_free(gomlx_result *r) {
    if (!r) return;
    free(r->text);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

static void release(gomlx_model *h) {
    if (atomic_fetch_sub(&h->refs, 1) == 1) {
        pthread_mutex_destroy(&h->sessions_mu);
        free(h);
    }
}

/* ------------------------------------------------------------ loading */

typedef struct {
    gomlx_model *h;
    const char *path;
    const gomlx_load_params *p;
} load_job;

static int do_load(void *arg) {
    load_job *j = arg;
    int want_gpu = j->p->device == GOMLX_DEVICE_GPU ||
                   (j->p->device == GOMLX_DEVICE_AUTO && mx_gpu_available());
    if (j->p->device == GOMLX_DEVICE_GPU && !mx_gpu_available())
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "no GPU backend in this MLX build (Metal or CUDA); use the CPU device");
    if (mx_set_device(want_gpu)) return gm_fail_mlx("selecting the device");
    j->h->device_gpu = want_gpu;
    if (j->p->cpu_kernels >= 0) mx_set_cpu_kernels(j->p->cpu_kernels);
    int rc = gm_model_load(j->path, j->p->progress, j->p->progress_user, &j->h->m);
    if (rc) return rc;
    gm_model *m = j->h->m;
    int ctx = m->cfg.max_position_embeddings;
    j->h->context_length = j->p->context_length > 0 && j->p->context_length < ctx ? j->p->context_length : ctx;
    const gm_linear *q = m->layers[0].wqkv.w ? &m->layers[0].wqkv : &m->layers[0].wq;
    if (q->bits)
        snprintf(j->h->quant_desc, sizeof j->h->quant_desc, "%d-bit affine, group %d", q->bits, q->group_size);
    else
        snprintf(j->h->quant_desc, sizeof j->h->quant_desc, "none (%s)", mx_dtype_name(mx_get_dtype(q->w)));
    return 0;
}

static int do_free_model(void *arg) {
    gomlx_model *h = arg;
    pthread_mutex_lock(&h->sessions_mu);
    for (gomlx_session *s = h->sessions; s; s = s->next)
        if (s->alive) {
            gm_session_destroy(&s->s);
            s->alive = 0;
        }
    pthread_mutex_unlock(&h->sessions_mu);
    gm_model_free(h->m);
    h->m = NULL;
    mx_clear_cache();
    return 0;
}

gomlx_status gomlx_model_load(const char *path, const gomlx_load_params *params, gomlx_model **out) {
    if (!out) return ret(gm_fail(GOMLX_ERR_INVALID_INPUT, "out is NULL"));
    *out = NULL;
    gomlx_load_params defaults = gomlx_load_params_default();
    if (!params) params = &defaults;
    gomlx_model *h = calloc(1, sizeof *h);
    if (!h) return ret(gm_fail(GOMLX_ERR_INTERNAL, "out of memory"));
    atomic_init(&h->refs, 1);
    atomic_init(&h->closed, 0);
    pthread_mutex_init(&h->sessions_mu, NULL);
    int rc = gm_worker_start(&h->worker);
    if (rc) {
        release(h);
        return ret(rc);
    }
    load_job j = {h, path, params};
    rc = gm_worker_call(&h->worker, do_load, &j);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", gm_error_message());
        gm_worker_stop(&h->worker, do_free_model, h);
        release(h);
        gm_error_set_raw(msg);
        return (gomlx_status)rc;
    }
    *out = h;
    return ret(0);
}

void gomlx_model_free(gomlx_model *h) {
    if (!h || atomic_exchange(&h->closed, 1)) return;
    gm_worker_stop(&h->worker, do_free_model, h);
    release(h);
}

static int usable(gomlx_model *h) {
    if (!h) return gm_fail(GOMLX_ERR_INVALID_INPUT, "model is NULL");
    if (atomic_load(&h->closed)) return gm_fail(GOMLX_ERR_CLOSED, "the model is closed");
    return 0;
}

gomlx_status gomlx_model_get_info(gomlx_model *h, gomlx_model_info *out) {
    int rc = usable(h);
    if (rc || !out) return ret(rc ? rc : gm_fail(GOMLX_ERR_INVALID_INPUT, "out is NULL"));
    const gm_model *m = h->m;
    const gm_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    out->architecture = c->model_type;
    out->format = m->format;
    out->name = m->name;
    out->dtype = mx_dtype_name(c->dtype);
    out->quantization = h->quant_desc;
    out->notes = m->notes;
    out->device = h->device_gpu ? "gpu" : "cpu";
    out->vocab_size = c->vocab_size;
    out->hidden_size = c->hidden_size;
    out->intermediate_size = c->intermediate_size;
    out->num_layers = c->num_layers;
    out->num_heads = c->num_heads;
    out->num_kv_heads = c->num_kv_heads;
    out->head_dim = c->head_dim;
    out->context_length = h->context_length;
    out->supports_vision = 0;
    out->num_parameters = m->n_params;
    out->weight_bytes = m->weight_bytes;
    out->step_weight_bytes = m->step_weight_bytes;
    out->kv_bytes_per_token = gm_kv_bytes_per_token(m);
    return ret(0);
}

/* ------------------------------------------------------------ text */

static int need_tokenizer(const gm_model *m) {
    return m->tok ? 0 : gm_fail(GOMLX_ERR_INVALID_INPUT, "this model has no tokenizer (%s)", m->notes);
}

gomlx_status gomlx_tokenize(gomlx_model *h, const char *text, size_t len, int add_special,
                            int32_t **ids, size_t *n_ids) {
    int rc = usable(h);
    if (!rc && (!text || !ids || !n_ids)) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "NULL argument");
    if (!rc) rc = need_tokenizer(h->m);
    if (!rc) rc = gm_tokenizer_encode(h->m->tok, text, len, add_special, ids, n_ids);
    return ret(rc);
}

gomlx_status gomlx_detokenize(gomlx_model *h, const int32_t *ids, size_t n_ids, char **text) {
    int rc = usable(h);
    if (!rc && (!text || (!ids && n_ids))) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "NULL argument");
    if (!rc) rc = need_tokenizer(h->m);
    if (!rc) rc = gm_tokenizer_decode(h->m->tok, ids, n_ids, 0, text);
    return ret(rc);
}

static gm_chat_format chat_format(const gm_model *m) {
    return gm_chat_pick(m->tok, m->arch->default_chat_format);
}

static int check_messages(const gomlx_message *msgs, int n) {
    if (!msgs || n <= 0) return gm_fail(GOMLX_ERR_INVALID_INPUT, "no messages given");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].content) return gm_fail(GOMLX_ERR_INVALID_INPUT, "message %d has no content (NULL)", i);
        if (msgs[i].role != GOMLX_ROLE_SYSTEM && msgs[i].role != GOMLX_ROLE_USER && msgs[i].role != GOMLX_ROLE_ASSISTANT)
            return gm_fail(GOMLX_ERR_INVALID_INPUT, "message %d has no known role (%d)", i, (int)msgs[i].role);
        if (msgs[i].n_images > 0)
            return gm_fail(GOMLX_ERR_UNSUPPORTED, "this model does not support images (message %d has %d)", i, msgs[i].n_images);
    }
    return 0;
}

gomlx_status gomlx_apply_chat_template(gomlx_model *h, const gomlx_message *msgs, int n, char **text) {
    int rc = usable(h);
    if (!rc && !text) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "text is NULL");
    if (!rc) rc = check_messages(msgs, n);
    if (!rc) rc = gm_chat_render(chat_format(h->m), msgs, n, text);
    return ret(rc);
}

typedef struct {
    gomlx_model *h;
    const int32_t *ids;
    size_t n;
    int chunk;
    float *logits;
    int vocab;
} logits_job;

static int do_logits(void *arg) {
    logits_job *j = arg;
    return gm_logits(j->h->m, j->ids, j->n, j->chunk, &j->logits, &j->vocab);
}

gomlx_status gomlx_logits(gomlx_model *h, const int32_t *ids, size_t n, float **logits, int *vocab) {
    return gomlx_logits_chunked(h, ids, n, 0, logits, vocab);
}

gomlx_status gomlx_logits_chunked(gomlx_model *h, const int32_t *ids, size_t n, int chunk,
                                  float **logits, int *vocab) {
    int rc = usable(h);
    if (!rc && (!ids || !logits || !vocab)) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "NULL argument");
    if (!rc && chunk < 0) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "chunk must be 0 (default) or positive, not %d", chunk);
    if (rc) return ret(rc);
    logits_job j = {h, ids, n, chunk, NULL, 0};
    rc = gm_worker_call(&h->worker, do_logits, &j);
    if (!rc) {
        *logits = j.logits;
        *vocab = j.vocab;
    }
    return ret(rc);
}

/* ------------------------------------------------------------ sessions */

static int do_session_init(void *arg) {
    gomlx_session *s = arg;
    return gm_session_init(&s->s, s->model->m, s->model->context_length);
}

gomlx_status gomlx_session_new(gomlx_model *h, gomlx_session **out) {
    int rc = usable(h);
    if (!rc && !out) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "out is NULL");
    if (rc) return ret(rc);
    *out = NULL;
    gomlx_session *s = calloc(1, sizeof *s);
    if (!s) return ret(gm_fail(GOMLX_ERR_INTERNAL, "out of memory"));
    s->model = h;
    atomic_init(&s->cancel, 0);
    pthread_mutex_init(&s->cancel_mu, NULL);
    if ((rc = gm_worker_call(&h->worker, do_session_init, s))) {
        pthread_mutex_destroy(&s->cancel_mu);
        free(s);
        return ret(rc);
    }
    atomic_fetch_add(&h->refs, 1);
    pthread_mutex_lock(&h->sessions_mu);
    s->alive = 1;
    s->next = h->sessions;
    h->sessions = s;
    pthread_mutex_unlock(&h->sessions_mu);
    *out = s;
    return ret(0);
}

static int do_session_destroy(void *arg) {
    gomlx_session *s = arg;
    if (s->alive) gm_session_destroy(&s->s);
    s->alive = 0;
    return 0;
}

void gomlx_session_free(gomlx_session *s) {
    if (!s) return;
    gomlx_model *h = s->model;
    if (!atomic_load(&h->closed)) gm_worker_call(&h->worker, do_session_destroy, s);
    pthread_mutex_lock(&h->sessions_mu);
    for (gomlx_session **p = &h->sessions; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    pthread_mutex_unlock(&h->sessions_mu);
    pthread_mutex_destroy(&s->cancel_mu);
    free(s);
    release(h);
}

static int do_session_reset(void *arg) {
    gomlx_session *s = arg;
    if (s->alive) gm_session_clear(&s->s);
    return 0;
}

static int session_usable(gomlx_session *s) {
    if (!s) return gm_fail(GOMLX_ERR_INVALID_INPUT, "session is NULL");
    if (atomic_load(&s->model->closed) || !s->alive) return gm_fail(GOMLX_ERR_CLOSED, "the model is closed");
    return 0;
}

gomlx_status gomlx_session_reset(gomlx_session *s) {
    int rc = session_usable(s);
    if (!rc) rc = gm_worker_call(&s->model->worker, do_session_reset, s);
    return ret(rc);
}

void gomlx_cancel(gomlx_session *s) {
    /* Only a call queued or running can be cancelled: a stray cancel must
     * not stop the session's next, unrelated call. */
    if (!s) return;
    pthread_mutex_lock(&s->cancel_mu);
    if (s->in_flight > 0) atomic_store(&s->cancel, 1);
    pthread_mutex_unlock(&s->cancel_mu);
}

typedef struct {
    gomlx_session *s;
    const gomlx_message *msgs;
    int n_msgs;
    const char *prompt;
    const int32_t *ids;
    size_t n_ids;
    const gomlx_generate_params *p;
    gomlx_result *out;
} gen_job;

static int do_generate(void *arg) {
    gen_job *j = arg;
    gomlx_session *s = j->s;
    gm_model *m = s->model->m;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (!s->alive) return gm_fail(GOMLX_ERR_CLOSED, "the model is closed");
    if (j->msgs || j->prompt) {
        if ((rc = need_tokenizer(m))) goto done;
        char *text = NULL;
        int add_special = 1;
        if (j->msgs) {
            /* The rendered format spells out BOS itself. */
            if ((rc = gm_chat_render(chat_format(m), j->msgs, j->n_msgs, &text))) goto done;
            add_special = 0;
        }
        const char *src = text ? text : j->prompt;
        rc = gm_tokenizer_encode(m->tok, src, strlen(src), add_special, &ids, &n);
        free(text);
        if (rc) goto done;
        rc = gm_generate(&s->s, ids, n, j->p, &s->cancel, j->out);
    } else {
        rc = gm_generate(&s->s, j->ids, j->n_ids, j->p, &s->cancel, j->out);
    }
done:
    free(ids);
    return rc;
}

static gomlx_status generate(gen_job *j) {
    gomlx_generate_params defaults = gomlx_generate_params_default();
    if (!j->p) j->p = &defaults;
    int rc = session_usable(j->s);
    if (!rc && !j->out) rc = gm_fail(GOMLX_ERR_INVALID_INPUT, "out is NULL");
    if (rc) return ret(rc);
    memset(j->out, 0, sizeof *j->out);
    pthread_mutex_lock(&j->s->cancel_mu);
    j->s->in_flight++;
    pthread_mutex_unlock(&j->s->cancel_mu);
    rc = gm_worker_call(&j->s->model->worker, do_generate, j);
    pthread_mutex_lock(&j->s->cancel_mu);
    if (--j->s->in_flight == 0) atomic_store(&j->s->cancel, 0);
    pthread_mutex_unlock(&j->s->cancel_mu);
    return ret(rc);
}

gomlx_status gomlx_generate(gomlx_session *s, const gomlx_message *msgs, int n,
                            const gomlx_generate_params *p, gomlx_result *out) {
    int rc = check_messages(msgs, n);
    if (rc) {
        if (out) memset(out, 0, sizeof *out);
        return ret(rc);
    }
    gen_job j = {.s = s, .msgs = msgs, .n_msgs = n, .p = p, .out = out};
    return generate(&j);
}

gomlx_status gomlx_generate_text(gomlx_session *s, const char *prompt, const gomlx_generate_params *p,
                                 gomlx_result *out) {
    if (!prompt || !*prompt) {
        if (out) memset(out, 0, sizeof *out);
        return ret(gm_fail(GOMLX_ERR_INVALID_INPUT, "the prompt is empty"));
    }
    gen_job j = {.s = s, .prompt = prompt, .p = p, .out = out};
    return generate(&j);
}

gomlx_status gomlx_generate_ids(gomlx_session *s, const int32_t *ids, size_t n,
                                const gomlx_generate_params *p, gomlx_result *out) {
    if (!ids || !n) {
        if (out) memset(out, 0, sizeof *out);
        return ret(gm_fail(GOMLX_ERR_INVALID_INPUT, "the prompt is empty"));
    }
    gen_job j = {.s = s, .ids = ids, .n_ids = n, .p = p, .out = out};
    return generate(&j);
}

/* ------------------------------------------------------------ memory */

gomlx_status gomlx_get_memory_stats(gomlx_memory_stats *out) {
    if (!out) return ret(gm_fail(GOMLX_ERR_INVALID_INPUT, "out is NULL"));
    out->active = mx_active_memory();
    out->peak = mx_peak_memory();
    out->cache = mx_cache_memory();
    return ret(0);
}

void gomlx_reset_peak_memory(void) { mx_reset_peak_memory(); }
void gomlx_clear_cache(void) { mx_clear_cache(); }

gomlx_status gomlx_set_memory_limit(uint64_t bytes, uint64_t *previous) {
    if (bytes > SIZE_MAX) return ret(gm_fail(GOMLX_ERR_INVALID_INPUT, "a memory limit of %llu bytes does not fit a size_t",
                                             (unsigned long long)bytes));
    size_t before = 0;
    int rc = gm_memory_limit_set((size_t)bytes, &before);
    if (!rc && previous) *previous = before;
    return ret(rc);
}

gomlx_status gomlx_set_cache_limit(uint64_t bytes, uint64_t *previous) {
    size_t before = mx_set_cache_limit(bytes > SIZE_MAX ? SIZE_MAX : (size_t)bytes);
    if (previous) *previous = before;
    return ret(0);
}
