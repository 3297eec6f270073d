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
// MLX kernel is used, and mx_cuda_qmv_status() says why.
#include "mlx/cuda_qmv.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/fast.h>
#include <mlx/mlx.h>

#include "mlx/cuda_qmv_source.h"
#include "mlx/mx.h"

namespace mc = mlx::core;
using mc::array;

namespace {

// The few NVRTC entry points we use, declared here so no CUDA header is
// needed at build time (the CPU wheels ship none).
typedef struct nvrtc_program *nvrtc_prog;
struct Nvrtc {
    int (*create)(nvrtc_prog *, const char *, const char *, int, const char *const *,
                  const char *const *);
    int (*compile)(nvrtc_prog, int, const char *const *);
    int (*ptx_size)(nvrtc_prog, size_t *);
    int (*ptx)(nvrtc_prog, char *);
    int (*log_size)(nvrtc_prog, size_t *);
    int (*log)(nvrtc_prog, char *);
    int (*destroy)(nvrtc_prog *);
};

// One compiled kernel variant. MLX caches a precompiled kernel's module by
// name and never reads the code again, so once a variant has run (primed)
// later calls pass a short stand-in instead of copying ~100 KB of PTX into
// every graph node (a copy per call made the host side of a decode step
// 0.3 ms slower on a 3B model).
struct Variant {
    std::string name; // the kernel's, and MLX's key for its module
    std::string ptx;  // empty: compile or first run failed
    bool stand_in = false;
};
const char *const kStandIn = "gomlx: module loaded by its first call";

std::mutex g_mu;
std::string g_status = "not used yet";
std::map<int, Variant> g_variants; // (dtype, group size, rows, unroll) -> variant
std::atomic<int> g_broken{0};      // 1 after NVRTC failed: MLX's kernel from then on
std::atomic<long> g_calls{0};

const Nvrtc *nvrtc() {
    static Nvrtc api;
    static bool ok = [] {
        // The NVRTC MLX already loaded first: its PTX is what this driver takes.
        const char *names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
        void *h = nullptr;
        for (const char *n : names)
            if ((h = dlopen(n, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD))) break;
        for (size_t i = 0; !h && i < sizeof names / sizeof *names; i++)
            h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) return false;
        api.create = (decltype(api.create))dlsym(h, "nvrtcCreateProgram");
        api.compile = (decltype(api.compile))dlsym(h, "nvrtcCompileProgram");
        api.ptx_size = (decltype(api.ptx_size))dlsym(h, "nvrtcGetPTXSize");
        api.ptx = (decltype(api.ptx))dlsym(h, "nvrtcGetPTX");
        api.log_size = (decltype(api.log_size))dlsym(h, "nvrtcGetProgramLogSize");
        api.log = (decltype(api.log))dlsym(h, "nvrtcGetProgramLog");
        api.destroy = (decltype(api.destroy))dlsym(h, "nvrtcDestroyProgram");
        return api.create && api.compile && api.ptx_size && api.ptx && api.log_size && api.log &&
               api.destroy;
    }();
    return ok ? &api : nullptr;
}

// PTX of one kernel variant; empty on failure (with g_status saying why).
// Called under g_mu.
std::string compile(const std::string &name, int half, int gs, int rows, int unroll) {
    std::string out;
    const Nvrtc *api = nvrtc();
    if (!api) {
        g_status = "NVRTC (libnvrtc.so.13/.12) not found";
        return out;
    }
    nvrtc_prog prog = nullptr;
    if (api->create(&prog, kCudaQmvSource, (name + ".cu").c_str(), 0, nullptr, nullptr) != 0) {
        g_status = "nvrtcCreateProgram failed";
        return out;
    }
    std::string d_name = "-DQMV_NAME=" + name, d_xt = "-DQMV_XT=" + std::to_string(half),
                d_gs = "-DQMV_GS=" + std::to_string(gs), d_r = "-DQMV_R=" + std::to_string(rows),
                d_u = "-DQMV_U=" + std::to_string(unroll);
    // PTX for Turing (the oldest CUDA 13 compiles for) and newer; the
    // driver compiles it for the GPU at hand when the module is loaded.
    const char *opts[] = {"--gpu-architecture=compute_75", "--std=c++17", d_name.c_str(),
                          d_xt.c_str(), d_gs.c_str(), d_r.c_str(), d_u.c_str()};
    if (api->compile(prog, 7, opts) != 0) {
        size_t n = 0;
        api->log_size(prog, &n);
        std::string log(n, '\0');
        if (n) api->log(prog, log.data());
        g_status = "NVRTC could not compile the kernel: " + log;
    } else {
        size_t n = 0;
        api->ptx_size(prog, &n);
        std::string ptx(n, '\0');
        api->ptx(prog, ptx.data());
        out = ptx;
        g_status = "in use";
    }
    api->destroy(&prog);
    return out;
}

array call(const std::string &name, const std::string &code, const array &x, const array &w,
           const array &scales, const array &biases, int N, int K, int rows) {
    const int threads = 256;
    int warps = (N + rows - 1) / rows;
    mc::Shape out_shape = x.shape();
    out_shape.back() = N;
    return mc::fast::precompiled_cuda_kernel(name, code, {x, w, scales, biases}, {out_shape},
                                             {x.dtype()}, {N, K}, {warps * 32, 1, 1},
                                             {threads, 1, 1}, 0, std::nullopt, true)[0];
}

// Runs a new variant once on a tiny product so MLX loads its module, then
// checks that a call with the stand-in finds it. A first run that fails
// (say, a driver too old for the PTX) leaves the variant unusable and MLX's
// kernel in charge. The first use must not be inside an mx::compile or
// vmap trace, where eval throws (the engine compiles only elementwise
// pieces). Called under g_mu.
void prime(Variant &v, mc::Dtype t, int gs, int rows) {
    const std::string &name = v.name;
    const int K = 128;
    array x = mc::zeros({1, K}, t), w = mc::zeros({1, K / 8}, mc::uint32);
    array sb = mc::zeros({1, K / gs}, t);
    try {
        mc::eval(call(name, v.ptx, x, w, sb, sb, 1, K, rows));
    } catch (const std::exception &e) {
        g_status = std::string("the compiled kernel did not run: ") + e.what();
        v.ptx.clear();
        return;
    }
    try {
        mc::eval(call(name, kStandIn, x, w, sb, sb, 1, K, rows));
        v.stand_in = true;
    } catch (const std::exception &) {
        v.stand_in = false; // an MLX that reloads by code: pass the PTX every time
    }
}

// A tuning knob from the environment within [lo, hi], or 0 when unset.
int env_knob(const char *name, int lo, int hi) {
    const char *e = getenv(name);
    if (!e || !*e) return 0;
    int v = atoi(e);
    return v >= lo && v <= hi ? v : 0;
}

int env_enabled() {
    const char *e = getenv("GOMLX_CUDA_QMV");
    return !(e && strcmp(e, "0") == 0);
}

std::atomic<int> g_enabled{env_enabled()};

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
    static const int knob_rows = env_knob("GOMLX_CUDA_QMV_R", 1, 8);
    static const int knob_unroll = env_knob("GOMLX_CUDA_QMV_U", 1, 16);
    if ((double)N * K < min_weights) return {};
    int rows = knob_rows ? knob_rows : N >= 8192 ? 4 : 2;
    int unroll = knob_unroll ? knob_unroll : 1;
    int half = t == mc::float16;
    const Variant *v;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        // half (1 bit), group size (<= 128), rows (<= 8), unroll (<= 16)
        int key = half | group_size << 1 | rows << 9 | unroll << 13;
        auto it = g_variants.find(key);
        if (it == g_variants.end()) {
            it = g_variants.emplace(key, Variant{}).first;
            Variant &n = it->second;
            n.name = "gomlx_qmv4_" + std::string(half ? "f16" : "bf16") + "_g" +
                     std::to_string(group_size) + "_r" + std::to_string(rows) + "_u" +
                     std::to_string(unroll);
            n.ptx = compile(n.name, half, group_size, rows, unroll);
            if (!n.ptx.empty()) prime(n, t, group_size, rows);
        }
        v = &it->second;
        if (v->ptx.empty()) {
            g_broken.store(1);
            return {};
        }
    }
    static const std::string stand_in = kStandIn;
    g_calls.fetch_add(1);
    return call(v->name, v->stand_in ? stand_in : v->ptx, x, w, scales, *biases, N, K, rows);
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
