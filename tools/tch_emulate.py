"""The arithmetic of tc_dot's float16 products (GOMLX_CUDA_LAYER_TCH=1,
docs/GPU.md) emulated in numpy, against the sum in float64 and against
today's bfloat16 products (1 + q/16): the largest error of a row's result,
relative to sum |scale q x| over its groups, for x over ten decades at three
overall scales. Not a test of the kernel (test_cuda_layer is, on a GPU):
it checks the scheme — x times a power of two a group into float16, the
values for odd nibbles / 16, 1024 + q and 1024 + 16 q as the weights, the
sum of products accumulated in float32 and 1024 sum(staged x) taken off —
before device time is spent on it.

    .venv/bin/python tools/tch_emulate.py
"""
import numpy as np

GS = 64


def bf16(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def group_scale(m):
    e = 14 - (int(np.float32(m).view(np.uint32) >> 23) - 127)
    return np.float32(2.0 ** min(126, max(-126, e)))


def row(rng, x_scale, groups):
    x = bf16(rng.standard_normal(groups * GS) * x_scale * np.exp(rng.standard_normal(groups * GS)))
    q = rng.integers(0, 16, groups * GS)
    s, b = bf16(rng.standard_normal(groups) * 0.02), bf16(rng.standard_normal(groups) * 0.1)
    truth, y_tch, y_bf = 0.0, np.float32(0), np.float32(0)
    odd = np.arange(GS) % 2 == 1
    for g in range(groups):
        xg, qg = x[g * GS:(g + 1) * GS], q[g * GS:(g + 1) * GS]
        truth += float(s[g]) * np.dot(qg, xg.astype(np.float64)) + float(b[g]) * xg.astype(np.float64).sum()
        xs = np.float32(xg.sum(dtype=np.float32))
        sc = group_scale(np.abs(xg).max())
        staged = (xg * sc * np.where(odd, np.float32(1 / 16), np.float32(1))).astype(np.float16).astype(np.float32)
        a = np.where(odd, 1024 + 16 * qg, 1024 + qg).astype(np.float32)
        c = np.float32(0)
        for k in range(GS):
            c = np.float32(c + a[k] * staged[k])
        off = np.float32(1024) * np.float32(staged.sum(dtype=np.float32))
        y_tch = np.float32(y_tch + s[g] * (np.float32(1 / sc) * (c - off)) + b[g] * xs)
        a16 = (1 + qg / 16).astype(np.float32)
        c16 = np.float32(0)
        for k in range(GS):
            c16 = np.float32(c16 + a16[k] * xg[k])
        y_bf = np.float32(y_bf + 16 * s[g] * c16 + (b[g] - 16 * s[g]) * xs)
    norm = float(np.abs(np.repeat(s, GS) * q * x.astype(np.float64)).sum())
    return abs(float(y_tch) - truth) / norm, abs(float(y_bf) - truth) / norm


def main():
    rng = np.random.default_rng(0)
    for x_scale in (1e-6, 1.0, 1e4):
        errs = np.array([row(rng, x_scale, 48) for _ in range(30)])
        print(f"x scale {x_scale:g}: float16 products {errs[:, 0].max():.2e}, bfloat16 1 + q/16 {errs[:, 1].max():.2e}")


if __name__ == "__main__":
    main()
