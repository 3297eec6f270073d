// qmm_hooks.h - where the shim's mx_quantized_matmul hands a product to our
// own kernels instead of MLX's op. Each hook returns x @ w.T (w affine-
// quantized) when its kernel applies, std::nullopt to fall back to MLX's op.
#pragma once
#include <optional>
#include <mlx/mlx.h>

namespace gomlx {
// CPU device (cpu_qmm.cpp: src/kernels/ wrapped as an MLX primitive):
// affine mode, supported bits, group sizes and dtypes.
std::optional<mlx::core::array> cpu_qmm_try(const mlx::core::array &x, const mlx::core::array &w,
                                            const mlx::core::array &scales,
                                            const std::optional<mlx::core::array> &biases,
                                            bool transpose, int group_size, int bits);
// GPU device (cuda_qmv.cpp): MLX's CUDA backend, one row of x, 4-bit
// weights, group size 32/64/128, bfloat16/float16 x with scales and biases
// of the same dtype, 56M weights and up.
std::optional<mlx::core::array> cuda_qmv_try(const mlx::core::array &x, const mlx::core::array &w,
                                             const mlx::core::array &scales,
                                             const std::optional<mlx::core::array> &biases,
                                             bool transpose, int group_size, int bits);
}  // namespace gomlx
