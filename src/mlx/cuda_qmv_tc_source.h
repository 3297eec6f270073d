// cuda_qmv_tc_source.h - CUDA C of the 4-bit matrix-vector kernel on
// tensor cores (sm_80+), compiled at run time with NVRTC after the layer
// kernel's common, sync, x and dot parts (cuda_qmv.cpp), whose tc_dot it
// runs: the product loop of cuda_qmv_source.h spends ~5.5 instructions a
// weight and so reads a vocabulary at ~2.1 TB/s on an H200 (of 4.4), where
// a tensor-core window takes ~0.05 a weight: 3.3 TB/s (docs/GPU.md). QMV_WHOLE is tc_dot's
// WHOLE (K / GS a multiple of 8), QMV_BLOCKS the blocks of LT threads an
// SM holds (registers bounded for them).
#ifndef GOMLX_CUDA_QMV_TC_SOURCE_H
#define GOMLX_CUDA_QMV_TC_SOURCE_H

static const char *const kCudaQmvTcSource = R"CUDA(
// y[n] = sum_k x[k] * (scale[n, g] * q[n, k] + bias[n, g]) as the FMA
// kernel computes it. Rows in tiles of 16 (lane group g of a warp holds
// rows g and g + 8 of its tile), a warp's tiles it = its place in the
// grid, + all warps, ...: a block's warps read adjacent rows. Each block
// first puts x (K values, a view or not) into shared memory in tc_pos order
// with its group sums (copy_to_shared): paid once for the block's many
// tiles. The weights are 16-byte aligned (the host checks); a ragged last
// tile reads row N - 1 for the rows past the end and writes none of them.
extern "C" __global__ void __launch_bounds__(LT, QMV_BLOCKS)
KERNEL_NAME(const u16 *__restrict__ x, const u32 *__restrict__ w, const u16 *__restrict__ scales,
            const u16 *__restrict__ biases, u16 *__restrict__ y, int N, int K) {
#if __CUDA_ARCH__ >= 800
    extern __shared__ __align__(16) unsigned char qmv_smem[];
    u16 *xs = reinterpret_cast<u16 *>(qmv_smem);
    copy_to_shared<true>(x, xs, K, false); // x from the graph before: not through L2 only
    const TcX tx = tc_finish_x(xs, K);
    const int lane = threadIdx.x & 31, tiles = (N + 15) / 16, groups = K / GS;
    for (int it = dealt_warp<false>(); it < tiles; it += gridDim.x * NWARPS) {
        const int lo = 16 * it + (lane >> 2), hi = lo + 8;
        float y_lo, y_hi;
        tc_dot<QMV_WHOLE != 0>(tx, w, scales, biases, min(lo, N - 1), min(hi, N - 1), K, 0, groups, 8, y_lo, y_hi);
        if (lane & 3) continue;
        if (lo < N) y[lo] = store_half(y_lo);
        if (hi < N) y[hi] = store_half(y_hi);
    }
#endif
}
)CUDA";

#endif
