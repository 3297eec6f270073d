"""The arithmetic of tc_dot's 8-bit integer products (GOMLX_CUDA_LAYER_IMMA=1,
docs/GPU.md), emulated in numpy against the exact product and against what
a bfloat16 result's own rounding costs: the largest error of a row's
result, relative to sum(|scale q x|) over the row.

A weight word's byte j holds q_2j + 16 q_2j+1; x's pair j is staged as
u = x_2j+1 / 16 and v = x_2j - u (so q_2j x_2j + q_2j+1 x_2j+1 = byte u +
q_2j v; with IMMA=2 v = x_2j and u against the byte's 16 q_2j+1), each in two signed 8-bit parts at a scale a group of GS: hi =
round(u 127 / max|u|), lo = round((u 127 / max|u| - hi) 256) clamped to
+-127, the sums 256 sum(byte hi) + sum(byte lo) in int32, times max|u| /
(127 256). Staging in float32 as the kernel does it. Three kinds of x:
normal, Student-t with 3 degrees of freedom, and normal with four channels
100 times larger (LLM activations have such outliers).

    .venv/bin/python tools/imma_emulate.py
"""
import numpy as np

GS, K, ROWS = 64, 3072, 256


def bf16(a):
    """a rounded to bfloat16 (to nearest even), as float32."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def two_parts(v):
    """v (groups x values, float32) as the kernel stages it: hi, lo, step / 256."""
    m = np.abs(v).max(axis=-1, keepdims=True)
    inv = np.where(m > 0, np.float32(127) / m, np.float32(0)).astype(np.float32)
    t = (v * inv).astype(np.float32)
    hi = np.rint(t)
    lo = np.clip(np.rint((t - hi) * np.float32(256)), -127, 127)
    return hi.astype(np.int64), lo.astype(np.int64), (m / np.float32(127 * 256)).astype(np.float32)


def errors(x, rng, variant):
    q = rng.integers(0, 16, size=(ROWS, K))
    s = bf16(rng.normal(0, 0.02, size=(ROWS, K // GS)))
    b = bf16(-8 * s + rng.normal(0, 0.002, size=s.shape))
    xg = x.reshape(K // GS, GS)
    qg = q.reshape(ROWS, K // GS, GS)
    x64 = xg.astype(np.float64)
    exact = (s * np.einsum("rgk,gk->rg", qg, x64) + b * x64.sum(-1)).sum(-1)
    scale = (np.abs(s)[..., None] * qg * np.abs(x64)).sum((-1, -2))
    q_even = qg[..., 0::2]
    byte = q_even + 16 * qg[..., 1::2] if variant == 1 else 16 * qg[..., 1::2]
    u = (xg[:, 1::2] * np.float32(0.0625)).astype(np.float32)
    v = (xg[:, 0::2] - u).astype(np.float32) if variant == 1 else xg[:, 0::2]
    uh, ul, su = two_parts(u)
    vh, vl, sv = two_parts(v)
    sums_u = 256 * np.einsum("rgk,gk->rg", byte, uh) + np.einsum("rgk,gk->rg", byte, ul)
    sums_v = 256 * np.einsum("rgk,gk->rg", q_even, vh) + np.einsum("rgk,gk->rg", q_even, vl)
    assert np.abs(sums_u).max() < 2**31 and np.abs(sums_v).max() < 2**31
    qx = su[:, 0].astype(np.float32) * sums_u.astype(np.float32) + sv[:, 0] * sums_v.astype(np.float32)
    int8 = (s * qx + b * x64.sum(-1)).sum(-1)
    return np.abs(int8 - exact) / scale, np.abs(bf16(exact) - exact) / scale


def main():
    rng = np.random.default_rng(0)
    outliers = np.isin(np.arange(K), [7, 500, 1800, 3000])
    kinds = {"normal": rng.normal(0, 1, K), "Student-t 3": rng.standard_t(3, K),
             "normal, 4 channels x100": np.where(outliers, 100.0, 1.0) * rng.normal(0, 1, K)}
    for variant in (1, 2):
        for name, x in kinds.items():
            e, r = errors(bf16(x), np.random.default_rng(1), variant)
            print(f"IMMA={variant} {name:24s} 8-bit products: max {e.max():.1e} mean {e.mean():.1e}   "
                  f"a bfloat16 result's rounding: max {r.max():.1e} mean {r.mean():.1e}")


if __name__ == "__main__":
    main()
