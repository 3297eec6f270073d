// cuda_qmv.cpp - our 4-bit matrix-vector product for one token on NVIDIA
// GPUs, in place of MLX's when it applies (GOMLX_CUDA_QMV=0 turns it off).
//
// A 7B model's decode step is its quantized mat-vecs: MLX 0.32.4's CUDA
// kernel reads the weights at about a quarter of an H100's bandwidth. Ours
// (cuda_qmv_source.h) is compiled once per variant with NVRTC, loaded with
// dlopen from the CUDA libraries MLX itself uses, and called through
// mx::fast::precompiled_cuda_kernel: a node in MLX's command graph like its
// own kernels, without the per-call source templating of
// mx::fast::cuda_kernel (which made an earlier try slower in a decode step
// than the kernel gained). When NVRTC is missing or the compile fails the
// MLX kernel is used, and mx_cuda_qmv_status() says why. Where the one-kernel
// layer (cuda_layer.cpp) runs a model, this is left the vocabulary.
#include "mlx/qmm_hooks.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/fast.h>
#include <mlx/mlx.h>

#include "mlx/cuda_common_source.h"
#include "mlx/cuda_jit.h"
#include "mlx/cuda_qmv_source.h"
#include "mlx/mx.h"
#include "util/env.h"

namespace mc = mlx::core;
using mc::array;

namespace {

std::mutex g_mu;
std::string g_status = "not used yet";
std::map<int, gomlx::cuda_jit::Kernel> g_variants; // (dtype, group size, rows, unroll) -> kernel
std::atomic<int> g_broken{0};      // 1 after NVRTC failed: MLX's kernel from then on
std::atomic<long> g_calls{0};

array call(const gomlx::cuda_jit::Kernel &k, const std::string &code, const array &x, const array &w,
           const array &scales, const array &biases, int N, int K, int rows) {
    const int threads = 256;
    int warps = (N + rows - 1) / rows;
    mc::Shape out_shape = x.shape();
    out_shape.back() = N;
    const std::string &name = k.name;
    return mc::fast::precompiled_cuda_kernel(name, code, {x, w, scales, biases}, {out_shape},
                                             {x.dtype()}, {N, K}, {warps * 32, 1, 1},
                                             {threads, 1, 1}, 0, std::nullopt, true)[0];
}

// A nibble's mask and 16.0f's bits as one lop3 (LOP, nibble_16q): the
// vocabulary's mat-vec 354-356 -> 317-330 us on an H200 (bench_cuda_qmv),
// decode Llama-3.2-3B 765.8 -> 776.5 tok/s with the layer kernel's LOP on
// (docs/bench/h200-2026-11-28-s22-lop.txt).
const int kLop = gomlx::cuda_jit::env_int("GOMLX_CUDA_QMV_LOP", 1, 0, 1);

// Compiles a variant and runs it once on a tiny product (cuda_jit::prime).
// Called under g_mu.
void build(gomlx::cuda_jit::Kernel &k, mc::Dtype t, int half, int gs, int rows, int unroll) {
    static const std::string source = std::string(kCudaCommonSource) + kCudaQmvSource;
    try {
        const int K = 128;
        array x = mc::zeros({1, K}, t), w = mc::zeros({1, K / 8}, mc::uint32);
        array sb = mc::zeros({1, K / gs}, t);
        if (gomlx::cuda_jit::prepare(
                k, source,
                {"XT=" + std::to_string(half), "QMV_GS=" + std::to_string(gs), "QMV_R=" + std::to_string(rows),
                 "QMV_U=" + std::to_string(unroll), "LOP=" + std::to_string(kLop)},
                [&](const std::string &code) { mc::eval(call(k, code, x, w, sb, sb, 1, K, rows)); }, &g_status))
            g_status = gomlx::cuda_jit::in_use_status(k);
    } catch (const std::exception &e) {
        g_status = std::string("the mat-vec could not be prepared: ") + e.what();
        k.ptx.clear();
    }
}

std::atomic<int> g_enabled{!gm_env_off("GOMLX_CUDA_QMV")};

} // namespace

namespace gomlx {

std::optional<array> cuda_qmv_try(const array &x, const array &w, const array &scales,
                                  const std::optional<array> &biases, bool transpose,
                                  int group_size, int bits) {
    if (!g_enabled.load() || g_broken.load() || bits != 4 || !transpose || !biases) return {};
    if (group_size != 32 && group_size != 64 && group_size != 128) return {};
    if (!mc::cu::is_available()) return {}; // the GPU may be Metal's
    mc::Dtype t = x.dtype();
    if (t != mc::bfloat16 && t != mc::float16) return {};
    if (scales.dtype() != t || biases->dtype() != t || w.dtype() != mc::uint32) return {};
    if (x.ndim() < 1 || w.ndim() != 2 || scales.ndim() != 2) return {};
    int K = x.shape(-1), N = w.shape(0);
    if (N <= 0 || K % 32 != 0 || K % group_size != 0 || x.size() != (size_t)K ||
        w.shape(1) != K / 8)
        return {};
    if (scales.shape(0) != N || scales.shape(1) != K / group_size || biases->shape() != scales.shape())
        return {};

    // Small products gain nothing in a decode step, where each waits for
    // the last and a call costs more host time than MLX's own op (H200,
    // chained: 0.85-1.0x up to a 3B model's MLP; 1.3-1.7x for Mistral-7B's
    // MLP and both vocabularies), so only ~56M weights and up take this
    // path (GOMLX_CUDA_QMV_MIN, in millions). Two rows a warp keep every SM
    // busy on the narrower matrices, four read more per lane on the wide
    // ones; loading several chunks ahead (U > 1) cost occupancy, slower.
    static const double min_weights = [] {
        const char *e = getenv("GOMLX_CUDA_QMV_MIN"); // in millions; 0: every size
        return e && *e ? atof(e) * 1e6 : 56e6;
    }();
    static const int knob_rows = gomlx::cuda_jit::env_int("GOMLX_CUDA_QMV_R", 0, 1, 8);
    static const int knob_unroll = gomlx::cuda_jit::env_int("GOMLX_CUDA_QMV_U", 0, 1, 16);
    if ((double)N * K < min_weights) return {};
    int rows = knob_rows ? knob_rows : N >= 8192 ? 4 : 2;
    int unroll = knob_unroll ? knob_unroll : 1;
    int half = t == mc::float16;
    const gomlx::cuda_jit::Kernel *v;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        // half (1 bit), group size (<= 128), rows (<= 8), unroll (<= 16)
        int key = half | group_size << 1 | rows << 9 | unroll << 13;
        auto it = g_variants.find(key);
        if (it == g_variants.end()) {
            it = g_variants.emplace(key, gomlx::cuda_jit::Kernel{}).first;
            gomlx::cuda_jit::Kernel &k = it->second;
            k.name = "gomlx_qmv4_" + std::string(half ? "f16" : "bf16") + "_g" +
                     std::to_string(group_size) + "_r" + std::to_string(rows) + "_u" +
                     std::to_string(unroll);
            build(k, t, half, group_size, rows, unroll);
        }
        v = &it->second;
        if (v->ptx.empty()) {
            g_broken.store(1);
            return {};
        }
    }
    g_calls.fetch_add(1);
    return call(*v, v->code(), x, w, scales, *biases, N, K, rows);
}

} // namespace gomlx

void mx_set_cuda_qmv(int on) { g_enabled.store(on ? 1 : 0); }

long mx_cuda_qmv_calls(void) { return g_calls.load(); }

int mx_cuda_available(void) {
    try {
        return mc::cu::is_available() ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

const char *mx_cuda_qmv_status(void) {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_enabled.load()) copy = "off (GOMLX_CUDA_QMV=0)";
    else if (!g_calls.load() && !g_broken.load()) copy = "not used yet";
    else copy = g_status;
    return copy.c_str();
}
