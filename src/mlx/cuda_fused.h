// cuda_fused.h - hook from the shim's mx_gated_stacked into our fused SwiGLU
// kernel (cuda_fused.cpp) for one token on an NVIDIA GPU.
#pragma once
#include <optional>
#include <mlx/mlx.h>

namespace gomlx {
// Called on the GPU device. silu(gate) * up for one row [.., 2F] of a
// stacked gate|up in bfloat16/float16 when the fused kernels are on and
// usable; std::nullopt to fall back to MLX's ops (and for prefill rows,
// where MLX's vectorized kernel is the faster one).
std::optional<mlx::core::array> cuda_swiglu_try(const mlx::core::array &gu);
}  // namespace gomlx
