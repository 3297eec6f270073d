// cuda_jit.cpp - NVRTC compilation and priming of our CUDA kernels (see
// cuda_jit.h).
#include "mlx/cuda_jit.h"

#include <dlfcn.h>

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

bool compile(Kernel &k, const std::string &source, const std::vector<std::string> &defines,
             std::string *error) {
    k.ptx.clear();
    k.stand_in = false;
    const Nvrtc *api = nvrtc();
    if (!api) {
        *error = "NVRTC (libnvrtc.so.13/.12) not found";
        return false;
    }
    nvrtc_prog prog = nullptr;
    if (api->create(&prog, source.c_str(), (k.name + ".cu").c_str(), 0, nullptr, nullptr) != 0) {
        *error = "nvrtcCreateProgram failed";
        return false;
    }
    std::vector<std::string> flags = {"-DKERNEL_NAME=" + k.name};
    for (const std::string &d : defines) flags.push_back("-D" + d);
    // PTX for Turing (the oldest CUDA 13 compiles for) and newer; the
    // driver compiles it for the GPU at hand when the module is loaded.
    std::vector<const char *> opts = {"--gpu-architecture=compute_75", "--std=c++17"};
    for (const std::string &f : flags) opts.push_back(f.c_str());
    if (api->compile(prog, (int)opts.size(), opts.data()) != 0) {
        size_t n = 0;
        api->log_size(prog, &n);
        std::string log(n, '\0');
        if (n) api->log(prog, log.data());
        *error = "NVRTC could not compile " + k.name + ": " + log;
    } else {
        size_t n = 0;
        api->ptx_size(prog, &n);
        k.ptx.assign(n, '\0');
        api->ptx(prog, k.ptx.data());
    }
    api->destroy(&prog);
    return !k.ptx.empty();
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
        k.stand_in = false; // an MLX that reloads by code: pass the PTX every time
    }
    return true;
}

}  // namespace gomlx::cuda_jit
