/* gomlx.h - run quantized text and vision LLMs locally on MLX.
 *
 * The one public header of libgomlx. Conventions:
 *  - Every symbol starts with gomlx_ / GOMLX_.
 *  - Handles are opaque, created by one call and destroyed by its pair
 *    (gomlx_model_load / gomlx_model_free, gomlx_session_new /
 *    gomlx_session_free).
 *  - Every call that can fail returns a gomlx_status; gomlx_last_error()
 *    gives the message of the last failure on the calling thread.
 *  - Option structs come from a *_default() constructor, so new fields can
 *    be added without breaking callers.
 *  - Thread safety: every function may be called from any thread. All MLX
 *    work of a model runs on that model's own worker thread; calls are
 *    queued to it. gomlx_cancel() never blocks.
 *  - Memory returned to the caller (strings, id arrays, results) is freed
 *    with gomlx_free() / gomlx_result_free(). */
#ifndef GOMLX_H
#define GOMLX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GOMLX_VERSION_MAJOR 0
#define GOMLX_VERSION_MINOR 1
#define GOMLX_VERSION_PATCH 0
#define GOMLX_VERSION "0.1.0"

/* Runtime version of the library ("0.1.0"). */
const char *gomlx_version(void);
/* Version of the MLX library linked in. */
const char *gomlx_mlx_version(void);

typedef enum gomlx_status {
    GOMLX_OK = 0,
    GOMLX_ERR_NOT_FOUND = 1,     /* a file or folder does not exist */
    GOMLX_ERR_UNSUPPORTED = 2,   /* architecture, tensor type, feature */
    GOMLX_ERR_INVALID_INPUT = 3, /* bad argument, empty messages, prompt too long */
    GOMLX_ERR_FORMAT = 4,        /* corrupt or inconsistent model files */
    GOMLX_ERR_CANCELLED = 5,     /* gomlx_cancel() was called */
    GOMLX_ERR_CLOSED = 6,        /* the model was freed while a call waited */
    GOMLX_ERR_BACKEND = 7,       /* MLX reported an error (e.g. out of memory) */
    GOMLX_ERR_INTERNAL = 8
} gomlx_status;

/* Message of the last failed call on this thread ("" if none). Valid until
 * the next gomlx call on this thread. */
const char *gomlx_last_error(void);
/* Short constant name of a status ("not found", ...). */
const char *gomlx_status_string(gomlx_status status);

/* Frees memory that a gomlx call returned (strings, id arrays). */
void gomlx_free(void *ptr);

/* ---------------------------------------------------------------- models */

typedef struct gomlx_model gomlx_model;
typedef struct gomlx_session gomlx_session;

typedef enum gomlx_device {
    GOMLX_DEVICE_AUTO = 0, /* the GPU when MLX has one (Metal, CUDA), else the CPU */
    GOMLX_DEVICE_CPU = 1,
    GOMLX_DEVICE_GPU = 2
} gomlx_device;

/* Progress while loading: fraction in [0,1] and a short message. Called on
 * the loading thread. */
typedef void (*gomlx_progress_fn)(float fraction, const char *message, void *user);

typedef struct gomlx_load_params {
    gomlx_device device;
    gomlx_progress_fn progress; /* may be NULL */
    void *progress_user;
    int context_length;         /* 0: the model's own maximum */
    int cpu_kernels;            /* -1: default (on; env GOMLX_CPU_KERNELS=0 turns off), 0 off, 1 on */
} gomlx_load_params;

gomlx_load_params gomlx_load_params_default(void);

/* Loads a model from an MLX-format folder (config.json, *.safetensors,
 * tokenizer.json) or a .gguf file. On success *out owns the model. */
gomlx_status gomlx_model_load(const char *path, const gomlx_load_params *params,
                              gomlx_model **out);
/* Frees the model and all its sessions' device memory. Waits for calls in
 * flight to finish; calls still queued fail with GOMLX_ERR_CLOSED. NULL ok. */
void gomlx_model_free(gomlx_model *model);

typedef struct gomlx_model_info {
    const char *architecture;   /* "llama", "qwen2", "gemma2", ... */
    const char *format;         /* "mlx" or "gguf" */
    const char *name;           /* folder or file name */
    const char *dtype;          /* activation dtype: "bfloat16", "float16", "float32" */
    const char *quantization;   /* "4-bit affine, group 64", "none", ... */
    const char *notes;          /* conversions made while loading, or "" */
    const char *device;         /* "cpu" or "gpu" */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int context_length;
    int supports_vision;
    uint64_t num_parameters;
    uint64_t weight_bytes;      /* bytes of all weights as loaded */
    uint64_t kv_bytes_per_token;
    /* Weight bytes one decoded token reads: all of them, less an untied
     * input embedding table but its one row (the bandwidth roofline's
     * numerator). */
    uint64_t step_weight_bytes;
} gomlx_model_info;

/* Fills *out; strings are owned by the model. */
gomlx_status gomlx_model_get_info(gomlx_model *model, gomlx_model_info *out);

/* ---------------------------------------------------------------- text */

/* Token ids for text. add_special adds BOS/EOS as the tokenizer's
 * post-processor would; special tokens written in the text are always
 * recognized. *ids is freed with gomlx_free. */
gomlx_status gomlx_tokenize(gomlx_model *model, const char *text, size_t len, int add_special,
                            int32_t **ids, size_t *n_ids);
/* Text for ids (special tokens included). *text is freed with gomlx_free. */
gomlx_status gomlx_detokenize(gomlx_model *model, const int32_t *ids, size_t n_ids, char **text);

typedef enum gomlx_role {
    GOMLX_ROLE_SYSTEM = 0,
    GOMLX_ROLE_USER = 1,
    GOMLX_ROLE_ASSISTANT = 2
} gomlx_role;

typedef struct gomlx_image {
    const char *path;           /* a file, or */
    const uint8_t *data;        /* encoded bytes (PNG, JPEG) and */
    size_t size;                /* their size */
} gomlx_image;

typedef struct gomlx_message {
    gomlx_role role;
    const char *content;
    const gomlx_image *images;  /* only for vision models */
    int n_images;
} gomlx_message;

/* The prompt text the chat format produces (with the generation prompt).
 * *text is freed with gomlx_free. */
gomlx_status gomlx_apply_chat_template(gomlx_model *model, const gomlx_message *messages,
                                       int n_messages, char **text);

/* Float32 logits at every position for ids fed as they are (no template,
 * no BOS added): *logits holds n_ids * vocab floats, freed with gomlx_free. */
gomlx_status gomlx_logits(gomlx_model *model, const int32_t *ids, size_t n_ids,
                          float **logits, int *vocab);
/* The same, fed `chunk` tokens per forward pass (0: 512). chunk 1 runs
 * every position through the one-token path that decoding uses. */
gomlx_status gomlx_logits_chunked(gomlx_model *model, const int32_t *ids, size_t n_ids, int chunk,
                                  float **logits, int *vocab);

/* ---------------------------------------------------------------- generation */

typedef enum gomlx_stop_reason {
    GOMLX_STOP_NONE = 0,
    GOMLX_STOP_EOS = 1,
    GOMLX_STOP_STRING = 2,
    GOMLX_STOP_MAX_TOKENS = 3,
    GOMLX_STOP_CANCELLED = 4,
    GOMLX_STOP_CALLBACK = 5,    /* the token callback returned non-zero */
    GOMLX_STOP_CONTEXT = 6      /* the context is full */
} gomlx_stop_reason;

const char *gomlx_stop_reason_string(gomlx_stop_reason r);

/* Called with each piece of text as it is generated (never half a UTF-8
 * character, never part of a stop string). Return non-zero to stop. Runs on
 * the model's worker thread: do not call gomlx functions of the same model
 * from it. */
typedef int (*gomlx_token_fn)(const char *text, size_t len, void *user);

typedef struct gomlx_generate_params {
    int max_tokens;             /* default 2048 */
    float temperature;          /* default 0.7; 0 = greedy */
    float top_p;                /* default 0.9; 1 = off */
    int top_k;                  /* default 0 = off */
    float min_p;                /* default 0 = off */
    uint64_t seed;              /* used when has_seed; else a random seed */
    int has_seed;
    const char *const *stop;    /* n_stop stop strings (NULL when n_stop is 0) */
    int n_stop;
    int ignore_eos;             /* benchmarks: keep going past EOS */
    int prefill_chunk;          /* tokens per prefill step; default 512 */
    gomlx_token_fn on_token;    /* may be NULL */
    void *user;
} gomlx_generate_params;

gomlx_generate_params gomlx_generate_params_default(void);

typedef struct gomlx_stats {
    int prompt_tokens;          /* tokens prefilled (after cache reuse) */
    int cached_tokens;          /* prompt tokens reused from the session's cache */
    int generated_tokens;
    double prompt_tps;
    double decode_tps;
    double ttft_ms;             /* time to first token */
    double total_ms;
    uint64_t peak_memory;       /* bytes, MLX peak during the call */
    gomlx_stop_reason stop_reason;
    /* Host time per decoded token spent building the next step's graph
     * (model and sampler) and detokenizing, matching stop strings and
     * calling back; not the time spent waiting on MLX. */
    double host_ms_per_token;
    /* Time per decoded token inside MLX handing the queued step to the
     * device (its graph walk and kernel launches; on the CPU this also
     * blocks while MLX's queue is full), and time blocked reading the
     * token. When wait is near zero the device finished before the host
     * had queued the next step: the host, not the device, sets the pace. */
    double dispatch_ms_per_token;
    double wait_ms_per_token;
} gomlx_stats;

typedef struct gomlx_result {
    char *text;                 /* the whole answer (stop string excluded) */
    int32_t *tokens;            /* generated ids */
    int n_tokens;
    gomlx_stats stats;
} gomlx_result;

void gomlx_result_free(gomlx_result *r); /* frees the members; NULL ok */

/* A session holds a KV cache and the tokens in it; several sessions may
 * share one model. */
gomlx_status gomlx_session_new(gomlx_model *model, gomlx_session **out);
void gomlx_session_free(gomlx_session *session);
/* Forgets the cached conversation. */
gomlx_status gomlx_session_reset(gomlx_session *session);

/* Renders the messages with the model's chat format and generates the
 * assistant's answer. The cached prefix shared with the previous call is
 * reused. */
gomlx_status gomlx_generate(gomlx_session *session, const gomlx_message *messages,
                            int n_messages, const gomlx_generate_params *params,
                            gomlx_result *out);
/* Generates from raw text (no chat format; BOS added if the tokenizer
 * adds one). */
gomlx_status gomlx_generate_text(gomlx_session *session, const char *prompt,
                                 const gomlx_generate_params *params, gomlx_result *out);
/* Generates from raw ids. */
gomlx_status gomlx_generate_ids(gomlx_session *session, const int32_t *ids, size_t n_ids,
                                const gomlx_generate_params *params, gomlx_result *out);

/* Asks the session's running or queued generation to stop. It stops
 * between prefill chunks or between tokens and returns with stop_reason
 * GOMLX_STOP_CANCELLED and status GOMLX_ERR_CANCELLED. With no generation
 * in flight it does nothing, so a late cancel never hits the next call.
 * Never blocks. */
void gomlx_cancel(gomlx_session *session);

/* ---------------------------------------------------------------- memory */

typedef struct gomlx_memory_stats {
    uint64_t active;            /* bytes held by arrays */
    uint64_t peak;              /* high-water mark since the last reset */
    uint64_t cache;             /* bytes MLX keeps for reuse */
} gomlx_memory_stats;

gomlx_status gomlx_get_memory_stats(gomlx_memory_stats *out);
void gomlx_reset_peak_memory(void);
/* Returns MLX's buffer cache to the system. */
void gomlx_clear_cache(void);
/* MLX's memory limit, in bytes, for the whole process: a guideline, not a
 * cap. Past it, MLX waits for queued work to finish (and free its buffers)
 * before it allocates more, so a generation runs slower rather than fails;
 * memory the machine does not have still fails (GOMLX_ERR_BACKEND). MLX's
 * default depends on the device (on Metal 1.5x the recommended working
 * set). A CPU prompt's prefill bounds it
 * further while it runs and puts this one back. *previous (may be NULL)
 * gets the limit before; 0 bytes is refused. */
gomlx_status gomlx_set_memory_limit(uint64_t bytes, uint64_t *previous);
/* How many bytes of freed buffers MLX keeps for reuse (the memory stats'
 * `cache`), for the whole process: above it they go back to the system at
 * the next allocation; 0 keeps none (every buffer allocated anew, a little
 * slower). MLX's default depends on the device. *previous (may be NULL)
 * gets the limit before. */
gomlx_status gomlx_set_cache_limit(uint64_t bytes, uint64_t *previous);

#ifdef __cplusplus
}
#endif
#endif
