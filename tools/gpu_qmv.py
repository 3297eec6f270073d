"""Prototype: a 4-bit affine quantized mat-vec (one token, bfloat16) as an MLX
custom CUDA kernel, checked against MLX's dequantized product and timed
against mx.quantized_matmul on real decode shapes. Run on the NVIDIA machine
after `source tools/gpu_env.sh WHEELS`."""
import sys
import time

import mlx.core as mx

SOURCE = r"""
    // One warp computes R rows: each lane takes 16-byte chunks (32 weights)
    // of those rows and the matching 32 values of x, read once for all R.
    constexpr int CH = K / 32;
    const int lane = threadIdx.x & 31;
    const int row0 = ((blockIdx.x * blockDim.x + threadIdx.x) >> 5) * R;
    if (row0 >= N) return;
    const uint4* x4 = reinterpret_cast<const uint4*>(x);
    float acc[R];
    #pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.f;
    for (int c = lane; c < CH; c += 32) {
        float xf[32];
        float xs = 0.f;
        #pragma unroll
        for (int i = 0; i < 4; i++) {
            uint4 xr = __ldg(x4 + c * 4 + i);
            const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xr);
            #pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __bfloat1622float2(xp[k]);
                xf[i * 8 + 2 * k] = f.x;
                xf[i * 8 + 2 * k + 1] = f.y;
                xs += f.x + f.y;
            }
        }
        const int g = (c * 32) / GS;
        #pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = row0 + r;
            if (row >= N) break;
            uint4 q = __ldg(reinterpret_cast<const uint4*>(w) + (size_t)row * CH + c);
            uint32_t words[4] = {q.x, q.y, q.z, q.w};
            float qs = 0.f;
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                #pragma unroll
                for (int k = 0; k < 8; k++) qs += (float)((words[i] >> (4 * k)) & 15u) * xf[i * 8 + k];
            }
            acc[r] += __bfloat162float(scales[(size_t)row * (K / GS) + g]) * qs +
                      __bfloat162float(biases[(size_t)row * (K / GS) + g]) * xs;
        }
    }
    #pragma unroll
    for (int r = 0; r < R; r++) {
        float v = acc[r];
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && row0 + r < N) y[row0 + r] = __float2bfloat16(v);
    }
"""
kernel = mx.fast.cuda_kernel(name="gomlx_qmv4", input_names=["x", "w", "scales", "biases"],
                             output_names=["y"], source=SOURCE)


R = 4


def qmv(x, wq, s, b, gs, rows=None):
    rows = rows or R
    n, k = wq.shape[0], x.shape[-1]
    warps_per_block = 8
    warps = (n + rows - 1) // rows
    blocks = (warps + warps_per_block - 1) // warps_per_block
    return kernel(inputs=[x.reshape(-1), wq, s, b], template=[("K", k), ("N", n), ("GS", gs), ("R", rows)],
                  grid=(blocks * 32 * warps_per_block, 1, 1), threadgroup=(32 * warps_per_block, 1, 1),
                  output_shapes=[(n,)], output_dtypes=[mx.bfloat16])[0]


def timed(fn, reps=20):
    mx.eval(fn())
    mx.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        mx.eval(fn())
    mx.synchronize()
    return (time.perf_counter() - t) / reps


def main():
    shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (32000, 4096)]
    for gs in (64,):
        tot_ours = tot_mlx = 0.0
        for n, k in shapes:
            w = (mx.random.normal((n, k)) * 0.02).astype(mx.bfloat16)
            wq, s, b = mx.quantize(w, group_size=gs, bits=4)
            x = mx.random.normal((1, k)).astype(mx.bfloat16)
            mx.eval(wq, s, b, x)
            ref = x.astype(mx.float32) @ mx.dequantize(wq, s, b, group_size=gs, bits=4).astype(mx.float32).T
            ours = qmv(x, wq, s, b, gs).astype(mx.float32)
            theirs = mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=gs, bits=4).astype(mx.float32)
            scale = mx.abs(ref).max().item()
            e_ours = (mx.abs(ours - ref[0]).max().item()) / scale
            e_mlx = (mx.abs(theirs[0] - ref[0]).max().item()) / scale
            # 16 independent products per timed step, like a decode step's layers
            xs = [mx.random.normal((1, k)).astype(mx.bfloat16) for _ in range(16)]
            mx.eval(xs)
            res = {}
            for rr in (2, 4, 8):
                res[rr] = timed(lambda: [qmv(xi, wq, s, b, gs, rr) for xi in xs]) / 16
            t_ours = min(res.values())
            print("   R:", {k2: round(v * 1e6, 1) for k2, v in res.items()})
            t_mlx = timed(lambda: [mx.quantized_matmul(xi, wq, s, b, transpose=True, group_size=gs, bits=4) for xi in xs]) / 16
            nbytes = wq.nbytes + s.nbytes + b.nbytes
            tot_ours += t_ours
            tot_mlx += t_mlx
            print(f"N {n:6d} K {k:6d} gs {gs}: ours {t_ours * 1e6:7.1f} us {nbytes / t_ours / 1e12:5.2f} TB/s err {e_ours:.1e} | "
                  f"mlx {t_mlx * 1e6:7.1f} us {nbytes / t_mlx / 1e12:5.2f} TB/s err {e_mlx:.1e}", flush=True)
        print(f"all shapes: ours {tot_ours * 1e6:.0f} us, mlx {tot_mlx * 1e6:.0f} us")


if __name__ == "__main__":
    print("MLX", mx.__version__, mx.default_device())
    sys.exit(main())
