// cuda_layer_down_source.h - the layer kernel's CUDA C, fourth part
// (cuda_layer_source.h): with ESPLIT, phase E (the MLP's down projection
// and the residual add) split over K into items that start as phase D's
// tiles finish, with no grid barrier between the two phases.
//
// Phase E needs all of phase D's activation, so a grid barrier sat between
// them: every SM waited for the slowest of D's tiles, then began E's chain
// (the activation copied into each block's shared memory, then the loads).
// Split over K, an item of E (16 rows of the down projection, one tc_dot
// window of 8 groups of ff) needs only the activation of its window: each
// of D's tiles counts itself done for its window, and an item waits for
// its window's count alone (having asked L2 for its weights first, with
// ESPF), puts that window of the activation into its warp's shared memory
// and writes its 16 partial sums to the scratch. The last of a tile's
// items to arrive adds the tile's partials up, in window order (the result
// does not depend on which item was last), and writes the rows as phase E
// did: out = res + round(sum).
#ifndef GOMLX_CUDA_LAYER_DOWN_SOURCE_H
#define GOMLX_CUDA_LAYER_DOWN_SOURCE_H

static const char *const kCudaLayerDownSource = R"CUDA(
#ifndef ESPLIT
#define ESPLIT 0
#define ESPF 0
#endif
#if ESPLIT && TC_ON
#define FW (8 * GS) // ff values a window of E takes (tc_dot's window)

// The scratch's part for the split phase E (after Gemma 2's buffers):
// arrival counters of each 16-row tile's items (back at 0 after each
// layer: the last resets it), D's finished tiles of each window (they
// grow over the kernel; grid_end_split zeroes them) and the items'
// partial sums, [windows][hidden].
struct DownSplit {
    u32 *tile_count;  // [hidden / 16]
    u32 *window_done; // [windows]
    float *partial;   // [windows][hidden]
    int windows;
};

// Shared memory tc_dot's x takes for n values (as the host's
// tc_x_shared_bytes): the values, the groups' sums, 64 zero bytes.
__device__ __forceinline__ int tc_x_bytes(int n) { return ((2 * n + 15) & ~15) + 4 * tc_groups4(n) + 64; }

__device__ __forceinline__ int split_windows(int ff) { return (ff + FW - 1) / FW; }

__device__ __forceinline__ DownSplit down_split(u16 *after, int hidden, int ff) {
    u32 *count = reinterpret_cast<u32 *>(after);
    const int windows = split_windows(ff);
    u32 *done = count + hidden / 16;
    float *partial = reinterpret_cast<float *>(done + ((windows + 3) & ~3));
    return DownSplit{count, done, partial, windows};
}

// D's tile `it` (activation rows 8 it .. 8 it + 7) written by this warp's
// lanes: lane 0 counts it for its window, the release covering the lanes'
// stores (ordered before it by __syncwarp, as grid_sync's __syncthreads).
__device__ __forceinline__ void act_tile_done(const DownSplit &ds, int it) {
    __syncwarp();
    if ((threadIdx.x & 31) == 0)
        asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; red.release.gpu.global.add.u32 [g], 1; }"
                     ::"l"(ds.window_done + it * 8 / FW) : "memory");
}

// D's tiles in window w, once per layer.
__device__ __forceinline__ u32 window_tiles(int w, int ff) { return (u32)(min(FW, ff - w * FW) / 8); }

// Lane 0 waits until window w's count reaches target (acquire), then the
// warp goes on. Like grid_sync, it gives up after ~seconds (or once
// another block gave up) rather than hang the GPU.
__device__ __forceinline__ void wait_window(u32 *ctrl, const u32 *count, u32 target) {
    if ((threadIdx.x & 31) == 0) {
        long long spins = 0;
        for (;;) {
            u32 n;
            asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %1; ld.acquire.gpu.global.u32 %0, [g]; }"
                         : "=r"(n) : "l"(count) : "memory");
            if ((int)(n - target) >= 0) break;
            __nanosleep(32);
            if ((++spins & 1023) == 0 && *(volatile u32 *)(ctrl + BAR_TIMEOUT)) break;
            if (spins > (1ll << 25)) {
                atomicExch(ctrl + BAR_TIMEOUT, 1u);
                break;
            }
        }
    }
    __syncwarp();
}

// Asks L2 for item (tile, w)'s weights (16 rows' 4 GS bytes of window w,
// 128-byte lines) and its scales and biases.
__device__ __forceinline__ void prefetch_item(const u32 *w, const u16 *scales, const u16 *biases, int ff, int tile,
                                              int win) {
    const int lane = threadIdx.x & 31, per_row = GS / 32, bytes = min(FW, ff - win * FW) / 2;
    for (int i = lane; i < 16 * per_row; i += 32) {
        const int row = tile * 16 + i / per_row, line = i % per_row;
        if (line * 128 >= bytes) continue;
        const char *p = reinterpret_cast<const char *>(w + (size_t)row * (ff / 8) + win * (FW / 8)) + line * 128;
        asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; prefetch.global.L2 [g]; }" ::"l"(p));
    }
    const int row = tile * 16 + (lane & 15);
    const u16 *sb = (lane < 16 ? scales : biases) + (size_t)row * (ff / GS) + win * 8;
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; prefetch.global.L2 [g]; }" ::"l"(sb));
}

// Window win of the activation (written by other blocks) into the warp's
// wx, as tc_dot reads x: tc_pos order, each group's sum, zeros; indexed as
// if wx held all of ff.
__device__ __forceinline__ TcX window_x(const u16 *act, u16 *wx, int ff, int win) {
    const int lane = threadIdx.x & 31, runs = min(FW, ff - win * FW) / 8;
    const u16 *src = act + (size_t)win * FW;
    const bool aligned = aligned16(src);
#pragma unroll
    for (int c0 = 0; c0 < FW / 8; c0 += 32) {
        const int c = c0 + lane;
        const bool has = c < runs;
        float s = 0.f;
        if (has) {
            const V4 v = load_run(src + 8 * c, true, aligned);
            const u32 words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 8; i++) s += half_at(words[i / 2], i & 1);
            put_run_tc(wx, c, words);
        }
        tc_group_sum(wx, FW, c, has, s);
    }
    if (lane < 4) tc_zero(wx, FW)[lane] = V4{0u, 0u, 0u, 0u};
    __syncwarp();
    return TcX{wx - (size_t)win * FW, tc_xsum(wx, FW) - 8 * win, tc_zero(wx, FW), nullptr};
}

// The last of tile's items: its rows' partials added up in window order
// and written as phase E's residual_rows writes them.
__device__ __forceinline__ void finish_tile(const DownSplit &ds, int tile, int hidden, const u16 *res, u16 *out) {
    const int lane = threadIdx.x & 31;
    if (lane >= 16) return;
    const int row = tile * 16 + lane;
    float s = 0.f;
    for (int w0 = 0; w0 < ds.windows; w0 += 8) {
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = w0 + k < ds.windows ? load_cg_f32(ds.partial + (size_t)(w0 + k) * hidden + row) : 0.f;
#pragma unroll
        for (int k = 0; k < 8; k++) s += v[k];
    }
    const float r = res ? load_cg_half(res + row) : 0.f;
    out[row] = store_half(r + round_half(s));
}

// The warp's items of phase E (16 rows of W, one window of K = ff), out =
// res + round(act W^T) (without res, Gemma 2: round(act W^T)), each after
// its window of D's tiles of this layer (layer_n: layers so far, this one
// included) are done. wx: the warp's shared memory for its window of act.
template <bool WHOLE>
__device__ void down_items(const DownSplit &ds, u32 *ctrl, const u16 *act, u16 *wx, const u32 *w, const u16 *scales,
                           const u16 *biases, int ff, const u16 *res, u16 *out, int hidden, u32 layer_n) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, groups = ff / GS;
    const int items = hidden / 16 * ds.windows;
    // Dealt from the block's last warp down: the first warps take most of
    // D's tiles.
    for (int i = (NWARPS - 1 - warp) * gridDim.x + blockIdx.x; i < items; i += gridDim.x * NWARPS) {
        const int tile = i / ds.windows, win = i % ds.windows;
#if ESPF == 1
        prefetch_item(w, scales, biases, ff, tile, win);
#endif
        wait_window(ctrl, ds.window_done + win, layer_n * window_tiles(win, ff));
        const TcX x = window_x(act, wx, ff, win);
        const int lo = tile * 16 + (lane >> 2);
        float a_lo, a_hi;
        tc_dot<WHOLE>(x, w, scales, biases, lo, lo + 8, ff, 8 * win, min(8 * win + 8, groups), 8, a_lo, a_hi);
        if (!(lane & 3)) {
            ds.partial[(size_t)win * hidden + lo] = a_lo;
            ds.partial[(size_t)win * hidden + lo + 8] = a_hi;
        }
        __syncwarp();
        u32 arrived = 0;
        if (lane == 0)
            asm volatile("{ .reg .u64 a; cvta.to.global.u64 a, %1; atom.acq_rel.gpu.global.add.u32 %0, [a], 1; }"
                         : "=r"(arrived) : "l"(ds.tile_count + tile) : "memory");
        arrived = __shfl_sync(0xffffffffu, arrived, 0);
        __syncwarp(); // lane 0's acquire before the lanes' loads of the others' partials
        if (arrived != (u32)ds.windows - 1) continue;
        finish_tile(ds, tile, hidden, res, out);
        if (lane == 0) ds.tile_count[tile] = 0;
    }
}

// Before phase D's tiles (ESPF 2): L2 asked for all of the warp's items'
// weights.
__device__ __forceinline__ void prefetch_items(const DownSplit &ds, const u32 *w, const u16 *scales,
                                               const u16 *biases, int ff, int hidden) {
    const int warp = threadIdx.x >> 5, items = hidden / 16 * ds.windows;
    for (int i = (NWARPS - 1 - warp) * gridDim.x + blockIdx.x; i < items; i += gridDim.x * NWARPS)
        prefetch_item(w, scales, biases, ff, i / ds.windows, i % ds.windows);
}

// grid_end, with D's window counts zeroed for the next kernel by the last
// block (every block has passed its last wait by then).
__device__ void grid_end_split(u32 *ctrl, const DownSplit &ds) {
    __syncthreads();
    if (threadIdx.x == 0 && atomicAdd(ctrl + BAR_DONE, 1u) == gridDim.x - 1) {
        for (int w = 0; w < ds.windows; w++) ds.window_done[w] = 0;
        atomicExch(ctrl + BAR_COUNT, 0u);
        atomicExch(ctrl + BAR_DONE, 0u);
    }
}
#define ESPLIT_ON 1
#else
#define ESPLIT_ON 0
#endif
)CUDA";

#endif
