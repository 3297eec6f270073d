// cuda_jit.cpp - NVRTC compilation and priming of our CUDA kernels (see
// cuda_jit.h).
#include "mlx/cuda_jit.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace gomlx::cuda_jit {
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
    int (*cubin_size)(nvrtc_prog, size_t *); // may be missing: PTX then
    int (*cubin)(nvrtc_prog, char *);
    int (*log_size)(nvrtc_prog, size_t *);
    int (*log)(nvrtc_prog, char *);
    int (*destroy)(nvrtc_prog *);
};

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
        api.cubin_size = (decltype(api.cubin_size))dlsym(h, "nvrtcGetCUBINSize");
        api.cubin = (decltype(api.cubin))dlsym(h, "nvrtcGetCUBIN");
        api.log_size = (decltype(api.log_size))dlsym(h, "nvrtcGetProgramLogSize");
        api.log = (decltype(api.log))dlsym(h, "nvrtcGetProgramLog");
        api.destroy = (decltype(api.destroy))dlsym(h, "nvrtcDestroyProgram");
        return api.create && api.compile && api.ptx_size && api.ptx && api.log_size && api.log &&
               api.destroy;
    }();
    return ok ? &api : nullptr;
}

const std::string kStandIn = "gomlx: module loaded by its first call";

}  // namespace

const std::string &Kernel::code() const { return stand_in ? kStandIn : ptx; }

int device_attribute(int attribute) {
    static auto get = []() -> int (*)(int *, int, int) {
        void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (!h) h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!h) return nullptr;
        auto init = (int (*)(unsigned))dlsym(h, "cuInit");
        auto attr = (int (*)(int *, int, int))dlsym(h, "cuDeviceGetAttribute");
        return init && attr && init(0) == 0 ? attr : nullptr;
    }();
    int value = 0;
    // device 0: the one MLX's CUDA backend runs on
    return get && get(&value, attribute, 0) == 0 ? value : 0;
}

int sm_count() {
    const int kMultiprocessorCount = 16; // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    static const int n = device_attribute(kMultiprocessorCount);
    return n;
}

int compute_capability() {
    const int kCapabilityMajor = 75, kCapabilityMinor = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*
    static const int cc = 10 * device_attribute(kCapabilityMajor) + device_attribute(kCapabilityMinor);
    return cc;
}

namespace {

// One NVRTC run for `arch`; the PTX, or the SASS (cubin) for an sm_ arch.
bool compile_for(const Nvrtc *api, Kernel &k, const std::string &source, const std::string &arch,
                 const std::vector<std::string> &defines, std::string *error) {
    nvrtc_prog prog = nullptr;
    if (api->create(&prog, source.c_str(), (k.name + ".cu").c_str(), 0, nullptr, nullptr) != 0) {
        *error = "nvrtcCreateProgram failed";
        return false;
    }
    std::vector<std::string> flags = {"--gpu-architecture=" + arch, "--std=c++17", "-DKERNEL_NAME=" + k.name};
    for (const std::string &d : defines) flags.push_back("-D" + d);
    std::vector<const char *> opts;
    for (const std::string &f : flags) opts.push_back(f.c_str());
    bool sass = arch.rfind("sm_", 0) == 0;
    if (api->compile(prog, (int)opts.size(), opts.data()) != 0) {
        size_t n = 0;
        api->log_size(prog, &n);
        std::string log(n, '\0');
        if (n) api->log(prog, log.data());
        *error = "NVRTC could not compile " + k.name + " for " + arch + ": " + log;
    } else {
        size_t n = 0;
        (sass ? api->cubin_size : api->ptx_size)(prog, &n);
        k.ptx.assign(n, '\0');
        (sass ? api->cubin : api->ptx)(prog, k.ptx.data());
    }
    api->destroy(&prog);
    return !k.ptx.empty();
}

}  // namespace

bool is_sass(const Kernel &k) { return k.ptx.size() >= 4 && !memcmp(k.ptx.data(), "\x7f" "ELF", 4); }

bool compile(Kernel &k, const std::string &source, const std::vector<std::string> &defines,
             std::string *error, bool allow_sass) {
    k.ptx.clear();
    k.stand_in = false;
    const Nvrtc *api = nvrtc();
    if (!api) {
        *error = "NVRTC (libnvrtc.so.13/.12) not found";
        return false;
    }
    // SASS for the GPU at hand: MLX 0.32.4 copies and hashes a kernel's code
    // in every call (its module cache key includes the hash), and the cubin
    // is half the size of the PTX. Else PTX for Turing (the oldest CUDA 13
    // compiles for) and newer, which the driver compiles at load.
    const int cc = compute_capability();
    std::string ignored;
    if (allow_sass && cc > 0 && api->cubin_size && api->cubin &&
        compile_for(api, k, source, "sm_" + std::to_string(cc), defines, &ignored))
        return true;
    return compile_for(api, k, source, "compute_75", defines, error);
}

bool prime(Kernel &k, const std::function<void(const std::string &code)> &run, std::string *error) {
    try {
        run(k.ptx);
    } catch (const std::exception &e) {
        *error = "the compiled kernel " + k.name + " did not run: " + e.what();
        k.ptx.clear();
        return false;
    }
    try {
        run(kStandIn);
        k.stand_in = true;
    } catch (const std::exception &) {
        k.stand_in = false; // an MLX that keys modules by the code: pass it every time
    }
    return true;
}

bool prepare(Kernel &k, const std::string &source, const std::vector<std::string> &defines,
             const std::function<void(const std::string &code)> &run, std::string *error) {
    if (!compile(k, source, defines, error)) return false;
    const bool sass = is_sass(k);
    bool ran = prime(k, run, error);
    if (!ran && sass && compile(k, source, defines, error, false)) ran = prime(k, run, error);
    if (!ran) k.ptx.clear();
    return ran;
}

const char *in_use_status(const Kernel &k) {
    return k.stand_in ? "in use" : "in use (its code goes with every call)";
}

int env_int(const char *name, int def, int lo, int hi) {
    const char *e = getenv(name);
    int v = e && *e ? atoi(e) : def;
    return v >= lo && v <= hi ? v : def;
}

}  // namespace gomlx::cuda_jit
