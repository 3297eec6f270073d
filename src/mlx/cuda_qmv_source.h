// cuda_qmv_source.h - CUDA C source of our 4-bit matrix-vector kernel, compiled
// at run time with NVRTC after kCudaCommonSource (cuda_qmv.cpp,
// cuda_jit.cpp). QMV_GS is the group size, QMV_R the rows a warp computes
// and QMV_U the chunks a lane loads at once, LOP (1: a nibble's mask and
// 16.0f's bits one lop3, nibble_16q); the kernel's name is passed as
// KERNEL_NAME.
#ifndef GOMLX_CUDA_QMV_SOURCE_H
#define GOMLX_CUDA_QMV_SOURCE_H

static const char *const kCudaQmvSource = R"CUDA(
// y[n] = sum_k x[k] * (scale[n, g] * q[n, k] + bias[n, g]), g = k / GS,
// computed per group as scale * sum(q x) + bias * sum(x). A warp owns R
// consecutive rows; each lane takes 16-byte chunks (32 weights) of those
// rows and the matching 32 values of x, read once for all R rows. With
// U > 1 a lane issues the loads of U chunks before using any (a tuning
// knob: it costs registers, and was slower on an H200). K is a multiple of
// 32 and of GS; rows are K / 8 words apart.
extern "C" __global__ void KERNEL_NAME(const u16 *__restrict__ x, const u32 *__restrict__ w,
                                    const u16 *__restrict__ scales,
                                    const u16 *__restrict__ biases, u16 *__restrict__ y,
                                    int N, int K) {
    const int lane = threadIdx.x & 31;
    const int row0 = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5) * QMV_R;
    if (row0 >= N) return;
    const int chunks = K >> 5, groups = K / QMV_GS;
    const bool x_aligned = ((size_t)x & 15) == 0;
    const bool w_aligned = ((size_t)w & 15) == 0; // then every row is: K / 8 words is a multiple of 4
    const u16 *wr[QMV_R];
    const u16 *sr[QMV_R], *br[QMV_R];
#pragma unroll
    for (int r = 0; r < QMV_R; r++) {
        int row = row0 + r < N ? row0 + r : N - 1;
        wr[r] = reinterpret_cast<const u16 *>(w + (size_t)row * (K >> 3));
        sr[r] = scales + (size_t)row * groups;
        br[r] = biases + (size_t)row * groups;
    }
    float acc[QMV_R];
#pragma unroll
    for (int r = 0; r < QMV_R; r++) acc[r] = 0.f;
    // 16.0f's bits, with LOP through a value ptxas cannot fold (K > 0) so
    // that it stays in a register (nibble_16q).
    const u32 one = LOP ? 0x41800000u | ((u32)K >> 31) : 0x41800000u;
    for (int c0 = lane; c0 < chunks; c0 += 32 * QMV_U) {
        V4 q[QMV_U][QMV_R], xv[QMV_U][4];
        float sc[QMV_U][QMV_R], bi[QMV_U][QMV_R];
#pragma unroll
        for (int u = 0; u < QMV_U; u++) {
            // past the end: a valid address, the result unused
            int c = c0 + 32 * u < chunks ? c0 + 32 * u : c0;
            int g = (c << 5) / QMV_GS;
#pragma unroll
            for (int r = 0; r < QMV_R; r++) {
                q[u][r] = load16(wr[r] + c * 8, w_aligned);
                sc[u][r] = load_half(sr[r] + g);
                bi[u][r] = load_half(br[r] + g);
            }
#pragma unroll
            for (int i = 0; i < 4; i++) xv[u][i] = load16(x + c * 32 + i * 8, x_aligned);
        }
#pragma unroll
        for (int u = 0; u < QMV_U; u++) {
            if (c0 + 32 * u >= chunks) break;
            float xf[32];
            const float xs = unpack_x32(xv[u], xf);
#pragma unroll
            for (int r = 0; r < QMV_R; r++) {
                const u32 words[4] = {q[u][r].x, q[u][r].y, q[u][r].z, q[u][r].w};
                acc[r] += sc[u][r] * nibble_dot(words, xf, one) + (bi[u][r] - 16.f * sc[u][r]) * xs;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < QMV_R; r++) {
        float v = warp_sum(acc[r]);
        if (lane == 0 && row0 + r < N) y[row0 + r] = store_half(v);
    }
}
)CUDA";

#endif
