// cuda_qmv.h - hook from the shim's mx_quantized_matmul into our 4-bit CUDA
// matrix-vector kernel (cuda_qmv.cpp), for one token on an NVIDIA GPU.
#pragma once
#include <optional>
#include <mlx/mlx.h>

namespace gomlx {
// Called on the GPU device. Returns x @ w.T when our kernel applies (MLX's
// CUDA backend, one row of x, 4-bit affine weights, group size 32/64/128,
// bfloat16/float16 x with scales and biases of the same dtype, 56M weights
// and up); std::nullopt to fall back to MLX's op.
std::optional<mlx::core::array> cuda_qmv_try(const mlx::core::array &x, const mlx::core::array &w,
                                             const mlx::core::array &scales,
                                             const std::optional<mlx::core::array> &biases,
                                             bool transpose, int group_size, int bits);
}  // namespace gomlx
