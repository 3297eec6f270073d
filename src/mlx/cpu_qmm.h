// cpu_qmm.h - hook from the shim's mx_quantized_matmul into our own CPU
// quantized matmul kernels (src/kernels/), wrapped as an MLX primitive.
#pragma once
#include <optional>
#include <mlx/mlx.h>

namespace gomlx {
// Returns the product when our kernel applies (CPU device, affine mode,
// supported bits/group size/dtypes); std::nullopt to fall back to MLX's op.
std::optional<mlx::core::array> cpu_qmm_try(const mlx::core::array& x, const mlx::core::array& w,
                                            const mlx::core::array& scales,
                                            const std::optional<mlx::core::array>& biases,
                                            bool transpose, int group_size, int bits);
}  // namespace gomlx
