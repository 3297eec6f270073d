// cpu_gated.h - hook from the shim's mx_gated_stacked into our CPU gated
// activation kernel (src/kernels/gated.h), wrapped as an MLX primitive.
#pragma once
#include <optional>
#include <mlx/mlx.h>

namespace gomlx {
// act(gate) * up of a stacked projection gu [..., 2*ff] (gate first) as
// one primitive on the CPU device: one pass, no intermediates (MLX's ops
// materialize sigmoid(g), g*sigmoid(g) and the product). std::nullopt when
// it does not apply (not a float dtype, odd last dim, other device).
std::optional<mlx::core::array> cpu_gated_try(const mlx::core::array& gu, bool gelu);
}  // namespace gomlx
