// cpu_qmm.cpp - placeholder until the CPU kernels land: always falls back to MLX.
#include "mlx/cpu_qmm.h"

namespace gomlx {
std::optional<mlx::core::array> cpu_qmm_try(const mlx::core::array&, const mlx::core::array&,
                                            const mlx::core::array&,
                                            const std::optional<mlx::core::array>&, bool, int,
                                            int) {
    return std::nullopt;
}
}  // namespace gomlx
