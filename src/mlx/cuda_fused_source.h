// cuda_fused_source.h - CUDA C of the fused pieces of a one-token decode
// step (cuda_fused.cpp), compiled with NVRTC after kCudaCommonSource. Each
// does the work of several MLX ops in one kernel, with the same roundings
// to the 16-bit element type (XT) at the same points, because a decode step
// on the GPU is bound by the host's cost of handing MLX's ops to the device,
// not by the device. KERNEL selects the kernel: 0 add + RMSNorm, 1 RoPE of
// the stacked q|k|v projection, 2 SwiGLU of a stacked gate|up.
#ifndef GOMLX_CUDA_FUSED_SOURCE_H
#define GOMLX_CUDA_FUSED_SOURCE_H

static const char *const kCudaFusedSource = R"CUDA(
#if KERNEL == 0
// h = x + r (rounded), n = w * rms_norm(h), per row of H values: one block
// a row. The norm follows MLX's: the sum of squares of the rounded h in
// float32, y = h * rsqrt(mean + eps) rounded, then w * y rounded.
extern "C" __global__ void KERNEL_NAME(const u16 *__restrict__ x, const u16 *__restrict__ r,
                                       const u16 *__restrict__ w, u16 *__restrict__ h,
                                       u16 *__restrict__ n, float eps, int H) {
    __shared__ float part[32];
    const size_t base = (size_t)blockIdx.x * H;
    float ss = 0.f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float v = round_half(load_half(x + base + i) + load_half(r + base + i));
        ss += v * v;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    ss = warp_sum(ss);
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        ss = warp_sum(lane < warps ? part[lane] : 0.f);
        if (lane == 0) part[0] = ss;
    }
    __syncthreads();
    const float norm = rsqrtf(part[0] / (float)H + eps);
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float v = round_half(load_half(x + base + i) + load_half(r + base + i));
        h[base + i] = store_half(v);
        n[base + i] = store_half(load_half(w + i) * round_half(v * norm));
    }
}
#elif KERNEL == 1
// The projection of one token, [hq + 2 hkv heads of d], plus its bias when
// HAS_BIAS (rounded, as MLX's add), split into heads: q and k rotated by
// RoPE at `offset` (MLX's formula: theta = scale * offset * inv_freq with
// inv_freq = 2^(-i / (d/2) * log2(base)), or 1 / freqs[i] when FREQS;
// pairs (i, i + d/2), or (2i, 2i + 1) when TRAD), v copied. One thread a
// rotated pair or a copied value.
__device__ __forceinline__ float qkv_at(const u16 *qkv, const u16 *bias, int j) {
#if HAS_BIAS
    return round_half(load_half(qkv + j) + load_half(bias + j));
#else
    return load_half(qkv + j);
#endif
}

extern "C" __global__ void KERNEL_NAME(const u16 *__restrict__ qkv,
#if HAS_BIAS
                                       const u16 *__restrict__ bias,
#endif
#if FREQS
                                       const float *__restrict__ freqs,
#endif
                                       u16 *__restrict__ q, u16 *__restrict__ k,
                                       u16 *__restrict__ v, int hq, int hkv, int d, int offset,
                                       float scale, float log2_base) {
#if !HAS_BIAS
    const u16 *bias = 0;
#endif
    const int half = d >> 1;
    const int rotated = (hq + hkv) * half;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < rotated) {
        const int head = idx / half, i = idx - head * half;
#if TRAD
        const int i1 = 2 * i, i2 = 2 * i + 1;
#else
        const int i1 = i, i2 = i + half;
#endif
        const float x1 = qkv_at(qkv, bias, head * d + i1), x2 = qkv_at(qkv, bias, head * d + i2);
#if FREQS
        const float inv_freq = (float)(1.0 / (double)freqs[i]);
#else
        const float inv_freq = exp2f(-((float)i / (float)half) * log2_base);
#endif
        const float theta = scale * (float)offset * inv_freq;
        const float c = cosf(theta), s = sinf(theta);
        u16 *out = head < hq ? q + head * d : k + (head - hq) * d;
        out[i1] = store_half(x1 * c - x2 * s);
        out[i2] = store_half(x1 * s + x2 * c);
    } else if (idx < rotated + hkv * d) {
        const int j = idx - rotated;
        v[j] = store_half(qkv_at(qkv, bias, (hq + hkv) * d + j));
    }
}
#else
// silu(g) * u for rows [g | u] of 2F values, in float32 and rounded once
// (MLX's compiled ops round in between: this is the more precise of the two).
extern "C" __global__ void KERNEL_NAME(const u16 *__restrict__ gu, u16 *__restrict__ out, int F,
                                       int total) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const int row = idx / F, j = idx - row * F;
    const float g = load_half(gu + (size_t)row * 2 * F + j);
    const float u = load_half(gu + (size_t)row * 2 * F + F + j);
    out[idx] = store_half(g / (1.f + expf(-g)) * u);
}
#endif
)CUDA";

#endif
