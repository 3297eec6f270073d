// cpu_primitive.h - what our CPU-kernel primitives (cpu_qmm, cpu_sdpa,
// cpu_layer) share: dtype mapping, a base class for primitives that exist
// on the CPU device only, and a row-major copy of a strided view.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlx/primitives.h>

extern "C" {
#include "kernels/qmm.h" /* gm_fdtype */
}

namespace gomlx {

namespace mc = mlx::core;

inline bool to_fdtype(mc::Dtype t, gm_fdtype *out) {
    if (t == mc::float32) *out = GM_F32;
    else if (t == mc::float16) *out = GM_F16;
    else if (t == mc::bfloat16) *out = GM_BF16;
    else return false;
    return true;
}

// A primitive whose work is one of our C kernels: there is no GPU version
// (the engine only creates it when the default device is the CPU).
class CpuOnlyPrimitive : public mc::UnaryPrimitive {
   public:
    CpuOnlyPrimitive(mc::Stream s, const char *name) : mc::UnaryPrimitive(s), name_(name) {}

    void eval_gpu(const std::vector<mc::array> &, mc::array &) override {
        throw std::runtime_error(std::string(name_) + " runs on the CPU device only");
    }

    const char *name() const override { return name_; }

   private:
    const char *name_;
};

// An input's elements in row-major order: its own buffer when it is
// row-contiguous, else a copy (non-contiguous inputs are rare: a
// transposed or broadcast view), freed with the Packed.
struct Packed {
    const void *ptr = nullptr;
    void *owned = nullptr;
    Packed() = default;
    Packed(const Packed &) = delete;
    Packed &operator=(const Packed &) = delete;
    ~Packed() { std::free(owned); }
};

struct View {
    const char *data;
    size_t itemsize;
    std::vector<int> shape;
    std::vector<int64_t> strides;  // in elements
    bool contiguous;
};

inline View view_of(const mc::array &a) {
    View v;
    v.data = static_cast<const char *>(a.data<void>());
    v.itemsize = a.itemsize();
    v.shape.assign(a.shape().begin(), a.shape().end());
    v.strides.assign(a.strides().begin(), a.strides().end());
    v.contiguous = a.flags().row_contiguous;
    return v;
}

inline void pack(const View &v, Packed &p) {
    if (v.contiguous) {
        p.ptr = v.data;
        return;
    }
    size_t n = 1;
    for (int d : v.shape) n *= (size_t)d;
    char *dst = static_cast<char *>(std::malloc(n * v.itemsize + 1));
    if (!dst) throw std::bad_alloc();
    p.owned = dst;
    p.ptr = dst;
    size_t nd = v.shape.size();
    std::vector<int> idx(nd, 0);
    for (size_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (size_t d = 0; d < nd; d++) off += (int64_t)idx[d] * v.strides[d];
        std::memcpy(dst + i * v.itemsize, v.data + off * (int64_t)v.itemsize, v.itemsize);
        for (size_t d = nd; d-- > 0;) {
            if (++idx[d] < v.shape[d]) break;
            idx[d] = 0;
        }
    }
}

}  // namespace gomlx
