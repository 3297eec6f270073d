// cuda_jit.h - our CUDA kernels' way into MLX's command graph: CUDA C
// compiled at run time with NVRTC (loaded with dlopen from the CUDA
// libraries MLX's backend uses; no toolkit at build time) to SASS for the
// GPU at hand or PTX, then called through mx::fast::precompiled_cuda_kernel.
// Used by cuda_qmv.cpp and cuda_layer.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace gomlx::cuda_jit {

// One compiled kernel. An MLX that caches a precompiled kernel's module by
// name alone lets a primed kernel's calls pass a short stand-in instead of
// copying its code into every graph node; MLX 0.32.4 keys the module by the
// name and a hash of the code, so there every call copies and hashes it
// (a node's host cost grows with the code's size).
struct Kernel {
    std::string name; // the kernel's symbol, and MLX's key for its module
    std::string ptx;  // PTX or cubin; empty: compile or first run failed
    bool stand_in = false;
    const std::string &code() const;
};

// Compiles `source` with -D`defines` (NAME=value; the kernel's name is
// passed as KERNEL_NAME) into k.ptx: SASS for device 0 (MLX's default GPU)
// when allowed and NVRTC knows its architecture, else PTX. False with
// *error set on failure.
bool compile(Kernel &k, const std::string &source, const std::vector<std::string> &defines,
             std::string *error, bool allow_sass = true);

// True when k holds SASS (a cubin) rather than PTX.
bool is_sass(const Kernel &k);

// Runs the kernel once with its PTX (run(code) must build and evaluate one
// call), then once with the stand-in. A first run that fails clears k.ptx
// and sets *error; a stand-in that MLX does not find leaves the PTX in use.
// Must not be called inside an mx::compile or vmap trace.
bool prime(Kernel &k, const std::function<void(const std::string &code)> &run, std::string *error);

// compile, then prime; SASS the driver will not load is compiled again as
// PTX and primed once more. False, k.ptx empty and *error set when the
// kernel cannot run.
bool prepare(Kernel &k, const std::string &source, const std::vector<std::string> &defines,
             const std::function<void(const std::string &code)> &run, std::string *error);

// "in use", and whether MLX makes every call carry the code.
const char *in_use_status(const Kernel &k);

// A CUDA driver attribute of device 0 (CU_DEVICE_ATTRIBUTE_*), 0 when the
// driver cannot be asked.
int device_attribute(int attribute);

// Streaming multiprocessors of device 0 (MLX's); 0 when unknown.
int sm_count();

// Device 0's compute capability as 10 * major + minor (90: Hopper); 0 when
// unknown.
int compute_capability();

// An integer setting from the environment: `def` when unset or outside
// [lo, hi] (tuning knobs of our kernels).
int env_int(const char *name, int def, int lo, int hi);

}  // namespace gomlx::cuda_jit
