// cuda_layer.cpp - a whole decoder layer for one token on NVIDIA GPUs as
// one node of MLX's graph (cuda_layer_source.h; GOMLX_CUDA_LAYER=0 turns it
// off). With MLX's ops a decode step on the GPU is paced by the host
// handing them to the device (docs/GPU.md): ~13 nodes a layer cost the host
// more than the device needs to read the layer's weights. Folding a few
// ops into our kernels did not pay (a custom node costs the host 3-4x an
// MLX one); one node for the whole layer does, and the device sets the pace.
//
// The kernel runs one block per SM with grid-wide barriers between its
// phases, so all of its blocks must be resident at once: one block per SM
// (512 threads, <= 128 registers, <= 48 KB of shared memory) and nothing
// else of ours running beside it. Like the CPU layer (cpu_layer.cpp) it
// writes the new key and value into the cache buffers it gets as inputs:
// the engine keeps its own handle to each (MLX never donates them) and every
// reader and writer of a cache is ordered through the residual stream or an
// evaluation (kv_cache.c). A per-session scratch buffer holds what its
// blocks hand each other.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/fast.h>
#include <mlx/mlx.h>

#include "mlx/cuda_common_source.h"
#include "mlx/cuda_jit.h"
#include "mlx/cuda_layer_source.h"
#include "mlx/mx_internal.h"

namespace mc = mlx::core;
using mc::array;
using gomlx::cuda_jit::Kernel;
using namespace gomlx::mx;

namespace {

const int kThreads = 512, kWarps = kThreads / 32;
// Scratch control words, as in the source (CTRL_WORDS, BAR_TIMEOUT): the
// barrier at 0-2, one counter per kv head from 8, clock stamps from 48, so
// at most 40 kv heads.
const int kCtrlWords = 64, kBarTimeout = 2, kMaxKv = 40;
const int kMaxSharedBytes = 48 * 1024;    // without opting in to more

int env_enabled() {
    const char *e = getenv("GOMLX_CUDA_LAYER");
    return !(e && strcmp(e, "0") == 0);
}

std::atomic<int> g_enabled{env_enabled()};
std::atomic<long> g_calls{0};
std::mutex g_mu;
std::string g_status = "not used yet";
std::map<std::tuple<int, int, int, int, int, int>, Kernel> g_kernels;

// Tuning knobs (A/B runs, docs/GPU.md): chunks a lane loads ahead (more
// than 1 measured slower on an H100, as did an L2 prefetch of the next
// phases' weights), rows per item in phases A and D, fewest keys per
// attention chunk; the phase timestamps of tools/c/bench_cuda_layer.c.
using gomlx::cuda_jit::env_int;
const int kDotUnroll = env_int("GOMLX_CUDA_LAYER_U", 1, 1, 4);
const int kRowsA = env_int("GOMLX_CUDA_LAYER_RA", 4, 2, 4) == 2 ? 2 : 4;
const int kRowsD = env_int("GOMLX_CUDA_LAYER_RD", 4, 2, 4) == 2 ? 2 : 4;
const int kMinChunkKeys = env_int("GOMLX_CUDA_LAYER_KC", 32, 1, 4096);
const int kTiming = env_int("GOMLX_CUDA_LAYER_TIMING", 0, 0, 1);

// Streaming multiprocessors of device 0 (MLX's); 0 when unknown.
int sm_count() {
    const int kMultiprocessorCount = 16;  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    static const int n = gomlx::cuda_jit::device_attribute(kMultiprocessorCount);
    return n;
}

struct Dims {
    int hidden, n_heads, n_kv, head_dim, ff, gs, half, bias, trad;
};

size_t scratch_words(const Dims &d, int grid) {
    size_t qd = (size_t)d.n_heads * d.head_dim;
    return kCtrlWords + ((qd + 3) & ~(size_t)3) + (size_t)d.n_heads * grid * (d.head_dim + 2) +
           ((qd + 7) & ~(size_t)7) / 2 + ((size_t)d.ff + 1) / 2 + 16;
}

// x staged as 16-bit values, or per warp a head's attention sums, or per
// query head of a kv head the weights of its key chunks (<= one per block).
int shared_bytes(const Dims &d) {
    int elems = std::max({d.hidden, d.n_heads * d.head_dim, d.ff});
    return std::max({2 * elems, 4 * kWarps * (d.head_dim + 2), 4 * (d.n_heads / d.n_kv) * sm_count()});
}

// Why a linear cannot be taken (nullptr when it can): 4-bit affine, the
// activations' dtype, [N, K] with K a multiple of 32 and of the group size
// (so rows are 16-byte multiples; layout_misfit checks the buffers).
const char *linear_misfit(const mx_qlinear &l, mc::Dtype t, int N, int K, int gs, bool bias_ok) {
    if (!l.w || !l.scales || !l.biases || l.bits != 4) return "a projection is not 4-bit affine-quantized";
    if (l.group_size != gs) return "the projections differ in group size";
    if (l.bias && !bias_ok) return "a bias the kernel has no place for";
    const array &w = l.w->a, &s = l.scales->a, &b = l.biases->a;
    if (w.dtype() != mc::uint32) return "packed weights not uint32";
    if (s.dtype() != t || b.dtype() != t) return "scales not in the activations' dtype";
    if (K % 32 || K % gs || w.ndim() != 2 || w.shape(0) != N || w.shape(1) != K / 8 || s.ndim() != 2 ||
        s.shape(0) != N || s.shape(1) != K / gs || b.shape() != s.shape())
        return "a projection's shape";
    if (l.bias && (l.bias->a.dtype() != t || l.bias->a.size() != (size_t)N)) return "a bias's shape or dtype";
    return nullptr;
}

const char *misfit(const mx_layer_step *s, mc::Dtype t, Dims *d, bool need_cache) {
    if (!g_enabled.load()) return "off (GOMLX_CUDA_LAYER=0)";
    if (!mc::cu::is_available()) return "no CUDA backend";
    if (t != mc::bfloat16 && t != mc::float16) return "activations not bfloat16 or float16";
    if (s->post_attn_norm || s->post_mlp_norm || s->gelu || s->softcap > 0)
        return "Gemma 2's extra norms, GeGLU or soft-capping";
    if (!s->attn_norm || !s->mlp_norm || !s->inv_freq) return "missing norms or RoPE table";
    if (need_cache && (!s->k_cache || !s->v_cache)) return "missing caches";
    int hd = s->head_dim, nh = s->n_heads, nkv = s->n_kv_heads;
    if (hd <= 0 || hd % 64 || hd > 256 || nkv <= 0 || nh % nkv || nh / nkv > 8 || nkv > kMaxKv)
        return "head layout (head_dim 64, 128, 192 or 256, at most 8 query heads per kv head, 40 kv heads)";
    if (!s->qkv.w || !s->gate_up.w) return "q|k|v or gate|up not stacked";
    int hidden = s->attn_norm->a.size(), qd = nh * hd, kvd = nkv * hd;
    int ff = s->gate_up.w->a.shape(0) / 2, gs = s->qkv.group_size;
    if (gs != 32 && gs != 64 && gs != 128) return "group size not 32, 64 or 128";
    const char *why;
    if ((why = linear_misfit(s->qkv, t, qd + 2 * kvd, hidden, gs, true)) ||
        (why = linear_misfit(s->o, t, hidden, qd, gs, false)) ||
        (why = linear_misfit(s->gate_up, t, 2 * ff, hidden, gs, false)) ||
        (why = linear_misfit(s->down, t, hidden, ff, gs, false)))
        return why;
    if (hidden % 2 || s->mlp_norm->a.size() != (size_t)hidden || s->attn_norm->a.dtype() != t ||
        s->mlp_norm->a.dtype() != t)
        return "norm weights' shape or dtype";
    if (s->inv_freq->a.dtype() != mc::float32 || s->inv_freq->a.size() != (size_t)hd / 2)
        return "RoPE table";
    if (need_cache) {
        const array &kc = s->k_cache->a, &vc = s->v_cache->a;
        if (kc.ndim() != 4 || kc.shape(0) != 1 || kc.shape(1) != nkv || kc.shape(3) != hd || vc.shape() != kc.shape() ||
            kc.dtype() != t || vc.dtype() != t)
            return "cache shape or dtype";
    }
    *d = Dims{hidden, nh, nkv, hd, ff, gs, t == mc::float16, s->qkv.bias != nullptr, s->rope_traditional != 0};
    if (shared_bytes(*d) > kMaxSharedBytes) return "hidden, q or MLP width over 24576";
    if (sm_count() <= 0) return "the GPU's SM count is unknown";
    return nullptr;
}

// Why an input cannot be read as the kernel reads it: every buffer already
// computed must be row-contiguous and 16-byte aligned (weights come in
// 16-byte loads); one not computed yet is an op's fresh output, which is.
const char *layout_misfit(const std::vector<array> &in) {
    for (const array &a : in) {
        if (!a.is_available()) continue;
        if (!a.flags().row_contiguous) return "an input is a strided view";
        if (reinterpret_cast<uintptr_t>(a.data<void>()) % 16) return "an input is not 16-byte aligned";
    }
    return nullptr;
}

std::vector<array> inputs(const array &h, const mx_layer_step *s, const array &scratch) {
    std::vector<array> in = {h, s->attn_norm->a, s->qkv.w->a, s->qkv.scales->a, s->qkv.biases->a};
    if (s->qkv.bias) in.push_back(s->qkv.bias->a);
    for (const mx_qlinear *l : {&s->o})
        in.insert(in.end(), {l->w->a, l->scales->a, l->biases->a});
    in.push_back(s->mlp_norm->a);
    for (const mx_qlinear *l : {&s->gate_up, &s->down})
        in.insert(in.end(), {l->w->a, l->scales->a, l->biases->a});
    in.insert(in.end(), {s->inv_freq->a, s->k_cache->a, s->v_cache->a, scratch});
    return in;
}

// The kernel on `in` (inputs(h, s, scratch)).
array call(const Kernel &k, const std::string &code, const Dims &d, std::vector<array> in,
           const mx_layer_step *s) {
    int grid = sm_count();
    int cap = s->k_cache->a.shape(2);
    const mc::Shape shape = in[0].shape();
    const mc::Dtype dtype = in[0].dtype();
    return mc::fast::precompiled_cuda_kernel(
        k.name, code, std::move(in), {shape}, {dtype},
        {d.hidden, d.n_heads, d.n_kv, d.ff, cap, s->slot, s->first, s->position, s->eps, s->attn_scale},
        {grid * kThreads, 1, 1}, {kThreads, 1, 1}, shared_bytes(d), std::nullopt, false)[0];
}

// The flag a kernel raises when it gave up waiting at a barrier.
uint32_t timeout_flag(const array &scratch) {
    return mc::slice(scratch, {kBarTimeout}, {kBarTimeout + 1}).item<uint32_t>();
}

array new_scratch(const Dims &d) {
    array a = mc::zeros({(int)scratch_words(d, sm_count())}, mc::uint32);
    mc::eval(a);
    return a;
}

// Compiles the variant and runs it once (cuda_jit::prepare) on a layer of
// the model's weights with h and the caches zero. Leaves k.ptx empty (and
// why in g_status) when it cannot run. Called under g_mu.
void build(Kernel &k, const Dims &d, const mx_layer_step *proto, mc::Dtype t) {
    static const std::string source = std::string(kCudaCommonSource) + kCudaLayerSource;
    const std::vector<std::string> defines = {
        "XT=" + std::to_string(d.half), "GS=" + std::to_string(d.gs), "HD=" + std::to_string(d.head_dim),
        "REP=" + std::to_string(d.n_heads / d.n_kv), "HAS_BIAS=" + std::to_string(d.bias),
        "ROPE_TRAD=" + std::to_string(d.trad), "LT=" + std::to_string(kThreads),
        "DOT_U=" + std::to_string(kDotUnroll), "ROWS_A=" + std::to_string(kRowsA),
        "ROWS_D=" + std::to_string(kRowsD), "KC=" + std::to_string(kMinChunkKeys),
        "TIMING=" + std::to_string(kTiming)};
    try {
        array scratch = new_scratch(d);
        array kc = mc::zeros({1, d.n_kv, 1, d.head_dim}, t), vc = mc::zeros({1, d.n_kv, 1, d.head_dim}, t);
        mc::eval({kc, vc});
        mx_array_s kh{kc}, vh{vc};
        mx_layer_step s = *proto;
        s.k_cache = &kh, s.v_cache = &vh, s.slot = 0, s.first = 0, s.position = 0;
        array h = mc::zeros({1, 1, d.hidden}, t);
        auto run = [&](const std::string &code) { mc::eval(call(k, code, d, inputs(h, &s, scratch), &s)); };
        if (!gomlx::cuda_jit::prepare(k, source, defines, run, &g_status)) return;
        if (timeout_flag(scratch)) {
            g_status = "the layer kernel's blocks were not all resident (barrier timeout)";
            k.ptx.clear();
            return;
        }
        g_status = gomlx::cuda_jit::in_use_status(k);
    } catch (const std::exception &e) {
        g_status = std::string("the layer kernel could not be prepared: ") + e.what();
        k.ptx.clear();
    }
}

const Kernel *kernel(const Dims &d, const mx_layer_step *proto, mc::Dtype t) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto key = std::make_tuple(d.half, d.gs, d.head_dim, d.n_heads / d.n_kv, d.bias, d.trad);
    auto it = g_kernels.find(key);
    if (it == g_kernels.end()) {
        it = g_kernels.emplace(key, Kernel{}).first;
        Kernel &k = it->second;
        k.name = "gomlx_layer_" + std::string(d.half ? "f16" : "bf16") + "_g" + std::to_string(d.gs) + "_d" +
                 std::to_string(d.head_dim) + "_r" + std::to_string(d.n_heads / d.n_kv) + "_b" +
                 std::to_string(d.bias) + "_t" + std::to_string(d.trad) + "_u" + std::to_string(kDotUnroll) +
                 "_a" + std::to_string(kRowsA) + "_m" + std::to_string(kRowsD) + "_k" +
                 std::to_string(kMinChunkKeys) + "_c" + std::to_string(kTiming);
        build(k, d, proto, t);
    }
    return it->second.ptx.empty() ? nullptr : &it->second;
}

}  // namespace

extern "C" {

const char *mx_cuda_layer_ready(const mx_layer_step *s) {
    static thread_local std::string why;
    try {
        Dims d;
        if (const char *m = misfit(s, s->attn_norm ? s->attn_norm->a.dtype() : mc::float32, &d, false)) {
            std::lock_guard<std::mutex> lock(g_mu);
            g_status = std::string("not used: ") + m;
            return why = m, why.c_str();
        }
        const Kernel *k = kernel(d, s, s->attn_norm->a.dtype());
        std::lock_guard<std::mutex> lock(g_mu);
        if (!k) return why = g_status, why.c_str();
        g_status = gomlx::cuda_jit::in_use_status(*k);
        return nullptr;
    } catch (const std::exception &e) {
        return why = e.what(), why.c_str();
    }
}

mx_array mx_cuda_layer_scratch(const mx_layer_step *s) {
    return guard([&]() -> array {
        Dims d;
        if (const char *why = misfit(s, s->attn_norm ? s->attn_norm->a.dtype() : mc::float32, &d, false))
            throw std::invalid_argument(std::string("mx_cuda_layer_scratch: ") + why);
        return new_scratch(d);
    });
}

mx_array mx_cuda_layer_step(mx_array h, const mx_layer_step *s, mx_array scratch) {
    if (!h || !s || !scratch) {
        record("mx_cuda_layer_step: missing argument");
        return nullptr;
    }
    return guard([&]() -> array {
        const array &ha = h->a;
        Dims d;
        if (const char *why = misfit(s, ha.dtype(), &d, true))
            throw std::invalid_argument(std::string("mx_cuda_layer_step: ") + why);
        if (ha.size() != (size_t)d.hidden) throw std::invalid_argument("mx_cuda_layer_step: h is not one token");
        int cap = s->k_cache->a.shape(2);
        if (s->slot < 0 || s->slot >= cap || s->first < 0 || s->first > s->slot)
            throw std::invalid_argument("mx_cuda_layer_step: cache slot out of range");
        if (scratch->a.dtype() != mc::uint32 || scratch->a.size() < scratch_words(d, sm_count()))
            throw std::invalid_argument("mx_cuda_layer_step: scratch too small (from another model?)");
        std::vector<array> in = inputs(ha, s, scratch->a);
        if (const char *why = layout_misfit(in))
            throw std::invalid_argument(std::string("mx_cuda_layer_step: ") + why);
        const Kernel *k = kernel(d, s, ha.dtype());
        if (!k) throw std::runtime_error(std::string("mx_cuda_layer_step: ") + mx_cuda_layer_status());
        g_calls.fetch_add(1);
        return call(*k, k->code(), d, std::move(in), s);
    });
}

int mx_cuda_layer_timed_out(mx_array scratch) {
    return guard_ret(-1, [&] {
        return (int)timeout_flag(scratch->a);
    });
}

void mx_set_cuda_layer(int on) { g_enabled.store(on ? 1 : 0); }

int mx_cuda_layer_on(void) { return g_enabled.load(); }

long mx_cuda_layer_calls(void) { return g_calls.load(); }

const char *mx_cuda_layer_status(void) {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_enabled.load()) copy = "off (GOMLX_CUDA_LAYER=0)";
    else copy = g_status;
    return copy.c_str();
}

}  // extern "C"
