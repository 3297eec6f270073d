// cuda_launch.h - our compiled CUDA kernels as nodes of MLX's graph that
// cost the host what MLX's own kernels do. mx::fast::precompiled_cuda_kernel
// copies a kernel's code into every node and, in MLX 0.32.4, hashes it at
// every evaluation (tens of microseconds for a whole decoder layer's
// kernel); here a primitive of ours hands the kernel, loaded once, to MLX's
// CUDA command encoder directly. The encoder's entry points are looked up
// in libmlx at run time (the CPU build links no CUDA); when they are
// missing, available() is false and callers use precompiled_cuda_kernel.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

#include "mlx/cuda_jit.h"

namespace gomlx::cuda_launch {

// A kernel argument after the arrays: int or float.
struct Scalar {
    bool is_float;
    int i;
    float f;
    static Scalar of(int v) { return {false, v, 0.f}; }
    static Scalar of(float v) { return {true, 0, v}; }
};

// True when GOMLX_CUDA_DIRECT=1 (experimental) and MLX's CUDA encoder and
// the driver's module loader were found.
bool available();

// One node: kernel k (its code loaded as a module at the first evaluation)
// called with pointers to `inputs`, then to the output, then the scalars,
// on `blocks` blocks of `threads` threads with `smem` bytes of dynamic
// shared memory. The output is input `reuse`'s buffer, updated in place
// (MLX 0.32.4 allocates its ops' buffers stream-ordered, with a function
// it does not export); the kernel must allow that. Inputs are passed as
// they are: one that is not row-contiguous fails the evaluation.
mlx::core::array node(const cuda_jit::Kernel &k, std::vector<mlx::core::array> inputs, int reuse,
                      std::vector<Scalar> scalars, int blocks, int threads, int smem);

}  // namespace gomlx::cuda_launch
