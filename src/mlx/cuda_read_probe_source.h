// cuda_read_probe_source.h - CUDA C of the GPU's memory read probe
// (cuda_read_probe.cpp), compiled with NVRTC at run time. Every thread
// streams 16-byte loads spread a grid apart, four in flight, and folds them
// with xor so none can be dropped; one word a thread comes back.
#ifndef GOMLX_CUDA_READ_PROBE_SOURCE_H
#define GOMLX_CUDA_READ_PROBE_SOURCE_H

static const char *const kCudaReadProbeSource = R"CUDA(
extern "C" __global__ void KERNEL_NAME(const uint4 *__restrict__ buf, unsigned *__restrict__ out, int n) {
    const int stride = gridDim.x * blockDim.x;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        // Streaming loads (evict first): the buffer is read once a pass.
        uint4 a = __ldcs(buf + i), b = __ldcs(buf + i + stride);
        uint4 c = __ldcs(buf + i + 2 * stride), d = __ldcs(buf + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = __ldcs(buf + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}
)CUDA";

#endif
