"""The late norm's rounding (GOMLX_CUDA_LAYER_LN, docs/GPU.md) against MLX's, on the CPU.

MLX's rms_norm rounds x * inv to bfloat16, then its product with the norm's
weight w; with LN the layer kernel stages x * w rounded once and scales each
product by inv after it. Both sets of products of random 4-bit rows (group
64) are compared with the float64 product of the exact normed x, with and
without a few outlier channels: LN's must be no further from it than MLX's.

    .venv/bin/python tools/ln_emulate.py
"""
import numpy as np


def bf16(a):
    """float32 to the nearest bfloat16 (ties to even), kept as float32."""
    b = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32)


def main():
    rng = np.random.default_rng(0)
    n, rows, gs = 3072, 512, 64
    for outliers in (1, 100):
        x = bf16(rng.standard_normal(n).astype(np.float32) * 3)
        x[rng.choice(n, 8, replace=False)] *= outliers
        w = bf16(1 + 0.2 * rng.standard_normal(n))
        q = rng.integers(0, 16, (rows, n)).astype(np.float32)
        s = bf16(0.01 * rng.random((rows, n // gs)) + 0.001)
        W = q * np.repeat(s, gs, 1) + np.repeat(bf16(-8 * s), gs, 1)
        inv = np.float32(1 / np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-5))
        exact = W.astype(np.float64) @ (x.astype(np.float64) * inv * w)
        mlx = bf16(W @ bf16(bf16(x * inv) * w))
        late = bf16((W @ bf16(x * w)) * inv)
        err = lambda y: np.abs(y - exact).sum() / np.abs(exact).sum()
        print(f"outliers x{outliers:<3}: MLX's rounding {err(mlx):.2e}, LN's {err(late):.2e} (relative L1 to float64)")
        assert err(late) <= err(mlx), "LN's products are further from the exact ones than MLX's"


if __name__ == "__main__":
    main()
