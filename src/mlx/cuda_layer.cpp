// cuda_layer.cpp - one token's 4-bit products in a decoder layer on NVIDIA
// GPUs with the ops around them folded into the kernel (cuda_layer_source.h):
// RMSNorm before, bias and residual add or SwiGLU after. A decode step on
// the GPU is paced by the host handing MLX's ops to the device (~2-8 us a
// kernel, ~9 us a precompiled kernel of ours; docs/GPU.md), so a layer of
// four of these in place of eleven of MLX's kernels is what pays. Used by
// src/models/gpu_step.c; GOMLX_CUDA_LAYER=0 turns it off.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

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

int env_enabled() {
    const char *e = getenv("GOMLX_CUDA_LAYER");
    return !(e && strcmp(e, "0") == 0);
}

std::atomic<int> g_enabled{env_enabled()};
std::atomic<int> g_broken{0};
std::atomic<long> g_calls{0};
std::mutex g_mu;
std::string g_status = "not used yet";
std::map<int, Kernel> g_kernels;

const int kThreads = 256, kMaxK = 16384; // x staged in shared memory: 32 KB at most

struct Variant {
    int half, gs, rows, pro, epi, bias;
    int key() const { return half | gs << 1 | rows << 9 | pro << 13 | epi << 14 | bias << 16; }
};

array call(const Kernel &k, const std::string &code, const Variant &v, const array &x,
           const std::optional<array> &nw, const array &w, const array &scales,
           const array &biases, const std::optional<array> &bias, const std::optional<array> &res,
           float eps) {
    int N = w.shape(0), K = x.shape(-1);
    std::vector<array> in = {x};
    if (nw) in.push_back(*nw);
    in.insert(in.end(), {w, scales, biases});
    if (bias) in.push_back(*bias);
    if (res) in.push_back(*res);
    int warps = v.epi == 2 ? N / 2 : (N + v.rows - 1) / v.rows;
    int blocks = (warps * 32 + kThreads - 1) / kThreads;
    mc::Shape shape = x.shape();
    shape.back() = v.epi == 2 ? N / 2 : N;
    return mc::fast::precompiled_cuda_kernel(k.name, code, in, {shape}, {x.dtype()}, {N, K, eps},
                                             {blocks * kThreads, 1, 1}, {kThreads, 1, 1},
                                             K * 2, std::nullopt, true)[0];
}

// Compiles a variant and runs it once on a tiny product (cuda_jit::prime).
// Called under g_mu.
void build(Kernel &k, const Variant &v, mc::Dtype t) {
    static const std::string source = std::string(kCudaCommonSource) + kCudaLayerSource;
    if (!gomlx::cuda_jit::compile(
            k, source,
            {"XT=" + std::to_string(v.half), "QMV_GS=" + std::to_string(v.gs),
             "QMV_R=" + std::to_string(v.rows), "PRO=" + std::to_string(v.pro),
             "EPI=" + std::to_string(v.epi), "HAS_BIAS=" + std::to_string(v.bias)},
            &g_status))
        return;
    const int K = 128, N = 4;
    array x = mc::zeros({1, 1, K}, t), w = mc::zeros({N, K / 8}, mc::uint32);
    array sb = mc::zeros({N, K / v.gs}, t), rows = mc::zeros({N}, t);
    std::optional<array> nw, bias, res;
    if (v.pro) nw = mc::zeros({K}, t);
    if (v.bias) bias = rows;
    if (v.epi == 1) res = mc::zeros({1, 1, N}, t);
    if (gomlx::cuda_jit::prime(
            k,
            [&](const std::string &code) { mc::eval(call(k, code, v, x, nw, w, sb, sb, bias, res, 1e-5f)); },
            &g_status))
        g_status = "in use";
}

const Kernel *kernel(const Variant &v, mc::Dtype t) {
    if (!g_enabled.load() || g_broken.load() || !mc::cu::is_available()) return nullptr;
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_kernels.find(v.key());
    if (it == g_kernels.end()) {
        it = g_kernels.emplace(v.key(), Kernel{}).first;
        Kernel &k = it->second;
        k.name = "gomlx_layer_qmv4_" + std::string(v.half ? "f16" : "bf16") + "_g" +
                 std::to_string(v.gs) + "_r" + std::to_string(v.rows) + "_p" +
                 std::to_string(v.pro) + "_e" + std::to_string(v.epi) + "_b" +
                 std::to_string(v.bias);
        build(k, v, t);
    }
    if (it->second.ptx.empty()) {
        g_broken.store(1);
        return nullptr;
    }
    return &it->second;
}

// Why l cannot be taken for x of dtype t and K inputs, or nullptr when it can.
const char *misfit(const mx_qlinear *l, mc::Dtype t, int epi) {
    if (!l || !l->w || !l->scales || !l->biases) return "not an affine-quantized linear";
    if (l->bits != 4) return "not 4-bit";
    if (l->group_size != 32 && l->group_size != 64 && l->group_size != 128) return "group size not 32, 64 or 128";
    if (t != mc::bfloat16 && t != mc::float16) return "activations not bfloat16 or float16";
    const array &w = l->w->a, &s = l->scales->a, &b = l->biases->a;
    if (w.dtype() != mc::uint32 || w.ndim() != 2 || s.dtype() != t || b.dtype() != t) return "weights not in the activations' dtype";
    int N = w.shape(0), K = w.shape(1) * 8;
    if (N <= 0 || K % 32 || K > kMaxK || s.ndim() != 2 || s.shape(0) != N || s.shape(1) * l->group_size != K || b.shape() != s.shape())
        return "weight shapes the kernel does not take";
    if (l->bias && (l->bias->a.dtype() != t || l->bias->a.size() != (size_t)N)) return "bias shape or dtype";
    if (epi == 2 && N % 2) return "odd gate|up rows";
    return nullptr;
}

}  // namespace

extern "C" {

const char *mx_cuda_layer_misfit(const mx_qlinear *l, mx_dtype t, int swiglu) {
    return guard_ret<const char *>("invalid", [&] { return misfit(l, to_mlx(t), swiglu ? 2 : 0); });
}

int mx_cuda_layer_ready(mx_dtype dtype, int group_size) {
    return guard_ret(0, [&] {
        if (mc::default_device() != mc::Device::gpu) return 0;
        mc::Dtype t = to_mlx(dtype);
        if (t != mc::bfloat16 && t != mc::float16) return 0;
        // The variants a layer uses, compiled now so a missing NVRTC shows at load.
        int half = t == mc::float16;
        for (Variant v : {Variant{half, group_size, 2, 1, 0, 0}, Variant{half, group_size, 2, 0, 1, 0},
                          Variant{half, group_size, 2, 1, 2, 0}})
            if (!kernel(v, t)) return 0;
        return 1;
    });
}

mx_array mx_cuda_layer_qmv(mx_array x, mx_array norm_w, float eps, const mx_qlinear *l,
                           mx_array res, int swiglu) {
    if (!x || !l) return nullptr;
    return guard([&]() -> array {
        const array &xa = x->a;
        int epi = swiglu ? 2 : res ? 1 : 0;
        if (swiglu && res) throw std::invalid_argument("mx_cuda_layer_qmv: swiglu with a residual");
        if (const char *why = misfit(l, xa.dtype(), epi))
            throw std::invalid_argument(std::string("mx_cuda_layer_qmv: ") + why);
        int N = l->w->a.shape(0), K = l->w->a.shape(1) * 8;
        if (xa.ndim() < 1 || xa.shape(-1) != K || xa.size() != (size_t)K)
            throw std::invalid_argument("mx_cuda_layer_qmv: x is not one token of the linear's input");
        if (norm_w && (norm_w->a.size() != (size_t)K || norm_w->a.dtype() != xa.dtype()))
            throw std::invalid_argument("mx_cuda_layer_qmv: norm weight shape or dtype");
        if (res && (res->a.size() != (size_t)N || res->a.dtype() != xa.dtype()))
            throw std::invalid_argument("mx_cuda_layer_qmv: residual shape or dtype");
        Variant v{xa.dtype() == mc::float16, l->group_size, epi != 2 && N >= 8192 ? 4 : 2,
                  norm_w != nullptr, epi, l->bias != nullptr};
        const Kernel *k = kernel(v, xa.dtype());
        if (!k) throw std::runtime_error(std::string("layer kernels unavailable: ") + mx_cuda_layer_status());
        std::optional<array> nw, bias, r;
        if (norm_w) nw = norm_w->a;
        if (l->bias) bias = l->bias->a;
        if (res) r = res->a;
        g_calls.fetch_add(1);
        return call(*k, k->code(), v, xa, nw, l->w->a, l->scales->a, l->biases->a, bias, r, eps);
    });
}

void mx_set_cuda_layer(int on) { g_enabled.store(on ? 1 : 0); }

long mx_cuda_layer_calls(void) { return g_calls.load(); }

const char *mx_cuda_layer_status(void) {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_enabled.load()) copy = "off (GOMLX_CUDA_LAYER=0)";
    else if (g_kernels.empty()) copy = "not used yet";
    else copy = g_status;
    return copy.c_str();
}

}  // extern "C"
