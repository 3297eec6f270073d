// cpu_sdpa.h - hook from the shim's mx_sdpa into our own CPU attention
// kernel (src/kernels/attention.h), wrapped as an MLX primitive.
#pragma once
#include <optional>
#include <mlx/mlx.h>

namespace gomlx {
// Returns softmax(q k^T * scale [+ causal mask]) v when our kernel applies
// (CPU device, 4-D q/k/v of one float dtype, GQA head counts, head_dim up
// to 256, Tk >= Tq under the causal mask); std::nullopt to fall back to
// MLX's op. Array masks are always left to MLX. window (with causal) and
// softcap as in gm_attn_args; 0 turns them off.
// false when GOMLX_CPU_SDPA=0 (attention left to MLX; A/B runs).
bool cpu_sdpa_enabled();
std::optional<mlx::core::array> cpu_sdpa_try(const mlx::core::array& q, const mlx::core::array& k,
                                             const mlx::core::array& v, float scale, bool causal,
                                             int window = 0, float softcap = 0);
}  // namespace gomlx
