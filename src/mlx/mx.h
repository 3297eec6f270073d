/* mx.h - the engine's C view of MLX: opaque arrays, the ops we use, I/O,
 * memory and device control. Implemented in C++ (mx.cpp and friends); the
 * only header the C engine includes to reach MLX. No model knowledge here.
 *
 * Errors: a failing call returns NULL (or -1) and records a message in a
 * thread-local buffer (mx_error()). No C++ exception ever crosses into C.
 * Every op given a NULL input returns NULL at once without touching the
 * message, so a chain of ops can be checked once at its end.
 *
 * Lifetimes: every array returned by an op belongs to the innermost scope
 * opened on the calling thread (mx_scope_open); closing the scope frees
 * them all. mx_keep() takes an array out of its scope: the caller then owns
 * it and frees it with mx_free(). With no scope open, the caller owns every
 * returned array. Arrays handed to a callback (loaders) are owned by the
 * callee, as if returned with no scope open. */
#ifndef GOMLX_MX_H
#define GOMLX_MX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mx_array_s *mx_array;
typedef struct mx_scope_s mx_scope;

typedef enum {
    MX_BOOL,
    MX_UINT8,
    MX_UINT32,
    MX_INT32,
    MX_INT64,
    MX_FLOAT16,
    MX_BFLOAT16,
    MX_FLOAT32,
    MX_OTHER /* a dtype the engine does not handle */
} mx_dtype;

#define MX_MAX_DIMS 8

/* ---- errors, scopes, lifetimes ---- */
const char *mx_error(void);        /* "" when none */
void mx_set_error(const char *fmt, ...);
void mx_clear_error(void);

mx_scope *mx_scope_open(void);
void mx_scope_close(mx_scope *scope); /* frees every array still owned */
mx_array mx_keep(mx_array a);         /* detach from scope; NULL passes */
void mx_free(mx_array a);             /* NULL is fine; also if in a scope */
mx_array mx_copy_ref(mx_array a);     /* a second handle to the same array */

/* ---- device, streams, memory ---- */
int mx_gpu_available(void);           /* 1 when a GPU (Metal/CUDA) backend exists */
int mx_set_device(int gpu);           /* default device for this process: 0 cpu, 1 gpu */
int mx_device_is_gpu(void);
const char *mx_version(void);
size_t mx_active_memory(void);
size_t mx_peak_memory(void);
size_t mx_cache_memory(void);
void mx_reset_peak_memory(void);
void mx_clear_cache(void);
/* Bytes of freed buffers MLX keeps for reuse; over it they go back to the
 * system at the next allocation (0: none kept). Returns the previous. */
size_t mx_set_cache_limit(size_t bytes);
/* MLX's memory limit (process-wide): past it, MLX's scheduler waits for
 * queued work to finish before it allocates the outputs of more. Returns
 * the previous limit. */
size_t mx_set_memory_limit(size_t bytes);
size_t mx_memory_limit(void);
size_t mx_set_wired_limit(size_t bytes);  /* no-op where unsupported */
/* The memory the default device recommends keeping resident (Metal's
 * max_recommended_working_set_size); 0 where it has no such figure. */
size_t mx_recommended_wired(void);

/* ---- inspection ---- */
int mx_ndim(mx_array a);
int mx_dim(mx_array a, int axis);     /* negative axis counts from the end */
size_t mx_size(mx_array a);           /* number of elements */
size_t mx_nbytes(mx_array a);
mx_dtype mx_get_dtype(mx_array a);
const char *mx_dtype_name(mx_dtype t);
size_t mx_dtype_size(mx_dtype t);

/* ---- evaluation and readback ---- */
int mx_eval(mx_array *arrays, int n);        /* 0 ok, -1 error */
int mx_async_eval(mx_array *arrays, int n);
/* Waits until the default stream's work is done and MLX has let go of the
 * buffers it held for it (on a GPU it releases them on a worker thread
 * after the outputs are ready), so that memory in use is back down. */
int mx_settle(void);
/* Evaluates a, converts it to `as` and copies its elements (row-major)
 * into dst, which holds `cap` bytes. */
int mx_read(mx_array a, mx_dtype as, void *dst, size_t cap);
int mx_item_int(mx_array a, int64_t *out);
int mx_item_float(mx_array a, double *out);

/* ---- creation ---- */
mx_array mx_from_data(const void *data, const int *shape, int ndim, mx_dtype t); /* copies */
mx_array mx_scalar(double v, mx_dtype t);
mx_array mx_zeros(const int *shape, int ndim, mx_dtype t);
mx_array mx_full(const int *shape, int ndim, double v, mx_dtype t);
mx_array mx_arange(int start, int stop, int step, mx_dtype t);

/* ---- shape and layout ---- */
mx_array mx_reshape(mx_array a, const int *shape, int ndim);
mx_array mx_transpose(mx_array a, const int *perm, int ndim);
mx_array mx_swapaxes(mx_array a, int axis1, int axis2);
mx_array mx_expand_dims(mx_array a, int axis);
mx_array mx_squeeze(mx_array a, int axis);
mx_array mx_astype(mx_array a, mx_dtype t);
mx_array mx_contiguous(mx_array a);
/* start/stop per axis for the first ndim axes (stop clamped to the size),
 * remaining axes whole; strides NULL means 1. */
mx_array mx_slice(mx_array a, const int *start, const int *stop, const int *strides, int ndim);
/* Writes src into dst[start:stop] (all axes); returns the updated array.
 * MLX reuses dst's buffer when dst has no other reference at eval time. */
mx_array mx_slice_update(mx_array dst, mx_array src, const int *start, const int *stop, int ndim);
mx_array mx_concat(const mx_array *arrays, int n, int axis);
mx_array mx_repeat(mx_array a, int repeats, int axis);
mx_array mx_broadcast_to(mx_array a, const int *shape, int ndim);

/* ---- elementwise ---- */
mx_array mx_add(mx_array a, mx_array b);
mx_array mx_subtract(mx_array a, mx_array b);
mx_array mx_multiply(mx_array a, mx_array b);
mx_array mx_divide(mx_array a, mx_array b);
mx_array mx_maximum(mx_array a, mx_array b);
mx_array mx_minimum(mx_array a, mx_array b);
mx_array mx_power(mx_array a, mx_array b);
mx_array mx_negative(mx_array a);
mx_array mx_exp(mx_array a);
mx_array mx_log(mx_array a);
mx_array mx_sqrt(mx_array a);
mx_array mx_rsqrt(mx_array a);
mx_array mx_tanh(mx_array a);
mx_array mx_sin(mx_array a);
mx_array mx_cos(mx_array a);
mx_array mx_sigmoid(mx_array a);
mx_array mx_erf(mx_array a);
mx_array mx_abs(mx_array a);
mx_array mx_square(mx_array a);
mx_array mx_greater(mx_array a, mx_array b);
mx_array mx_greater_equal(mx_array a, mx_array b);
mx_array mx_less(mx_array a, mx_array b);
mx_array mx_less_equal(mx_array a, mx_array b);
mx_array mx_equal(mx_array a, mx_array b);
mx_array mx_logical_and(mx_array a, mx_array b);
mx_array mx_logical_not(mx_array a);
mx_array mx_where(mx_array cond, mx_array a, mx_array b);
/* silu(gate) * up and gelu_tanh(gate) * up, one fused kernel on the GPU. */
mx_array mx_swiglu(mx_array gate, mx_array up);
mx_array mx_geglu(mx_array gate, mx_array up);
/* The same for a stacked projection gu [..., 2*ff] (gate first, then up):
 * gelu 0 SwiGLU, 1 GeGLU. On the CPU with our kernels one pass of ours
 * (no intermediates), else the ops above on the two halves. */
mx_array mx_gated_stacked(mx_array gu, int gelu);
/* cap * tanh(x / cap) in x's dtype (each op rounded to it), and where keep
 * is given (broadcast to x) -inf where it is false: one fused kernel on
 * the GPU (Gemma 2's attention scores). */
mx_array mx_softcap_masked(mx_array x, float cap, mx_array keep);
/* x * scalar, keeping x's dtype (the scalar is cast to it) */
mx_array mx_scale(mx_array x, double s);

/* ---- reductions, sorting, indexing ---- */
mx_array mx_sum(mx_array a, int axis, int keepdims);
mx_array mx_mean(mx_array a, int axis, int keepdims);
mx_array mx_max(mx_array a, int axis, int keepdims);
mx_array mx_min(mx_array a, int axis, int keepdims);
mx_array mx_argmax(mx_array a, int axis, int keepdims);
mx_array mx_logsumexp(mx_array a, int axis, int keepdims);
mx_array mx_softmax(mx_array a, int axis, int precise);
mx_array mx_cumsum(mx_array a, int axis, int reverse, int inclusive);
mx_array mx_sort(mx_array a, int axis);
mx_array mx_argsort(mx_array a, int axis);
mx_array mx_argpartition(mx_array a, int kth, int axis);
mx_array mx_take(mx_array a, mx_array indices, int axis);
mx_array mx_take_along_axis(mx_array a, mx_array indices, int axis);
mx_array mx_put_along_axis(mx_array a, mx_array indices, mx_array values, int axis);

/* ---- linear algebra and quantization ---- */
mx_array mx_matmul(mx_array a, mx_array b);
/* MLX affine quantization; biases may be NULL only for modes without them.
 * transpose=1 computes x @ w.T (w stored [out, in]). On the CPU device our
 * own kernels run here when enabled (see mx_set_cpu_kernels). */
mx_array mx_quantized_matmul(mx_array x, mx_array w, mx_array scales, mx_array biases,
                             int transpose, int group_size, int bits);
mx_array mx_dequantize(mx_array w, mx_array scales, mx_array biases, int group_size, int bits,
                       mx_dtype out);
/* Quantizes along the last axis; writes three owned-by-scope arrays. */
int mx_quantize(mx_array w, int group_size, int bits, mx_array *wq, mx_array *scales,
                mx_array *biases);
/* 1 = our CPU quantized kernels on (default unless GOMLX_CPU_KERNELS=0), 0 = MLX's. */
void mx_set_cpu_kernels(int on);
int mx_cpu_kernels(void);
/* 1 = our 4-bit matrix-vector kernel for one token on CUDA GPUs (default
 * unless GOMLX_CUDA_QMV=0; compiled with NVRTC on first use), 0 = MLX's. */
void mx_set_cuda_qmv(int on);
/* "in use", "not used yet", "off (GOMLX_CUDA_QMV=0)", or why it could not
 * be compiled or run (MLX's kernel runs then); "in use" says whether its
 * tensor-core form has run, and why not where it could not. */
const char *mx_cuda_qmv_status(void);
/* Products handed to our CUDA mat-vec so far (graph nodes built). */
long mx_cuda_qmv_calls(void);
/* Of those, the ones its tensor-core kernel took (GOMLX_CUDA_QMV_TC). */
long mx_cuda_qmv_tc_calls(void);
/* 1 when MLX's CUDA backend is present (not Metal, not CPU-only). */
int mx_cuda_available(void);
/* The CUDA GPU's compute capability as 10 * major + minor (90: Hopper), 0
 * when unknown. */
int mx_cuda_capability(void);
/* The GPU's memory read bandwidth in GB/s: the best of `passes` passes,
 * each 24 launches of a streaming read kernel over a buffer of `bytes`
 * (at most 4 GiB). 0 with err (may be NULL) set when it cannot run. The
 * buffer stays in MLX's cache: mx_clear_cache() after. */
double mx_cuda_read_gbps(size_t bytes, int passes, char *err, size_t err_len);

/* ---- a whole decoder layer for one token on the CPU (src/kernels/layer_step.h) ----
 * One graph node instead of some sixty: norm, q/k/v, RoPE, KV-cache write,
 * attention, output projection, residual, norm, gated MLP, residual. */
typedef struct mx_qlinear {
    mx_array w, scales, biases; /* affine-quantized [out, in*bits/32] uint32 + groups */
    mx_array bias;              /* optional */
    int bits, group_size;
} mx_qlinear;

typedef struct mx_layer_step {
    mx_array attn_norm, mlp_norm;           /* RMSNorm weights [hidden] */
    mx_array post_attn_norm, post_mlp_norm; /* Gemma 2, else NULL */
    mx_qlinear qkv, o, gate_up, down;       /* q|k|v stacked; gate|up stacked */
    int gelu;                               /* GeGLU (tanh) instead of SwiGLU */
    int n_heads, n_kv_heads, head_dim;
    float eps;
    mx_array inv_freq;    /* float32 [head_dim/2]: RoPE angle per position */
    /* > 0: the base the angles come from where the model has no frequency
     * table; the CUDA kernel then computes them as MLX's CUDA RoPE does
     * (exp2 of -j/(head_dim/2) * log2(base)), not from inv_freq, which
     * holds the CPU's exp(-j * ln(base)/(head_dim/2)) */
    float rope_base;
    float position;       /* offset * rope scale */
    int rope_traditional;
    /* [1, kv_heads, capacity, head_dim]: the new key/value go to `slot`,
     * written into these buffers in place (the caller keeps its handles,
     * so MLX never donates them elsewhere); the token attends to
     * first..slot. */
    mx_array k_cache, v_cache;
    int slot, first;
    float attn_scale, softcap;
} mx_layer_step;

/* h [1, 1, hidden] -> the layer's output, same shape and dtype. Every
 * array must share h's dtype (scales may differ); NULL with a message when
 * the arguments do not suit the kernel. */
mx_array mx_cpu_layer_step(mx_array h, const mx_layer_step *s);

/* ---- a step's layers for one token on NVIDIA GPUs (src/mlx/cuda_layer.cpp) ----
 * One kernel, one graph node, for all the layers of a decode step of a
 * Llama-family or Gemma 2 model: 4-bit affine projections stacked as in
 * mx_layer_step, bfloat16 or float16 activations. s[0..n) are the layers
 * in order; they must share their shapes, eps, score scale and soft-cap
 * (each has its own cache, slot and first). GOMLX_CUDA_LAYER=0 (or
 * mx_set_cuda_layer(0)) turns it off. */
/* NULL when n layers like s (caches may be NULL) can run through the
 * kernel, compiling it and running it once now; else why not. */
const char *mx_cuda_layers_ready(const mx_layer_step *s, int n);
/* Per session: the kernel's scratch (its blocks hand each other values
 * through it) and the table of the layers' buffers, rebuilt when one moves. */
typedef struct mx_cuda_layers mx_cuda_layers;
mx_cuda_layers *mx_cuda_layers_new(const mx_layer_step *s, int n);
void mx_cuda_layers_free(mx_cuda_layers *c);
/* h [1, 1, hidden] -> the last layer's output, same shape and dtype. */
mx_array mx_cuda_layers_step(mx_cuda_layers *c, mx_array h, const mx_layer_step *s, int n);
/* 1 when a kernel run with c gave up waiting at a barrier (its blocks
 * were not all resident: results wrong); evaluates. -1 on error. */
int mx_cuda_layers_timed_out(mx_cuda_layers *c);
/* With GOMLX_CUDA_LAYER_TIMING=1: the GPU clock (ns) in one layer of the
 * last run (the second where c has several, else the first): 0-5 block
 * 0's at the start and at the end of each of the five phases (after each
 * phase's barrier); then the latest over all
 * blocks at: 6 the attention's start, 7 its keys done, 8 its partials
 * written, 9 a merge done, 10-14 the arrival at each phase's barrier. */
int mx_cuda_layers_stamps(mx_cuda_layers *c, uint64_t stamps[16]);
void mx_set_cuda_layer(int on);
/* 1 unless turned off (GOMLX_CUDA_LAYER=0 or mx_set_cuda_layer(0)). */
int mx_cuda_layer_on(void);
/* Layer steps handed to the kernel so far (graph nodes built). */
long mx_cuda_layer_calls(void);
/* The last mx_cuda_layers_ready verdict: "in use", "not used yet",
 * "off (GOMLX_CUDA_LAYER=0)", "not used: <why>" or why it failed. */
const char *mx_cuda_layer_status(void);

/* ---- fused transformer pieces (mlx::core::fast) ---- */
mx_array mx_rms_norm(mx_array x, mx_array weight, float eps);  /* weight may be NULL */
mx_array mx_layer_norm(mx_array x, mx_array weight, mx_array bias, float eps);
/* x [B, H, T, D]; rotates the first `dims` features starting at position
 * `offset`. freqs (may be NULL) overrides base, as for llama3 scaling. */
mx_array mx_rope(mx_array x, int dims, int traditional, float base, float scale, int offset,
                 mx_array freqs);
/* q [B, Hq, Tq, D], k/v [B, Hkv, Tk, D]; GQA when Hq is a multiple of Hkv.
 * causal=1 uses MLX's causal mode (queries aligned to the end of the keys);
 * mask (additive float or boolean keep-mask, broadcastable to
 * [B, Hq, Tq, Tk]) may be given instead; both 0/NULL means no mask. */
mx_array mx_sdpa(mx_array q, mx_array k, mx_array v, float scale, int causal, mx_array mask);
/* Our CPU attention kernel with what mx_sdpa has no word for: a sliding
 * window (keys older than `window` positions before each query dropped;
 * needs causal) and tanh soft-capping of the scores (softcap > 0). NULL
 * with a message off the CPU, with the CPU kernels off, or for sizes the
 * kernel does not take (see gm_attention_supported). */
mx_array mx_cpu_sdpa(mx_array q, mx_array k, mx_array v, float scale, int causal, int window,
                     float softcap);
/* 1 when mx_cpu_sdpa can run: CPU device, CPU kernels on, GOMLX_CPU_SDPA
 * not 0. */
int mx_cpu_sdpa_on(void);

/* ---- random ---- */
mx_array mx_random_key(uint64_t seed);
int mx_random_split(mx_array key, mx_array *k1, mx_array *k2);
/* Samples one index per row from unnormalized log-probabilities. */
mx_array mx_random_categorical(mx_array logits, int axis, mx_array key);

/* ---- files ---- */
/* Called once per tensor; the callee owns `a`. Return non-zero to stop. */
typedef int (*mx_tensor_fn)(const char *name, mx_array a, void *user);
/* Safetensors: metadata strings are passed to meta_fn (may be NULL). */
typedef int (*mx_meta_str_fn)(const char *key, const char *value, void *user);
int mx_load_safetensors(const char *path, mx_tensor_fn fn, mx_meta_str_fn meta_fn, void *user);

typedef enum { MX_META_NONE, MX_META_ARRAY, MX_META_STRING, MX_META_STRINGS } mx_meta_kind;
typedef struct {
    mx_meta_kind kind;
    mx_array array;          /* MX_META_ARRAY: borrowed, valid during the call */
    const char *string;      /* MX_META_STRING */
    const char *const *strings; /* MX_META_STRINGS */
    size_t n_strings;
} mx_meta_value;
typedef int (*mx_meta_fn)(const char *key, const mx_meta_value *v, void *user);
/* GGUF through MLX's reader: Q4_0/Q4_1/Q8_0 arrive as affine-quantized
 * triples (<name>.weight uint32, .scales, .biases); Q2_K/Q4_K/Q6_K arrive
 * dequantized (float16; MLX 0.32's Q4_K decoding is wrong, see
 * src/io/gguf.c); F16/F32 as they are, BF16 as float16. Files holding any
 * other type are refused with the tensor and type named. */
int mx_load_gguf(const char *path, mx_tensor_fn fn, mx_meta_fn meta_fn, void *user);
/* One tensor as a GGUF file's header describes it, before any conversion. */
typedef struct {
    const char *name;       /* valid during the call */
    int ggml_type;          /* GGML type id: 0 F32, 1 F16, 12 Q4_K, 30 BF16, ... */
    int ndim;
    int64_t shape[4];       /* row-major, as MLX shapes it: shape[ndim-1] is the row */
    uint64_t offset;        /* absolute byte offset of the tensor's blocks in the file */
    uint64_t nbytes;
} mx_gguf_tensor;
typedef int (*mx_gguf_tensor_fn)(const mx_gguf_tensor *t, void *user);
/* Walks the header (bounds-checked as mx_load_gguf does) and calls fn for
 * every tensor, in file order, whatever its type; non-zero from fn stops
 * the walk and is returned. -1 on a bad file (mx_error()). */
int mx_gguf_tensors(const char *path, mx_gguf_tensor_fn fn, void *user);
/* "Q4_K" for 12 and so on; NULL for an id GGML does not define. */
const char *mx_ggml_type_name(int ggml_type);
/* 1 when mx_load_gguf can read tensors of this type (it refuses the file
 * otherwise, naming the tensor and its type). */
int mx_gguf_mlx_reads(int ggml_type);
int mx_save_npy(const char *path, mx_array a);
int mx_save_safetensors(const char *path, const char *const *names, const mx_array *arrays, int n);

#ifdef __cplusplus
}
#endif
#endif
