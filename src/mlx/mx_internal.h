// mx_internal.h - what the shim's C++ files share: the handle layout, the
// scope registration and the exception guard that keeps C++ out of C.
#pragma once
#include <cstddef>
#include <string>
#include <utility>

#include <mlx/array.h>

#include "mlx/mx.h"

// A handle remembers its scope and slot so keep/free are O(1).
struct mx_array_s {
    mlx::core::array a;
    mx_scope *scope = nullptr;
    size_t slot = 0;
};

namespace gomlx::mx {

// New handle registered in the calling thread's innermost scope, if any.
mx_array wrap(mlx::core::array a);
// New handle that nobody's scope owns (loader callbacks own it).
mx_array wrap_unscoped(mlx::core::array a);

// Records the exception being handled as the thread's error message.
void record_current_exception() noexcept;
void record(const char *msg) noexcept;

// Throws unless the GGUF file's header and tensor extents are in bounds
// (MLX's reader would crash on them); mx_gguf_check.cpp.
void check_gguf_file(const std::string &path);

mlx::core::Dtype to_mlx(mx_dtype t);
// Checks ndim (0..MX_MAX_DIMS) and copies the dims.
mlx::core::Shape to_shape(const int *shape, int ndim);
// Scalars are built in their own dtype so large integers stay exact.
mlx::core::array scalar_of(double v, mlx::core::Dtype dt);
mx_dtype from_mlx(mlx::core::Dtype t);

// Runs f, which yields an mlx array, and returns it as a scoped handle.
template <class F>
mx_array guard(F &&f) noexcept {
    try {
        return wrap(f());
    } catch (...) {
        record_current_exception();
        return nullptr;
    }
}

// Runs f, returning its result, or `failed` when it throws.
template <class R, class F>
R guard_ret(R failed, F &&f) noexcept {
    try {
        return f();
    } catch (...) {
        record_current_exception();
        return failed;
    }
}

}  // namespace gomlx::mx
