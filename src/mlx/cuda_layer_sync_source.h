// cuda_layer_sync_source.h - the layer kernel's CUDA C, first part
// (cuda_layer_source.h says what the kernel computes and how its parts
// are put together): the scratch's control words, the timing stamps, loads
// through L2, how a phase's items are dealt to the warps, and the
// grid-wide barrier between phases.
#ifndef GOMLX_CUDA_LAYER_SYNC_SOURCE_H
#define GOMLX_CUDA_LAYER_SYNC_SOURCE_H

static const char *const kCudaLayerSyncSource = R"CUDA(
#define NWARPS (LT / 32)
#define INFINITY __int_as_float(0x7f800000)
#define EPL (HD / 32) // head elements per lane
#define RB (REP / HS)  // query heads a block of the attention takes
#define MC 16          // chunks of a head the attention's merge loads at once

// Scratch words (u32): barrier count, blocks done, timeout flag, then one
// arrival counter per group of a kv head's query heads (at most 40): all
// are back at 0 when the kernel ends.
#define CTRL_WORDS 80
#define BAR_COUNT 0
#define BAR_DONE 1
#define BAR_TIMEOUT 2
#define KV_COUNT 8
#define STAMPS 48 // with TIMING: 16 stamps of 64 bits, words 48..79
// The layer the stamps time: the second where there are several (as in a
// model's step: the layer before it has run; the first has not).
#define TL (NL > 1 ? 1 : 0)

__device__ __forceinline__ unsigned long long gpu_clock() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Stamps 0-5: block 0's clock at the start and at the end of each of
// layer TL's phases (after their barrier); stamp 0 also clears 6-15.
__device__ __forceinline__ void stamp(u32 *ctrl, int i) {
#if TIMING
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const unsigned long long t = gpu_clock();
        ctrl[STAMPS + 2 * i] = (u32)t, ctrl[STAMPS + 2 * i + 1] = (u32)(t >> 32);
        if (i == 0)
            for (int k = 12; k < 32; k++) ctrl[STAMPS + k] = 0;
    }
#endif
}

// Stamps 6-15, layer TL's latest clock over all blocks (thread 0's)
// at: 6 the attention's start (leaving the barrier), 7 its warps' keys
// done, 8 its chunk's partials written, 9 a group's chunks merged; 10-14
// the arrival at the barrier after phase A, B, C, D and E.
#define ST_B_START 6
#define ST_KEYS 7
#define ST_PARTIALS 8
#define ST_MERGED 9
#define ST_ARRIVED 10
__device__ __forceinline__ void stamp_latest(u32 *ctrl, int i) {
#if TIMING
    atomicMax(reinterpret_cast<unsigned long long *>(ctrl + STAMPS + 2 * i), gpu_clock());
#endif
}

// stamp_latest once all the block's threads are here.
__device__ __forceinline__ void stamp_block_latest(u32 *ctrl, int i) {
#if TIMING
    __syncthreads();
    if (threadIdx.x == 0) stamp_latest(ctrl, i);
#endif
}

__device__ __forceinline__ float round_half(float f) { return half_at((u32)store_half(f), 0); }

__device__ __forceinline__ u32 load_cg32(const void *p) {
    u32 v;
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %1; ld.global.cg.u32 %0, [g]; }" : "=r"(v) : "l"(p));
    return v;
}

__device__ __forceinline__ float load_cg_f32(const float *p) { return bits_to_float(load_cg32(p)); }

// Asks L1 (or L2) for the line at p, without waiting for it.
__device__ __forceinline__ void prefetch_l1(const void *p) {
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; prefetch.global.L1 [g]; }" ::"l"(p));
}
__device__ __forceinline__ void prefetch_l2(const void *p) {
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; prefetch.global.L2 [g]; }" ::"l"(p));
}

__device__ __forceinline__ float load_cg_half(const u16 *p) {
    u16 h;
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %1; ld.global.cg.u16 %0, [g]; }" : "=h"(h) : "l"(p));
    return half_at((u32)h, 0);
}

// This warp's place in the order a phase's FMA-loop items are dealt in
// (the first item goes to place 0, the next to 1, ...): a block's warps
// take consecutive items, which leaves whole SMs idle where there are
// fewer items than warps; SPREAD deals consecutive items to consecutive
// blocks instead, every SM its share (the host's DEAL_A, DEAL_C, DEAL_E).
template <bool SPREAD>
__device__ __forceinline__ int dealt_warp() {
    const int warp = threadIdx.x >> 5;
    return SPREAD ? warp * (int)gridDim.x + (int)blockIdx.x : (int)blockIdx.x * NWARPS + warp;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Each warp's sum of v into part[warp], then the block's barrier.
__device__ __forceinline__ void warp_sums_to_part(float v, float *part) {
    v = warp_sum(v);
    __syncthreads(); // part may still be read by an earlier call
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
}

// The block's sum of the warps' sums in part (every lane of the warp calls it).
__device__ __forceinline__ float part_total(const float *part) {
    const int lane = threadIdx.x & 31;
    return warp_sum(lane < NWARPS ? part[lane] : 0.f);
}

__device__ __forceinline__ float block_sum(float v, float *part) {
    warp_sums_to_part(v, part);
    return part_total(part);
}

// Every block waits here until all have arrived; writes before it are seen
// by every block after it. The count only grows during a kernel: barrier n
// (bar_n, counted by each block) is passed once it reaches n * grid, so an
// arrival is one release-add and a wait one acquire-load a poll, with no
// reset or second word on the way (grid_end zeroes it). A block that waits
// ~seconds (the grid cannot all be resident: another of these kernels
// running at once) gives up and raises the timeout flag rather than hang
// the GPU.
__device__ void grid_sync(u32 *ctrl, u32 &bar_n) {
    __syncthreads();
    bar_n++;
    if (threadIdx.x == 0) {
        const u32 target = bar_n * gridDim.x;
        asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; red.release.gpu.global.add.u32 [g], 1; }"
                     ::"l"(ctrl + BAR_COUNT) : "memory");
        long long spins = 0;
        for (;;) {
            u32 n;
            asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %1; ld.acquire.gpu.global.u32 %0, [g]; }"
                         : "=r"(n) : "l"(ctrl + BAR_COUNT) : "memory");
            if ((int)(n - target) >= 0) break;
            if (++spins > 1024) {
                __nanosleep(100);
                // Once a block gave up, the others stop waiting too (one
                // wait of seconds, not one at every barrier left).
                if ((spins & 1023) == 0 && *(volatile u32 *)(ctrl + BAR_TIMEOUT)) break;
            }
            if (spins > (1ll << 25)) {
                atomicExch(ctrl + BAR_TIMEOUT, 1u);
                break;
            }
        }
    }
    __syncthreads();
}

// After a block's last barrier: the last block to get here zeroes the count
// (every block has stopped reading it by then) for the next kernel.
__device__ void grid_end(u32 *ctrl) {
    if (threadIdx.x == 0 && atomicAdd(ctrl + BAR_DONE, 1u) == gridDim.x - 1) {
        atomicExch(ctrl + BAR_COUNT, 0u);
        atomicExch(ctrl + BAR_DONE, 0u);
    }
}

// x in the tensor cores' order (tc_dot), "tc_pos order": each run of 8
// values as 0 4 1 5 2 6 3 7 (value k of a run at (k & 3) << 1 | k >> 2), so
// that one 16-byte load gives a lane its x pairs (put_run_tc writes it).

__device__ __forceinline__ V4 load_cg16(const u16 *p) {
    V4 v;
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %4; ld.global.cg.v4.u32 {%0, %1, %2, %3}, [g]; }"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// 8 elements at p, through L2, one at a time (p not 16-byte aligned).
__device__ __forceinline__ V4 load_cg_run(const u16 *p) {
    u32 e[4];
#pragma unroll
    for (int i = 0; i < 4; i++) e[i] = (u32)store_half(load_cg_half(p + 2 * i)) | (u32)store_half(load_cg_half(p + 2 * i + 1)) << 16;
    return V4{e[0], e[1], e[2], e[3]};
}

// 8 elements at p: 16 bytes a load where p is 16-byte aligned (our
// buffers; h may be a view), through L2 with cg (written by other blocks).
__device__ __forceinline__ V4 load_run(const u16 *p, bool cg, bool aligned) {
    if (aligned) return cg ? load_cg16(p) : load16(p, true);
    return cg ? load_cg_run(p) : load16(p, false);
}

__device__ __forceinline__ bool aligned16(const void *p) { return ((size_t)p & 15) == 0; }
)CUDA";

#endif
