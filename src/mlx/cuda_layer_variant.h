// cuda_layer_variant.h - which variant of the layer kernel (cuda_layer.cpp,
// cuda_layer_source.h) a model's shape compiles to: the rules by shape,
// each measured on an H100 (docs/GPU.md), the GOMLX_CUDA_LAYER_* knobs
// that override them for A/B runs, and the source's defines they make.
#ifndef GOMLX_CUDA_LAYER_VARIANT_H
#define GOMLX_CUDA_LAYER_VARIANT_H

#include <string>
#include <tuple>
#include <vector>

namespace gomlx::cuda_layer {

// Threads a block (one block an SM): 512 leave each thread 128 registers.
// 768 or 1024 (80 or 64 registers, spilling) made every weight phase
// 1.2-2x slower on an H100 (docs/bench/h100-2026-11-27-s12-threads.txt).
constexpr int kThreads = 512, kWarps = kThreads / 32;
// Groups of a kv head's query heads the attention counts arrivals for, in
// all (the scratch's control words 8..47).
constexpr int kMaxKv = 40;
constexpr int kMaxSharedBytes = 48 * 1024; // without opting in to more

// A layer's shape as the kernel sees it.
struct Dims {
    int hidden, n_heads, n_kv, head_dim, ff, gs, half, bias, trad, gemma;
    bool operator==(const Dims &o) const {
        return std::tie(hidden, n_heads, n_kv, head_dim, ff, gs, half, bias, trad, gemma) ==
               std::tie(o.hidden, o.n_heads, o.n_kv, o.head_dim, o.ff, o.gs, o.half, o.bias, o.trad, o.gemma);
    }
};

// Shared memory a block of the variant for d takes.
int shared_bytes(const Dims &d);

// Shared memory tc_dot's x takes for n values in groups of gs: the values,
// the groups' sums (rounded up to 4) and 64 zero bytes (tc_finish_x). Also
// the tensor-core mat-vec's (cuda_qmv.cpp).
int tc_x_shared_bytes(int n, int gs);

// The source's defines for n layers of shape d: everything a variant
// compiles differently for (its name and cache key are made from them).
std::vector<std::string> variant_defines(const Dims &d, int n);

} // namespace gomlx::cuda_layer

#endif
