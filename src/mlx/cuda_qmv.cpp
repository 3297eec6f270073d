// cuda_qmv.cpp - our 4-bit matrix-vector product for one token on NVIDIA
// GPUs, in place of MLX's when it applies (GOMLX_CUDA_QMV=0 turns it off).
//
// A 7B model's decode step is its quantized mat-vecs: MLX 0.32.4's CUDA
// kernel reads the weights at about a quarter of an H100's bandwidth. Ours
// (cuda_qmv_source.h on the FMA pipes, or for products of many rows
// cuda_qmv_tc_source.h on tensor cores) is compiled once per variant with NVRTC, loaded with
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
#include "mlx/cuda_layer_dot_source.h"
#include "mlx/cuda_layer_sync_source.h"
#include "mlx/cuda_layer_variant.h"
#include "mlx/cuda_layer_x_source.h"
#include "mlx/cuda_qmv_source.h"
#include "mlx/cuda_qmv_tc_source.h"
#include "mlx/mx.h"
#include "util/env.h"

namespace mc = mlx::core;
using mc::array;

namespace {

std::mutex g_mu;
std::string g_status = "not used yet";
std::map<int, gomlx::cuda_jit::Kernel> g_variants; // (dtype, group size, rows, unroll | tensor cores) -> kernel
std::atomic<int> g_broken{0};      // 1 after NVRTC failed: MLX's kernel from then on
std::atomic<int> g_tc_broken{0};   // 1 after the tensor-core kernel failed: the FMA kernel from then on
std::string g_tc_failure;          // why it failed
std::atomic<long> g_calls{0}, g_tc_calls{0};

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

// The tensor-core kernel (cuda_qmv_tc_source.h): its blocks' threads, and
// blocks an SM holds (GOMLX_CUDA_QMV_TCB; registers bounded to fit them).
constexpr int kTcThreads = 256;
const int kTcBlocks = gomlx::cuda_jit::env_int("GOMLX_CUDA_QMV_TCB", 2, 1, 4);

array call_tc(const gomlx::cuda_jit::Kernel &k, const std::string &code, const array &x, const array &w,
              const array &scales, const array &biases, int N, int K, int gs) {
    const int tiles = (N + 15) / 16, warps_per_block = kTcThreads / 32;
    const int sms = std::max(1, gomlx::cuda_jit::sm_count());
    // Every SM's blocks, unless the tiles leave some without one.
    const int blocks = std::min((tiles + warps_per_block - 1) / warps_per_block, sms * kTcBlocks);
    mc::Shape out_shape = x.shape();
    out_shape.back() = N;
    return mc::fast::precompiled_cuda_kernel(k.name, code, {x, w, scales, biases}, {out_shape}, {x.dtype()},
                                             {N, K}, {blocks * kTcThreads, 1, 1}, {kTcThreads, 1, 1},
                                             gomlx::cuda_layer::tc_x_shared_bytes(K, gs), std::nullopt, true)[0];
}

// A nibble's mask and 16.0f's bits as one lop3 (LOP, nibble_16q): the
// vocabulary's mat-vec 354-356 -> 317-330 us on an H200 (bench_cuda_qmv),
// decode Llama-3.2-3B 765.8 -> 776.5 tok/s with the layer kernel's LOP on
// (docs/bench/h200-2026-11-28-s22-lop.txt).
const int kLop = gomlx::cuda_jit::env_int("GOMLX_CUDA_QMV_LOP", 1, 0, 1);

// Which products go to the tensor-core kernel where it can take them
// (sm_80+, the weights 16-byte aligned, x within 48 KB of shared memory):
// by default those with at least 4 tiles of 16 rows an SM (a vocabulary,
// a 7B model's gate|up: H200, bench_cuda_qmv, docs/bench/h200-2026-11-29-
// s24-qmv-tc.txt: the unembedding 104-107 -> 67 us, 2.1 -> 3.3 TB/s,
// decode +0.5 to +6%). A warp takes a tile's whole K, so with fewer tiles
// too few SMs work (Llama-3.2-3B's down projection, 192 tiles: chained
// 27-34 -> 40-42 us), and the FMA kernel, which spreads 2-4 rows a warp,
// stays. GOMLX_CUDA_QMV_TC=1: every product it can take, 0: none.
const int kTensorCores = gomlx::cuda_jit::env_int("GOMLX_CUDA_QMV_TC", -1, 0, 1);
bool tc_wanted(int N) {
    if (kTensorCores >= 0) return kTensorCores == 1;
    return (N + 15) / 16 >= 4 * std::max(1, gomlx::cuda_jit::sm_count());
}

// The tensor-core kernel's defines: the layer kernel's parts it compiles
// with (tc_dot alone: no phase, norm or team of the layer's).
std::vector<std::string> tc_defines(int half, int gs, int whole) {
    return {"XT=" + std::to_string(half), "GS=" + std::to_string(gs), "QMV_WHOLE=" + std::to_string(whole),
            "LT=" + std::to_string(kTcThreads), "QMV_BLOCKS=" + std::to_string(kTcBlocks),
            "LOP=" + std::to_string(kLop), "NIB0=0", "TC=1", "TCA=0", "TCR_C=0", "TCR_E=0", "TCI=1",
            "DOT_U=1", "GEMMA=0", "TIMING=0"};
}

// The FMA kernel's defines for a dtype, group size, rows a warp and chunks
// a lane loads ahead.
std::vector<std::string> fma_defines(int half, int gs, int rows, int unroll) {
    return {"XT=" + std::to_string(half), "QMV_GS=" + std::to_string(gs), "QMV_R=" + std::to_string(rows),
            "QMV_U=" + std::to_string(unroll), "LOP=" + std::to_string(kLop)};
}

// Compiles a variant and runs it once on a tiny product (cuda_jit::prime).
// `whole` < 0: the FMA kernel, else the tensor-core kernel with tc_dot's
// WHOLE. Called under g_mu.
void build(gomlx::cuda_jit::Kernel &k, mc::Dtype t, int half, int gs, int rows, int unroll, int whole) {
    static const std::string source = std::string(kCudaCommonSource) + kCudaQmvSource;
    static const std::string tc_source = std::string(kCudaCommonSource) + kCudaLayerSyncSource + kCudaLayerXSource +
                                         kCudaLayerDotSource + kCudaQmvTcSource;
    try {
        const int K = whole > 0 ? 8 * gs : 128; // tc_dot's windows whole or not, as the variant has them
        array x = mc::zeros({1, K}, t), w = mc::zeros({1, K / 8}, mc::uint32);
        array sb = mc::zeros({1, K / gs}, t);
        bool ok;
        if (whole < 0) {
            ok = gomlx::cuda_jit::prepare(
                k, source, fma_defines(half, gs, rows, unroll),
                [&](const std::string &code) { mc::eval(call(k, code, x, w, sb, sb, 1, K, rows)); }, &g_status);
        } else {
            ok = gomlx::cuda_jit::prepare(
                k, tc_source, tc_defines(half, gs, whole),
                [&](const std::string &code) {
                    mc::eval(w);
                    mc::eval(call_tc(k, code, x, w, sb, sb, 1, K, gs));
                },
                &g_status);
        }
        if (ok) g_status = gomlx::cuda_jit::in_use_status(k);
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
    // The tensor-core kernel loads the weights 16 bytes at a time, so it
    // takes them only once their buffer is known (MLX's buffers are
    // 256-byte aligned; the offset of a view is set when it is evaluated).
    bool tc = !g_tc_broken.load() && tc_wanted(N) && gomlx::cuda_jit::compute_capability() >= 80 &&
              w.status() != array::Status::unscheduled && w.offset() % 16 == 0 &&
              gomlx::cuda_layer::tc_x_shared_bytes(K, group_size) <= gomlx::cuda_layer::kMaxSharedBytes;
    const gomlx::cuda_jit::Kernel *v = nullptr;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        // The variant for (dtype, group size, rows, unroll) or with tensor
        // cores (dtype, group size, whole windows), compiled on first use.
        auto variant = [&](bool with_tc) -> const gomlx::cuda_jit::Kernel & {
            const int whole = with_tc ? (K / group_size % 8 == 0 ? 1 : 0) : -1;
            // half (1 bit), group size (<= 128), rows (<= 8), unroll (<= 16); or whole (1 bit) and a flag
            const int key = with_tc ? half | group_size << 1 | whole << 9 | 1 << 20
                                    : half | group_size << 1 | rows << 9 | unroll << 13;
            auto it = g_variants.find(key);
            if (it == g_variants.end()) {
                it = g_variants.emplace(key, gomlx::cuda_jit::Kernel{}).first;
                gomlx::cuda_jit::Kernel &k = it->second;
                k.name = "gomlx_qmv4_" + std::string(half ? "f16" : "bf16") + "_g" + std::to_string(group_size) +
                         (with_tc ? "_tc_w" + std::to_string(whole) + "_b" + std::to_string(kTcBlocks)
                                  : "_r" + std::to_string(rows) + "_u" + std::to_string(unroll));
                build(k, t, half, group_size, rows, unroll, whole);
            }
            return it->second;
        };
        v = &variant(tc);
        if (tc && v->ptx.empty()) { // the FMA kernel can still take it
            g_tc_broken.store(1);
            g_tc_failure = g_status;
            tc = false;
            v = &variant(false);
        }
        if (v->ptx.empty()) {
            g_broken.store(1);
            return {};
        }
    }
    g_calls.fetch_add(1);
    if (tc) {
        g_tc_calls.fetch_add(1);
        return call_tc(*v, v->code(), x, w, scales, *biases, N, K, group_size);
    }
    return call(*v, v->code(), x, w, scales, *biases, N, K, rows);
}

} // namespace gomlx

void mx_set_cuda_qmv(int on) { g_enabled.store(on ? 1 : 0); }

long mx_cuda_qmv_calls(void) { return g_calls.load(); }

long mx_cuda_qmv_tc_calls(void) { return g_tc_calls.load(); }

int mx_cuda_available(void) {
    try {
        return mc::cu::is_available() ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

int mx_cuda_capability(void) { return gomlx::cuda_jit::compute_capability(); }

const char *mx_cuda_qmv_status(void) {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_enabled.load()) copy = "off (GOMLX_CUDA_QMV=0)";
    else if (!g_calls.load() && !g_broken.load()) copy = "not used yet";
    else copy = g_status;
    if (g_tc_calls.load()) copy += ", on tensor cores for the products of many rows";
    if (g_tc_broken.load()) copy += "; its tensor-core form is off: " + g_tc_failure;
    return copy.c_str();
}
