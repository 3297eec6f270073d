// cuda_layer.cpp - the decoder layers of a decode step for one token on
// NVIDIA GPUs as one node of MLX's graph (cuda_layer_source.h;
// GOMLX_CUDA_LAYER=0 turns it off). With MLX's ops a decode step on the
// GPU is paced by the host handing them to the device (docs/GPU.md): ~13
// nodes a layer cost the host more than the device needs to read the
// layer's weights. Folding a few ops into our kernels did not pay (a
// custom node costs the host 3-4x an MLX one, mostly MLX copying and
// hashing the kernel's code with every call); one node a layer did (the
// device set the pace, the host still spent ~15 us a layer), and one node
// for all layers leaves the host one such call a token.
//
// The kernel runs one block per SM with grid-wide barriers between its
// phases, so all of its blocks must be resident at once: one block per SM
// (512 threads, <= 128 registers, <= 48 KB of shared memory) and nothing
// else of ours running beside it. Like the CPU layer (cpu_layer.cpp) it
// writes the new key and value into the cache buffers it gets as inputs:
// the engine keeps its own handle to each (MLX never donates them) and every
// reader and writer of a cache is ordered through the residual stream or an
// evaluation (kv_cache.c). A per-session scratch buffer holds what its
// blocks hand each other, and a table the layers' buffer addresses.
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/fast.h>
#include <mlx/mlx.h>

#include "mlx/cuda_common_source.h"
#include "mlx/cuda_jit.h"
#include "mlx/cuda_layer_dot_source.h"
#include "mlx/cuda_layer_source.h"
#include "mlx/cuda_layer_sync_source.h"
#include "mlx/cuda_layer_variant.h"
#include "mlx/cuda_layer_x_source.h"
#include "mlx/mx_internal.h"
#include "util/env.h"

namespace mc = mlx::core;
using mc::array;
using gomlx::cuda_jit::Kernel;
using namespace gomlx::mx;
using namespace gomlx::cuda_layer;
using gomlx::cuda_jit::sm_count;

namespace {

// Scratch control words, as in the source (CTRL_WORDS, BAR_TIMEOUT): the
// barrier at 0-2, one counter per group of a kv head's query heads from 8
// (head_groups, at most kMaxKv), clock stamps from 48.
const int kCtrlWords = 80, kBarTimeout = 2, kStamps = 48;
// A layer's row of the table (TABLE_WORDS, T_*): its buffers' addresses in
// table_arrays' order, then the caches' capacity, then its slot and window.
const int kTableArrays = 20, kTableWords = 22, kTableCap = 20, kTableSlot = 21;
const int kTableKCache = 16, kTableVCache = 17; // the caches' places in a row
bool is_cache(size_t table_index) { return table_index == kTableKCache || table_index == kTableVCache; }
const int kMaxLayers = 512;

std::atomic<int> g_enabled{!gm_env_off("GOMLX_CUDA_LAYER")};
std::atomic<long> g_calls{0};
std::mutex g_mu;
std::string g_status = "not used yet";
std::map<std::string, Kernel> g_kernels; // by name (kernel())

// Control words, q, the attention's partial sums, its output, the MLP's
// activation and Gemma 2's two residual vectors (the source's layout).
size_t scratch_words(const Dims &d, int grid) {
    auto halves = [](size_t n) { return ((n + 7) & ~(size_t)7) / 2; };
    size_t qd = (size_t)d.n_heads * d.head_dim;
    return kCtrlWords + ((qd + 3) & ~(size_t)3) + (size_t)d.n_heads * grid * (d.head_dim + 2) + halves(qd) +
           halves((size_t)d.ff) + 2 * halves((size_t)d.hidden) + 16;
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

const char *cache_misfit(const mx_layer_step *s, mc::Dtype t) {
    if (!s->k_cache || !s->v_cache) return "missing caches";
    const array &kc = s->k_cache->a, &vc = s->v_cache->a;
    if (kc.ndim() != 4 || kc.shape(0) != 1 || kc.shape(1) != s->n_kv_heads || kc.shape(3) != s->head_dim ||
        vc.shape() != kc.shape() || kc.dtype() != t || vc.dtype() != t)
        return "cache shape or dtype";
    return nullptr;
}

const char *misfit(const mx_layer_step *s, mc::Dtype t, Dims *d, bool need_cache) {
    if (!g_enabled.load()) return "off (GOMLX_CUDA_LAYER=0)";
    if (!mc::cu::is_available()) return "no CUDA backend";
    if (t != mc::bfloat16 && t != mc::float16) return "activations not bfloat16 or float16";
    const bool gemma = s->post_attn_norm || s->post_mlp_norm || s->gelu;
    if (gemma && !(s->post_attn_norm && s->post_mlp_norm && s->gelu))
        return "post-norms without GeGLU or GeGLU without them (Gemma 2 has both)";
    if (!(s->softcap >= 0)) return "a negative soft-cap";
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
    for (mx_array nw : {s->mlp_norm, s->post_attn_norm, s->post_mlp_norm})
        if (nw && (nw->a.size() != (size_t)hidden || nw->a.dtype() != t)) return "norm weights' shape or dtype";
    if (hidden % 2 || s->attn_norm->a.dtype() != t) return "norm weights' shape or dtype";
    if (s->inv_freq->a.dtype() != mc::float32 || s->inv_freq->a.size() != (size_t)hd / 2)
        return "RoPE table";
    if (need_cache)
        if (const char *why = cache_misfit(s, t)) return why;
    *d = Dims{hidden, nh, nkv, hd, ff, gs, t == mc::float16, s->qkv.bias != nullptr, s->rope_traditional != 0, gemma};
    if (shared_bytes(*d) > kMaxSharedBytes) return "hidden, q or MLP width over 24576 (about 21000 with tensor cores)";
    if (sm_count() <= 0) return "the GPU's SM count is unknown";
    return nullptr;
}

const char *slot_misfit(const mx_layer_step *s, int i) {
    if (!(s[i].first >= 0 && s[i].first <= s[i].slot && s[i].slot < s[i].k_cache->a.shape(2)))
        return "a cache slot out of range";
    if (s[i].position != s[0].position) return "the layers' positions differ";
    return nullptr;
}

// n layers like s[0], each fit for the kernel (one eps, score scale and
// soft-cap: kernel arguments); with caches, each slot in its cache.
const char *layers_misfit(const mx_layer_step *s, int n, mc::Dtype t, Dims *d, bool need_cache) {
    if (n < 1 || n > kMaxLayers) return "layer count (1 to 512)";
    for (int i = 0; i < n; i++) {
        Dims di;
        if (const char *why = misfit(s + i, t, &di, need_cache)) return why;
        if (i && !(di == *d)) return "the layers differ in shape";
        if (i && (s[i].eps != s[0].eps || s[i].attn_scale != s[0].attn_scale || s[i].softcap != s[0].softcap ||
                  s[i].rope_base != s[0].rope_base))
            return "the layers differ in eps, score scale, soft-cap or RoPE base";
        if (need_cache)
            if (const char *why = slot_misfit(s, i)) return why;
        *d = di;
    }
    return nullptr;
}

// A layer's arrays in table order (no q|k|v bias: nullptr, 0 in the table);
// no allocation, as the per-token step walks every layer's twice.
using TableArrays = std::array<const array *, kTableArrays>;
TableArrays table_arrays(const mx_layer_step *s) {
    auto opt = [](mx_array a) { return a ? &a->a : nullptr; };
    return {&s->attn_norm->a, &s->qkv.w->a, &s->qkv.scales->a, &s->qkv.biases->a, opt(s->qkv.bias),
            &s->o.w->a, &s->o.scales->a, &s->o.biases->a, &s->mlp_norm->a,
            &s->gate_up.w->a, &s->gate_up.scales->a, &s->gate_up.biases->a,
            &s->down.w->a, &s->down.scales->a, &s->down.biases->a,
            &s->inv_freq->a, &s->k_cache->a, &s->v_cache->a, opt(s->post_attn_norm), opt(s->post_mlp_norm)};
}

// MLX 0.32's CUDA buffer (cu::CudaBuffer in mlx/backend/cuda/allocator.h,
// which needs CUDA's headers): what an array's buffer points at.
struct MlxCudaBuffer {
    void *data;
    size_t size;
    int device; // -1: managed memory
};

// Where the kernel finds a's elements: as MLX's gpu_ptr() computes it.
// Not a.data(), which on the host's behalf moves a device buffer to
// managed memory.
uint64_t device_address(const array &a) {
    const auto *buf = static_cast<const MlxCudaBuffer *>(a.buffer().ptr());
    return reinterpret_cast<uintptr_t>(buf->data) + a.offset();
}

// Layer i's words in its row that can change from token to token: the
// caches' addresses and capacity, its slot as its distance from s[0]'s and
// its first key as a window (first = slot - window + 1; 0: all keys), so
// the row stays the same until a cache grows or a sliding layer's cache
// drops its oldest keys.
void cache_words(uint64_t *row, const mx_layer_step *s, int i) {
    row[kTableKCache] = device_address(s[i].k_cache->a);
    row[kTableVCache] = device_address(s[i].v_cache->a);
    row[kTableCap] = (uint64_t)s[i].k_cache->a.shape(2);
    const uint32_t window = s[i].first > 0 ? (uint32_t)(s[i].slot - s[i].first + 1) : 0;
    row[kTableSlot] = (uint32_t)(s[0].slot - s[i].slot) | (uint64_t)window << 32;
}

// The table's rows for s[0..n): every array must have a buffer (evaluated
// or scheduled, see schedule()).
std::vector<uint64_t> table_rows(const mx_layer_step *s, int n) {
    std::vector<uint64_t> rows((size_t)n * kTableWords, 0);
    for (int i = 0; i < n; i++) {
        uint64_t *row = rows.data() + (size_t)i * kTableWords;
        const TableArrays arrays = table_arrays(s + i);
        for (size_t j = 0; j < arrays.size(); j++)
            if (arrays[j]) row[j] = device_address(*arrays[j]);
        cache_words(row, s, i);
    }
    return rows;
}

// The table as an array. Its buffer holds on to the weights it points at
// (not inputs of the node: a few hundred would cost the host more than the
// rest of the call), so they outlive every kernel that reads them.
array table_array(const std::vector<uint64_t> &rows, const mx_layer_step *s, int n) {
    std::vector<array> weights;
    for (int i = 0; i < n; i++)
        for (const array *a : table_arrays(s + i))
            if (a && a != &s[i].k_cache->a && a != &s[i].v_cache->a) weights.push_back(*a);
    const size_t bytes = rows.size() * sizeof(uint64_t);
    mc::allocator::Buffer buf = mc::allocator::allocator().malloc(bytes);
    memcpy(buf.raw_ptr(), rows.data(), bytes);
    mc::allocator::Data data(buf, [weights = std::move(weights)](mc::allocator::Buffer b) {
        mc::allocator::allocator().free(b);
    });
    return array(std::move(data), {(int)rows.size()}, mc::uint64);
}

// Why the buffers cannot be read as the kernel reads them: row-contiguous,
// 16-byte aligned (weights come in 16-byte loads).
const char *layout_misfit(const mx_layer_step *s, int n) {
    for (int i = 0; i < n; i++)
        for (const array *a : table_arrays(s + i)) {
            if (!a) continue;
            if (!a->flags().row_contiguous) return "an input is a strided view";
            if (device_address(*a) % 16) return "an input is not 16-byte aligned";
        }
    return nullptr;
}

// Arrays not computed yet (a cache in the first step after it was made, a
// weight still lazy) get their buffers now.
// With caches_only, only the caches (the rest were scheduled before), read
// from the layers directly rather than through their table arrays.
void schedule(const mx_layer_step *s, int n, bool caches_only) {
    std::vector<array> pending;
    auto add = [&](const array *a) {
        if (a && a->status() == array::Status::unscheduled) pending.push_back(*a);
    };
    for (int i = 0; i < n; i++) {
        if (caches_only) {
            add(&s[i].k_cache->a);
            add(&s[i].v_cache->a);
        } else {
            for (const array *a : table_arrays(s + i)) add(a);
        }
    }
    if (!pending.empty()) mc::eval(pending);
}

// The kernel's source for n layers, its parts in order: the caches'
// parameters (inputs the code reads through the table) depend on n.
std::string layers_source(int n) {
    std::string params = "#define LAYER_ARRAYS";
    for (int i = 0; i < 2 * n; i++) params += " , const void *a" + std::to_string(i);
    return params + "\n" + kCudaCommonSource + kCudaLayerSyncSource + kCudaLayerXSource + kCudaLayerDotSource +
           kCudaLayerSource;
}

// log2 of the RoPE base as MLX's CUDA RoPE passes it (std::log2 of a
// float), 0 where the angles come from the table.
float rope_log2_base(const mx_layer_step &s) { return s.rope_base > 0 ? std::log2(s.rope_base) : 0.0f; }

// The kernel on h for s[0..n) with `table` (table_array) and scratch.
array call(const Kernel &k, const std::string &code, const Dims &d, const array &h, const array &table,
           const array &scratch, const mx_layer_step *s, int n) {
    std::vector<array> in = {h, table, scratch};
    in.reserve(3 + 2 * n);
    for (int i = 0; i < n; i++) in.insert(in.end(), {s[i].k_cache->a, s[i].v_cache->a});
    const int grid = sm_count();
    return mc::fast::precompiled_cuda_kernel(
        k.name, code, std::move(in), {h.shape()}, {h.dtype()},
        {d.hidden, d.n_heads, d.n_kv, d.ff, s[0].slot, s[0].position, rope_log2_base(s[0]), s[0].eps,
         s[0].attn_scale, s[0].softcap},
        {grid * kThreads, 1, 1}, {kThreads, 1, 1}, shared_bytes(d), std::nullopt, false)[0];
}

// The flag a kernel raises when it gave up waiting at a barrier.
uint32_t timeout_flag(const array &scratch) {
    return mc::slice(scratch, {kBarTimeout}, {kBarTimeout + 1}).item<uint32_t>();
}

// Zeroed by MLX ahead of the first kernel that gets it (not evaluated
// here: a session's first step would wait for the prompt).
array new_scratch(const Dims &d) { return mc::zeros({(int)scratch_words(d, sm_count())}, mc::uint32); }

// Compiles the variant and runs it once (cuda_jit::prepare) on the
// layers' weights with h and one-slot caches zero. Leaves k.ptx empty (and
// why in g_status) when it cannot run. Called under g_mu.
void build(Kernel &k, const Dims &d, const mx_layer_step *protos, int n, mc::Dtype t,
           const std::vector<std::string> &defines) {
    try {
        array scratch = new_scratch(d);
        std::vector<mx_array_s> caches;
        caches.reserve(2 * n);
        for (int i = 0; i < 2 * n; i++) caches.push_back(mx_array_s{mc::zeros({1, d.n_kv, 1, d.head_dim}, t)});
        std::vector<mx_layer_step> s(protos, protos + n);
        for (int i = 0; i < n; i++) {
            s[i].k_cache = &caches[2 * i], s[i].v_cache = &caches[2 * i + 1];
            s[i].slot = 0, s[i].first = 0, s[i].position = 0;
        }
        schedule(s.data(), n, false);
        if (const char *why = layout_misfit(s.data(), n)) throw std::invalid_argument(why);
        array table = table_array(table_rows(s.data(), n), s.data(), n);
        array h = mc::zeros({1, 1, d.hidden}, t);
        auto run = [&](const std::string &code) { mc::eval(call(k, code, d, h, table, scratch, s.data(), n)); };
        if (!gomlx::cuda_jit::prepare(k, layers_source(n), defines, run, &g_status)) return;
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

// The variant's name holds its defines (gomlx_layers_NL28_XT0_GS64_...),
// which makes it unique and a key of the compiled kernels too.
const Kernel *kernel(const Dims &d, const mx_layer_step *protos, int n, mc::Dtype t) {
    const std::vector<std::string> defines = variant_defines(d, n);
    std::string name = "gomlx_layers";
    for (const std::string &def : defines) {
        name += '_';
        for (char ch : def)
            if (ch != '=') name += ch;
    }
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_kernels.find(name);
    if (it == g_kernels.end()) {
        it = g_kernels.emplace(name, Kernel{}).first;
        it->second.name = name;
        build(it->second, d, protos, n, t, defines);
    }
    return it->second.ptx.empty() ? nullptr : &it->second;
}

mc::Dtype dtype_of(const mx_layer_step *s) { return s->attn_norm ? s->attn_norm->a.dtype() : mc::float32; }

}  // namespace

struct mx_cuda_layers {
    mx_cuda_layers(const Dims &d_, int n_, array scratch_) : d(d_), n(n_), scratch(std::move(scratch_)) {}
    Dims d;
    int n;
    array scratch;
    array table = array(0);
    std::vector<uint64_t> rows;     // the table's contents; empty: no table yet
    const Kernel *kernel = nullptr; // for d and n, looked up at the first step
    // The layers as the last full check (layers_misfit, layout_misfit)
    // found them fit: the ids of their arrays but the caches (0: none) and
    // those arrays, held so that no id is reused while remembered (the
    // caches are not held, so that a grown one's old buffer goes at once),
    // the activations' dtype and each layer's settings. A step whose layers
    // match them checks only the caches, slots and positions.
    std::vector<uintptr_t> checked_ids;
    std::vector<array> checked;
    mc::Dtype checked_t = mc::float32;
    std::vector<mx_layer_step> checked_steps;
};

namespace {

// Whether a and b differ only in what changes from token to token
// (position, slot, first, caches) and in their arrays.
bool same_settings(const mx_layer_step &a, const mx_layer_step &b) {
    auto lin = [](const mx_qlinear &x, const mx_qlinear &y) {
        return x.bits == y.bits && x.group_size == y.group_size;
    };
    return lin(a.qkv, b.qkv) && lin(a.o, b.o) && lin(a.gate_up, b.gate_up) && lin(a.down, b.down) &&
           a.gelu == b.gelu && a.n_heads == b.n_heads && a.n_kv_heads == b.n_kv_heads &&
           a.head_dim == b.head_dim && a.eps == b.eps && a.rope_traditional == b.rope_traditional &&
           a.attn_scale == b.attn_scale && a.softcap == b.softcap && a.rope_base == b.rope_base;
}

// Visits the ids of s[0..n)'s arrays but the caches (0: none), in order,
// until f returns false; whether all were visited.
template <typename F>
bool each_checked_id(const mx_layer_step *s, int n, F f) {
    for (int i = 0; i < n; i++) {
        const TableArrays arrays = table_arrays(s + i);
        for (size_t k = 0; k < arrays.size(); k++)
            if (!is_cache(k) && !f(arrays[k], arrays[k] ? arrays[k]->id() : (uintptr_t)0)) return false;
    }
    return true;
}

// Whether s[0..n) are the layers the last full check passed: the same
// settings and, but for the caches, the same arrays in every place.
bool checked_before(const mx_cuda_layers *c, const mx_layer_step *s, int n, mc::Dtype t) {
    if (c->checked_steps.size() != (size_t)n || t != c->checked_t) return false;
    for (int i = 0; i < n; i++)
        if (!same_settings(s[i], c->checked_steps[i])) return false;
    size_t j = 0;
    return each_checked_id(s, n, [&](const array *, uintptr_t id) {
        return j < c->checked_ids.size() && c->checked_ids[j++] == id;
    }) && j == c->checked_ids.size();
}

void remember_checked(mx_cuda_layers *c, const mx_layer_step *s, int n, mc::Dtype t) {
    c->checked_ids.clear();
    c->checked.clear();
    each_checked_id(s, n, [&](const array *a, uintptr_t id) {
        c->checked_ids.push_back(id);
        if (a) c->checked.push_back(*a);
        return true;
    });
    c->checked_t = t;
    c->checked_steps.assign(s, s + n);
}

// What a step checks when its layers passed before: the caches, the
// slots and the positions.
const char *token_misfit(const mx_layer_step *s, int n, mc::Dtype t) {
    for (int i = 0; i < n; i++) {
        const char *why = cache_misfit(s + i, t);
        if (why || (why = slot_misfit(s, i))) return why;
    }
    return nullptr;
}

}  // namespace

extern "C" {

const char *mx_cuda_layers_ready(const mx_layer_step *s, int n) {
    static thread_local std::string why;
    try {
        Dims d;
        if (const char *m = s ? layers_misfit(s, n, dtype_of(s), &d, false) : "no layers") {
            std::lock_guard<std::mutex> lock(g_mu);
            g_status = std::string("not used: ") + m;
            return why = m, why.c_str();
        }
        const Kernel *k = kernel(d, s, n, dtype_of(s));
        std::lock_guard<std::mutex> lock(g_mu);
        if (!k) return why = g_status, why.c_str();
        g_status = gomlx::cuda_jit::in_use_status(*k);
        return nullptr;
    } catch (const std::exception &e) {
        return why = e.what(), why.c_str();
    }
}

mx_cuda_layers *mx_cuda_layers_new(const mx_layer_step *s, int n) {
    try {
        Dims d;
        if (!s) throw std::invalid_argument("no layers");
        if (const char *why = layers_misfit(s, n, dtype_of(s), &d, false)) throw std::invalid_argument(why);
        return new mx_cuda_layers(d, n, new_scratch(d));
    } catch (const std::exception &e) {
        record((std::string("mx_cuda_layers_new: ") + e.what()).c_str());
        return nullptr;
    }
}

void mx_cuda_layers_free(mx_cuda_layers *c) { delete c; }

mx_array mx_cuda_layers_step(mx_cuda_layers *c, mx_array h, const mx_layer_step *s, int n) {
    if (!c || !h || !s) {
        record("mx_cuda_layers_step: missing argument");
        return nullptr;
    }
    return guard([&]() -> array {
        const array &ha = h->a;
        const Dims &d = c->d;
        // Checking every layer's arrays took a few us of host time a token;
        // layers that passed before (same arrays, same settings) are
        // checked only for what changes from token to token.
        const bool known = g_enabled.load() && checked_before(c, s, n, ha.dtype());
        if (known) {
            if (const char *why = token_misfit(s, n, ha.dtype()))
                throw std::invalid_argument(std::string("mx_cuda_layers_step: ") + why);
        } else {
            Dims now;
            if (const char *why = layers_misfit(s, n, ha.dtype(), &now, true))
                throw std::invalid_argument(std::string("mx_cuda_layers_step: ") + why);
            if (n != c->n || !(now == c->d))
                throw std::invalid_argument("mx_cuda_layers_step: not the layers this state was made for");
        }
        if (ha.size() != (size_t)d.hidden) throw std::invalid_argument("mx_cuda_layers_step: h is not one token");
        if (!c->kernel) c->kernel = kernel(d, s, n, ha.dtype());
        const Kernel *k = c->kernel;
        if (!k) throw std::runtime_error(std::string("mx_cuda_layers_step: ") + mx_cuda_layer_status());
        schedule(s, n, known); // known arrays but the caches were scheduled when first checked
        // Known arrays stay at their addresses (held in c->checked, so never
        // donated): only the caches' and slots' words can have changed.
        std::vector<uint64_t> rows = known ? c->rows : table_rows(s, n);
        if (known)
            for (int i = 0; i < n; i++) cache_words(rows.data() + (size_t)i * kTableWords, s, i);
        if (rows != c->rows) {
            // A cache grew or moved: a new table (the old one lives on in
            // the graph nodes that read it).
            if (const char *why = layout_misfit(s, n))
                throw std::invalid_argument(std::string("mx_cuda_layers_step: ") + why);
            c->table = table_array(rows, s, n);
            c->rows = std::move(rows);
        }
        if (!known) remember_checked(c, s, n, ha.dtype());
        g_calls.fetch_add(1);
        return call(*k, k->code(), d, ha, c->table, c->scratch, s, n);
    });
}

int mx_cuda_layers_timed_out(mx_cuda_layers *c) {
    if (!c) return -1;
    return guard_ret(-1, [&] { return (int)timeout_flag(c->scratch); });
}

int mx_cuda_layers_stamps(mx_cuda_layers *c, uint64_t stamps[16]) {
    if (!c || !stamps) return -1;
    return guard_ret(-1, [&] {
        array w = mc::slice(c->scratch, {kStamps}, {kStamps + 32});
        mc::eval(w);
        const uint32_t *p = w.data<uint32_t>();
        for (int i = 0; i < 16; i++) stamps[i] = p[2 * i] | (uint64_t)p[2 * i + 1] << 32;
        return 0;
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
