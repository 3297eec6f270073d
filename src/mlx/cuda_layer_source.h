// cuda_layer_source.h - CUDA C of the 4-bit matrix-vector product with the
// ops around it in a decoder layer folded in (cuda_layer.cpp), compiled with
// NVRTC after kCudaCommonSource. On the GPU a decode step is paced by the
// host handing MLX's ops to the device (docs/GPU.md), so each of these
// replaces two or three of MLX's kernels with one:
//
//   PRO 1:  x is the residual stream, RMS-normed with nw first (MLX's
//           rms_norm: h * rsqrt(mean(h^2) + eps) rounded, times nw rounded)
//   EPI 0:  y = x W^T (+ bias)                       q|k|v, unembedding
//   EPI 1:  y = res + (x W^T (+ bias))               output and down projections
//   EPI 2:  y[n] = silu(g[n]) * u[n], g|u = x W^T    stacked gate|up, F = N / 2
//
// Each product and bias add rounds to the element type as MLX's ops do;
// the SwiGLU is float32 and rounded once. A block stages x (normed) in
// shared memory; each of its warps owns QMV_R rows (rows n and n + F with
// EPI 2), lanes take 16-byte chunks (32 weights) of each row as in
// cuda_qmv_source.h. XT: 0 bfloat16, 1 float16; QMV_GS: group size.
#ifndef GOMLX_CUDA_LAYER_SOURCE_H
#define GOMLX_CUDA_LAYER_SOURCE_H

static const char *const kCudaLayerSource = R"CUDA(
__device__ __forceinline__ float block_sum(float v, float *part) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = warp_sum(lane < warps ? part[lane] : 0.f);
    return v;
}

__device__ __forceinline__ float round_half(float f) { return half_at((u32)store_half(f), 0); }

extern "C" __global__ void KERNEL_NAME(const u16 *__restrict__ x,
#if PRO
                                       const u16 *__restrict__ nw,
#endif
                                       const u32 *__restrict__ w, const u16 *__restrict__ scales,
                                       const u16 *__restrict__ biases,
#if HAS_BIAS
                                       const u16 *__restrict__ bias,
#endif
#if EPI == 1
                                       const u16 *__restrict__ res,
#endif
                                       u16 *__restrict__ y, int N, int K, float eps) {
    extern __shared__ __align__(16) u16 xs[];
    const int tid = threadIdx.x, lane = tid & 31;
#if PRO
    __shared__ float part[32];
    float ss = 0.f;
    for (int k = tid; k < K; k += blockDim.x) {
        float v = load_half(x + k);
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss, part) / (float)K + eps);
    for (int k = tid; k < K; k += blockDim.x)
        xs[k] = store_half(load_half(nw + k) * round_half(load_half(x + k) * inv));
#else
    (void)eps;
    const bool x_aligned = ((size_t)x & 15) == 0;
    for (int k = tid * 8; k < K; k += blockDim.x * 8) *(V4 *)(xs + k) = load16(x + k, x_aligned);
#endif
    __syncthreads();

    const int wid = (int)((blockIdx.x * blockDim.x + tid) >> 5);
#if EPI == 2
    const int F = N >> 1;
    if (wid >= F) return;
    int rows[QMV_R];
#pragma unroll
    for (int r = 0; r < QMV_R; r++) rows[r] = wid + r * F; // QMV_R is 2: gate and up
#else
    if (wid * QMV_R >= N) return;
    int rows[QMV_R];
#pragma unroll
    for (int r = 0; r < QMV_R; r++) rows[r] = wid * QMV_R + r < N ? wid * QMV_R + r : N - 1;
#endif
    const int chunks = K >> 5, groups = K / QMV_GS;
    const bool w_aligned = ((size_t)w & 15) == 0;
    float acc[QMV_R];
#pragma unroll
    for (int r = 0; r < QMV_R; r++) acc[r] = 0.f;
    for (int c = lane; c < chunks; c += 32) {
        const int g = (c << 5) / QMV_GS;
        float xf[32];
        float xsum = 0.f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            V4 v = *(const V4 *)(xs + c * 32 + i * 8);
            u32 p[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                xf[i * 8 + 2 * k] = half_at(p[k], 0);
                xf[i * 8 + 2 * k + 1] = half_at(p[k], 1);
                xsum += xf[i * 8 + 2 * k] + xf[i * 8 + 2 * k + 1];
            }
        }
#pragma unroll
        for (int r = 0; r < QMV_R; r++) {
            const size_t row = (size_t)rows[r];
            V4 q = load16(reinterpret_cast<const u16 *>(w + row * (K >> 3)) + c * 8, w_aligned);
            const float sc = load_half(scales + row * groups + g), bi = load_half(biases + row * groups + g);
            u32 words[4] = {q.x, q.y, q.z, q.w};
            float qs = 0.f;
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int k = 0; k < 8; k++) qs += (float)((words[i] >> (4 * k)) & 15u) * xf[i * 8 + k];
            acc[r] += sc * qs + bi * xsum;
        }
    }
    float out[QMV_R];
#pragma unroll
    for (int r = 0; r < QMV_R; r++) {
        out[r] = round_half(warp_sum(acc[r]));
#if HAS_BIAS
        out[r] = round_half(out[r] + load_half(bias + rows[r]));
#endif
    }
    if (lane != 0) return;
#if EPI == 2
    const float gt = out[0], up = out[1];
    y[wid] = store_half(gt / (1.f + expf(-gt)) * up);
#else
#pragma unroll
    for (int r = 0; r < QMV_R; r++) {
        const int row = wid * QMV_R + r;
        if (row >= N) break;
#if EPI == 1
        y[row] = store_half(load_half(res + row) + out[r]);
#else
        y[row] = store_half(out[r]);
#endif
    }
#endif
}
)CUDA";

#endif
