// cuda_fused.cpp - the fused pieces of a one-token decode step on NVIDIA
// GPUs (kernels in cuda_fused_source.h): residual add + RMSNorm, RoPE of
// the stacked q|k|v projection with its split into heads, and SwiGLU of a
// stacked gate|up. With MLX 0.32.4 a decode step on an H100 is bound by
// the host handing MLX's ops to the device (~4.5 us a kernel, ~1 us a
// view; the device then waits for the next step), so these replace 2-8
// graph nodes each with one. GOMLX_CUDA_FUSED=0 turns them off.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/fast.h>
#include <mlx/mlx.h>

#include "mlx/cuda_fused.h"

#include "mlx/cuda_common_source.h"
#include "mlx/cuda_fused_source.h"
#include "mlx/cuda_jit.h"
#include "mlx/mx_internal.h"

namespace mc = mlx::core;
using mc::array;
using gomlx::cuda_jit::Kernel;
using namespace gomlx::mx;

namespace {

enum Which { ADD_RMS_NORM = 0, ROPE_QKV = 1, SWIGLU = 2 };

int env_enabled() {
    const char *e = getenv("GOMLX_CUDA_FUSED");
    return !(e && strcmp(e, "0") == 0);
}

std::atomic<int> g_enabled{env_enabled()};
std::atomic<int> g_broken{0};
std::atomic<long> g_calls{0};
std::mutex g_mu;
std::string g_status = "not used yet";
std::map<int, Kernel> g_kernels; // which | half << 2 | bias << 3 | freqs << 4 | trad << 5

bool usable_dtype(mc::Dtype t) { return t == mc::bfloat16 || t == mc::float16; }

const int kThreads = 256;

int blocks_for(size_t n) { return (int)((n + kThreads - 1) / kThreads); }

std::vector<array> run_add_rms_norm(const Kernel &k, const std::string &code, const array &x,
                                    const array &r, const array &w, float eps) {
    int H = x.shape(-1);
    int rows = (int)(x.size() / (size_t)H);
    return mc::fast::precompiled_cuda_kernel(k.name, code, {x, r, w}, {x.shape(), x.shape()},
                                             {x.dtype(), x.dtype()}, {eps, H},
                                             {rows * kThreads, 1, 1}, {kThreads, 1, 1}, 0,
                                             std::nullopt, true);
}

struct Rope {
    int hq, hkv, d, offset, traditional;
    float scale, log2_base;
};

std::vector<array> run_rope_qkv(const Kernel &k, const std::string &code, const array &qkv,
                                const std::optional<array> &bias, const std::optional<array> &freqs,
                                const Rope &p) {
    std::vector<array> in = {qkv};
    if (bias) in.push_back(*bias);
    if (freqs) in.push_back(*freqs);
    int total = (p.hq + p.hkv) * (p.d / 2) + p.hkv * p.d;
    return mc::fast::precompiled_cuda_kernel(
        k.name, code, in, {{1, p.hq, 1, p.d}, {1, p.hkv, 1, p.d}, {1, p.hkv, 1, p.d}},
        {qkv.dtype(), qkv.dtype(), qkv.dtype()},
        {p.hq, p.hkv, p.d, p.offset, p.scale, p.log2_base}, {blocks_for(total) * kThreads, 1, 1},
        {kThreads, 1, 1}, 0, std::nullopt, true);
}

std::vector<array> run_swiglu(const Kernel &k, const std::string &code, const array &gu) {
    int F = gu.shape(-1) / 2;
    mc::Shape shape = gu.shape();
    shape.back() = F;
    int total = (int)(gu.size() / 2);
    return mc::fast::precompiled_cuda_kernel(k.name, code, {gu}, {shape}, {gu.dtype()}, {F, total},
                                             {blocks_for(total) * kThreads, 1, 1},
                                             {kThreads, 1, 1}, 0, std::nullopt, true);
}

// Compiles one variant and runs it once on tiny inputs so MLX loads its
// module (cuda_jit::prime). Called under g_mu.
void build(Kernel &k, int which, mc::Dtype t, bool bias, bool freqs, bool trad) {
    static const std::string source = std::string(kCudaCommonSource) + kCudaFusedSource;
    int half = t == mc::float16;
    if (!gomlx::cuda_jit::compile(k, source,
                                  {"XT=" + std::to_string(half), "KERNEL=" + std::to_string(which),
                                   "HAS_BIAS=" + std::to_string(bias), "FREQS=" + std::to_string(freqs),
                                   "TRAD=" + std::to_string(trad)},
                                  &g_status))
        return;
    std::function<void(const std::string &)> run;
    if (which == ADD_RMS_NORM) {
        array x = mc::zeros({1, 64}, t);
        run = [&, x](const std::string &code) { mc::eval(run_add_rms_norm(k, code, x, x, x, 1e-5f)); };
    } else if (which == ROPE_QKV) {
        array qkv = mc::zeros({1, 1, 3 * 8}, t);
        std::optional<array> b, f;
        if (bias) b = mc::zeros({3 * 8}, t);
        if (freqs) f = mc::ones({4}, mc::float32);
        run = [&, qkv, b, f](const std::string &code) {
            mc::eval(run_rope_qkv(k, code, qkv, b, f, Rope{1, 1, 8, 3, trad, 1.f, 13.f}));
        };
    } else {
        array gu = mc::zeros({1, 16}, t);
        run = [&, gu](const std::string &code) { mc::eval(run_swiglu(k, code, gu)); };
    }
    if (gomlx::cuda_jit::prime(k, run, &g_status)) g_status = "in use";
}

// The variant's kernel, compiled and primed on first use; nullptr when it
// cannot be (g_status says why, and the fused pieces stay off).
const Kernel *kernel(int which, mc::Dtype t, bool bias = false, bool freqs = false,
                     bool trad = false) {
    if (!g_enabled.load() || g_broken.load() || !usable_dtype(t) || !mc::cu::is_available())
        return nullptr;
    int half = t == mc::float16;
    int key = which | half << 2 | bias << 3 | freqs << 4 | trad << 5;
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_kernels.find(key);
    if (it == g_kernels.end()) {
        it = g_kernels.emplace(key, Kernel{}).first;
        Kernel &k = it->second;
        k.name = "gomlx_fused" + std::to_string(which) + "_" + (half ? "f16" : "bf16") +
                 (bias ? "_bias" : "") + (freqs ? "_freqs" : "") + (trad ? "_trad" : "");
        build(k, which, t, bias, freqs, trad);
    }
    if (it->second.ptx.empty()) {
        g_broken.store(1);
        return nullptr;
    }
    return &it->second;
}

// Hands out several results as scoped handles, or none.
int wrap_all(const std::vector<array> &r, mx_array **outs, size_t n) {
    for (size_t i = 0; i < n; i++) *outs[i] = nullptr;
    if (r.size() != n) return -1;
    for (size_t i = 0; i < n; i++) {
        *outs[i] = guard([&] { return r[i]; });
        if (!*outs[i]) {
            for (size_t j = 0; j < i; j++) mx_free(*outs[j]), *outs[j] = nullptr;
            return -1;
        }
    }
    return 0;
}

}  // namespace

namespace gomlx {

std::optional<array> cuda_swiglu_try(const array &gu) {
    if (gu.ndim() < 1 || gu.shape(-1) % 2 || gu.size() != (size_t)gu.shape(-1)) return {};
    const Kernel *k = kernel(SWIGLU, gu.dtype());
    if (!k) return {};
    g_calls.fetch_add(1);
    return run_swiglu(*k, k->code(), gu)[0];
}

}  // namespace gomlx

extern "C" {

int mx_cuda_fused_ready(mx_dtype dtype) {
    return guard_ret(0, [&] {
        mc::Dtype t = to_mlx(dtype);
        if (mc::default_device() != mc::Device::gpu) return 0;
        // The common variants now, so a broken NVRTC shows at load, not mid-step.
        return kernel(ADD_RMS_NORM, t) && kernel(SWIGLU, t) ? 1 : 0;
    });
}

int mx_cuda_add_rms_norm(mx_array x, mx_array r, mx_array w, float eps, mx_array *h, mx_array *n) {
    if (h) *h = nullptr;
    if (n) *n = nullptr;
    if (!x || !r || !w || !h || !n) return -1;
    std::vector<array> out;
    if (guard_ret(-1, [&] {
            const array &xa = x->a;
            if (xa.ndim() < 1 || r->a.shape() != xa.shape() || w->a.ndim() != 1 ||
                w->a.shape(0) != xa.shape(-1) || r->a.dtype() != xa.dtype() ||
                w->a.dtype() != xa.dtype())
                throw std::invalid_argument("mx_cuda_add_rms_norm: x, r and w do not match");
            const Kernel *k = kernel(ADD_RMS_NORM, xa.dtype());
            if (!k) throw std::runtime_error("fused CUDA kernels unavailable: " + std::string(mx_cuda_fused_status()));
            out = run_add_rms_norm(*k, k->code(), xa, r->a, w->a, eps);
            return 0;
        }))
        return -1;
    g_calls.fetch_add(1);
    mx_array *outs[2] = {h, n};
    return wrap_all(out, outs, 2);
}

int mx_cuda_rope_qkv(mx_array qkv, mx_array bias, mx_array freqs, int hq, int hkv, int d,
                     int traditional, float base, float scale, int offset, mx_array *q,
                     mx_array *k, mx_array *v) {
    for (mx_array *o : {q, k, v})
        if (o) *o = nullptr;
    if (!qkv || !q || !k || !v) return -1;
    std::vector<array> out;
    if (guard_ret(-1, [&] {
            const array &a = qkv->a;
            size_t total = (size_t)(hq + 2 * hkv) * (size_t)d;
            if (hq <= 0 || hkv <= 0 || d <= 0 || d % 2 || a.size() != total ||
                (bias && (bias->a.size() != total || bias->a.dtype() != a.dtype())) ||
                (freqs && (freqs->a.size() != (size_t)d / 2 || freqs->a.dtype() != mc::float32)))
                throw std::invalid_argument("mx_cuda_rope_qkv: shapes do not match one token's q|k|v");
            const Kernel *kn = kernel(ROPE_QKV, a.dtype(), bias != nullptr, freqs != nullptr, traditional != 0);
            if (!kn) throw std::runtime_error("fused CUDA kernels unavailable: " + std::string(mx_cuda_fused_status()));
            std::optional<array> b, f;
            if (bias) b = bias->a;
            if (freqs) f = freqs->a;
            out = run_rope_qkv(*kn, kn->code(), a, b, f,
                               Rope{hq, hkv, d, offset, traditional, scale, (float)std::log2(base)});
            return 0;
        }))
        return -1;
    g_calls.fetch_add(1);
    mx_array *outs[3] = {q, k, v};
    return wrap_all(out, outs, 3);
}

mx_array mx_cuda_swiglu_stacked(mx_array gu) {
    if (!gu) return nullptr;
    return guard([&]() -> array {
        const array &a = gu->a;
        if (a.ndim() < 1 || a.shape(-1) % 2)
            throw std::invalid_argument("mx_cuda_swiglu_stacked: the last dimension must be even");
        const Kernel *k = kernel(SWIGLU, a.dtype());
        if (!k) throw std::runtime_error("fused CUDA kernels unavailable: " + std::string(mx_cuda_fused_status()));
        g_calls.fetch_add(1);
        return run_swiglu(*k, k->code(), a)[0];
    });
}

void mx_set_cuda_fused(int on) { g_enabled.store(on ? 1 : 0); }

long mx_cuda_fused_calls(void) { return g_calls.load(); }

const char *mx_cuda_fused_status(void) {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_enabled.load()) copy = "off (GOMLX_CUDA_FUSED=0)";
    else if (!g_calls.load() && !g_broken.load() && g_kernels.empty()) copy = "not used yet";
    else copy = g_status;
    return copy.c_str();
}

}  // extern "C"
