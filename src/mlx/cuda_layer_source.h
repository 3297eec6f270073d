// cuda_layer_source.h - CUDA C of a decode step's decoder layers for one
// token in one kernel (cuda_layer.cpp), compiled with NVRTC after
// kCudaCommonSource.
//
// On the GPU a decode step is paced by the host handing MLX's ops to the
// device, 3-6 us a node, ~20 for a custom kernel (docs/GPU.md): a layer of
// ~13 nodes costs more host time than the device needs for its weights.
// Here all layers are one node. Their phases depend on each other across
// the whole grid, so the grid is one block per SM (all resident at once)
// and the phases are separated by a grid-wide barrier:
//
//   A  x = rms_norm(h); q|k|v = x Wqkv^T (+ bias); RoPE on q and k; k, v
//      written into the caches at `slot`
//   B  attention of the token's q heads over keys first..slot, split into
//      chunks of keys per kv head (and, where kv heads are few, its query
//      heads into HS groups); the last block to finish a group's chunks
//      merges them (no barrier needed for that)
//   C  h1 = h + o Wo^T
//   D  act = silu(g) * u, g|u = rms_norm(h1) Wgu^T
//   E  out = h1 + act Wdown^T, the next layer's h
//
// Gemma 2 (GEMMA) norms the attention's and the MLP's outputs before each
// residual add, which needs the whole output first: C and E write it to
// the scratch (p), and the phase after, whose blocks read the whole vector
// for their own norm anyway, each completes the add (h1 = h + norm(p) in
// D, the next h = h1 + norm(p) in the next layer's A or after the last
// layer), block 0 writing the sum. Its MLP is GeGLU (tanh).
//
// Each layer has its own cache slot and first key (Gemma 2's sliding
// layers trim their caches; the others keep all keys): the table holds
// its slot's distance from the first layer's and its window.
//
// A table (one row of device addresses per layer, TABLE_WORDS) says where
// each layer's weights and caches are; the arrays themselves are inputs
// too (LAYER_ARRAYS, unused by the code), so MLX orders the node after
// their writers and keeps them alive while it runs.
//
// Every product, bias add, RoPE, attention output and residual add is
// rounded to the element type where MLX's op-by-op graph rounds; the
// SwiGLU is float32, rounded once. Values written by one block and read by
// another go through L2 (ld.global.cg), never a stale L1 line.
//
// Defines: NL (layers), LAYER_ARRAYS (their arrays as parameters), XT
// (0 bfloat16, 1 float16), GS (group size), HD (head dim, a multiple of
// 64: a lane reads pairs of a head's elements), REP (query heads per kv
// head), HAS_BIAS (q|k|v bias), ROPE_TRAD (rotate pairs 2j, 2j+1 instead
// of j, j + HD/2), LT (threads per block), DOT_U (chunks of a row a lane
// loads before using them; 1, the default, measured fastest), ROWS_A and
// ROWS_D (rows a warp's item takes in phases A and D: 2 or 4), KC (fewest
// keys a chunk of the attention takes), KK (keys a warp of it loads before
// using any), HS (groups the query heads of a kv head are split into, a
// block of the attention taking one), RH (query heads whose attention sums
// a block combines at once), TIMING (1: block 0 stamps the GPU clock at the
// end of each of layer TL's phases into the scratch, and the latest block
// at points of them, for tools/c/bench_cuda_layer.c; 2: eight more grid
// barriers in that layer's phase E, to time them), TC (1: phase D's products on tensor
// cores where the GPU has mma.sync, sm_80+), TS (warps that share one of
// its items, each taking a share of K: 1, 2 or 4), TCA and TSA (phase A
// likewise, TSA warps a tile of 8 rotation pairs or 16 v rows), TCR_C and
// TCR_E (0: phase C or E on the FMA loop, else on tensor cores with that
// many warps a 16-row tile: 1, 2, 4, 8 or 16), GEMMA (1: Gemma 2's
// post-norms and GeGLU), KVP (1: phase A's idle warps prefetch the
// attention's keys and values into L2), DEAL_A, DEAL_C, DEAL_E (1: that
// phase's FMA-loop items dealt to the blocks in turn, dealt_warp), TCI (1:
// a team's warps take every n-th window of K, tc_share).
#ifndef GOMLX_CUDA_LAYER_SOURCE_H
#define GOMLX_CUDA_LAYER_SOURCE_H

static const char *const kCudaLayerSource = R"CUDA(
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

__device__ __forceinline__ float block_sum(float v, float *part) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // part may still be read by an earlier call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_sum(lane < NWARPS ? part[lane] : 0.f);
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

// Where tc_dot finds, after x's n values in shared memory, each group's sum
// of x and 64 zero bytes (tc_finish_x).
__device__ __forceinline__ float *tc_xsum(u16 *xp, int n) {
    return reinterpret_cast<float *>(reinterpret_cast<unsigned char *>(xp) + ((2 * n + 15) & ~15));
}
__device__ __forceinline__ V4 *tc_zero(u16 *xp, int n) { return reinterpret_cast<V4 *>(tc_xsum(xp, n) + ((n / GS + 3) & ~3)); }

// Run c of x (8 values, as 4 words) written to xs in tc_pos order (word j
// holds values j and j + 4), one 16-byte store.
__device__ __forceinline__ void put_run_tc(u16 *xs, int c, const u32 (&w)[4]) {
    *reinterpret_cast<V4 *>(xs + 8 * c) = V4{__byte_perm(w[0], w[2], 0x5410), __byte_perm(w[0], w[2], 0x7632),
                                             __byte_perm(w[1], w[3], 0x5410), __byte_perm(w[1], w[3], 0x7632)};
}

// x for tensor cores: each group's sum of x as its runs are written, a
// run's 8 values (s; 0 where the thread has none) added over the GS / 8
// consecutive threads whose runs make a group, the first of them writing
// it (runs c = thread + j LT, so lanes and runs align). In the same pass
// as the runs: a later pass over all of x cost phase E ~1 us (its x in
// shared memory at 2.1 us against 1.0-1.4 for the FMA loop's x). Every
// lane of the warp calls it.
__device__ __forceinline__ void tc_group_sum(u16 *xs, int n, int c, bool has, float s) {
#pragma unroll
    for (int o = 1; o < GS / 8; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (has && c % (GS / 8) == 0) tc_xsum(xs, n)[c / (GS / 8)] = s;
}

// x's n values into xs for tensor cores, a run of 8 a thread at a time:
// make(c, words) gives run c's values, which go to xs in tc_pos order and
// into their group's sum; then the zeros. Every thread of the block calls
// it.
template <class Make>
__device__ __forceinline__ void tc_runs_to_shared(u16 *xs, int n, Make make) {
    for (int c0 = 0; c0 < n / 8; c0 += LT) {
        const int c = c0 + threadIdx.x;
        const bool has = c < n / 8;
        float s = 0.f;
        if (has) {
            u32 words[4];
            make(c, words);
#pragma unroll
            for (int i = 0; i < 8; i++) s += half_at(words[i / 2], i & 1);
            put_run_tc(xs, c, words);
        }
        tc_group_sum(xs, n, c, has, s);
    }
    if (threadIdx.x < 4) tc_zero(xs, n)[threadIdx.x] = V4{0u, 0u, 0u, 0u};
}

// x's n elements (a multiple of 8), 16 bytes a load, into xs as they are;
// this thread's sum of their squares. A thread keeps to the runs of 8 it
// loaded here (runs c = thread, thread + LT, ...) until the next
// __syncthreads, so it may rewrite them in place.
__device__ __forceinline__ float runs_to_shared(const u16 *x, bool x_cg, u16 *xs, int n) {
    const bool aligned = aligned16(x);
    float ss = 0.f;
    for (int c = threadIdx.x; c < n / 8; c += LT) {
        const V4 v = load_run(x + 8 * c, x_cg, aligned);
        *(V4 *)(xs + 8 * c) = v;
        const u32 words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float f = half_at(words[i / 2], i & 1);
            ss += f * f;
        }
    }
    return ss;
}

// Value i (0 or 1) of the word x normed by inv and times the same value of
// the word w, as MLX's rms_norm rounds them.
__device__ __forceinline__ u16 normed(u32 x, u32 w, int i, float inv) {
    return store_half(half_at(w, i) * round_half(half_at(x, i) * inv));
}

// Run c of xs (8 values, as 4 words) normed by inv, times w's run c.
__device__ __forceinline__ void normed_run(const u16 *xs, const u16 *w, int c, float inv, u32 (&out)[4]) {
    const V4 v = *(const V4 *)(xs + 8 * c), wv = load16(w + 8 * c, true);
    const u32 words[4] = {v.x, v.y, v.z, v.w}, ws[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int i = 0; i < 4; i++) out[i] = (u32)normed(words[i], ws[i], 0, inv) | (u32)normed(words[i], ws[i], 1, inv) << 16;
}

// This thread's runs of xs normed in place as MLX's rms_norm rounds them:
// v * inv rounded, times w, rounded (with PERM, in tc_pos order, which
// stays within a run).
template <bool PERM>
__device__ __forceinline__ void norm_runs_in_place(u16 *xs, const u16 *w, float inv, int n) {
    if (PERM) {
        tc_runs_to_shared(xs, n, [&](int c, u32(&out)[4]) { normed_run(xs, w, c, inv, out); });
        return;
    }
    for (int c = threadIdx.x; c < n / 8; c += LT) {
        u32 out[4];
        normed_run(xs, w, c, inv, out);
        *(V4 *)(xs + 8 * c) = V4{out[0], out[1], out[2], out[3]};
    }
}

// xs = rms_norm(x) * w as MLX's rms_norm rounds it: x * rsqrt(mean(x^2) + eps)
// rounded, times w, rounded (with PERM, in tc_pos order). x is read once.
template <bool PERM = false>
__device__ void norm_to_shared(const u16 *x, bool x_cg, const u16 *w, u16 *xs, int n, float eps,
                               float *part) {
    const float inv = rsqrtf(block_sum(runs_to_shared(x, x_cg, xs, n), part) / (float)n + eps);
    norm_runs_in_place<PERM>(xs, w, inv, n);
    __syncthreads();
}

// xs = x (n elements, a multiple of 8, written by other blocks of this
// kernel; with PERM, in tc_pos order).
template <bool PERM = false>
__device__ void copy_to_shared(const u16 *x, u16 *xs, int n) {
    const bool aligned = aligned16(x);
    if (PERM)
        tc_runs_to_shared(xs, n, [&](int c, u32(&out)[4]) {
            const V4 v = load_run(x + 8 * c, true, aligned);
            out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
        });
    else
        for (int c = threadIdx.x; c < n / 8; c += LT) *(V4 *)(xs + 8 * c) = load_run(x + 8 * c, true, aligned);
    __syncthreads();
}

// hn = h + rms_norm(p) * pw as MLX rounds it (pw holds 1 + w already), block
// 0 writing it to h_out; then, with nw, xs = rms_norm(hn) * nw as
// norm_to_shared writes it. Every block computes all of hn: the norm after
// needs the whole vector. p is read once into xs, where each thread's runs
// become hn, then the normed values.
template <bool PERM = false>
__device__ void post_norm_add(const u16 *h, bool h_cg, const u16 *p, const u16 *pw, u16 *h_out, const u16 *nw,
                              u16 *xs, int n, float eps, float *part) {
    const float inv = rsqrtf(block_sum(runs_to_shared(p, true, xs, n), part) / (float)n + eps);
    const bool h_al = aligned16(h);
    float ss2 = 0.f;
    for (int c = threadIdx.x; c < n / 8; c += LT) {
        const V4 pv = *(const V4 *)(xs + 8 * c), hv = load_run(h + 8 * c, h_cg, h_al), wv = load16(pw + 8 * c, true);
        const u32 ps[4] = {pv.x, pv.y, pv.z, pv.w}, hs[4] = {hv.x, hv.y, hv.z, hv.w}, ws[4] = {wv.x, wv.y, wv.z, wv.w};
        u16 out8[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float hn = round_half(half_at(hs[i / 2], i & 1) +
                                        round_half(half_at(ws[i / 2], i & 1) * round_half(half_at(ps[i / 2], i & 1) * inv)));
            ss2 += hn * hn;
            out8[i] = store_half(hn);
            if (blockIdx.x == 0) h_out[8 * c + i] = out8[i];
        }
        *(V4 *)(xs + 8 * c) = V4{out8[0] | (u32)out8[1] << 16, out8[2] | (u32)out8[3] << 16,
                                 out8[4] | (u32)out8[5] << 16, out8[6] | (u32)out8[7] << 16};
    }
    if (!nw) return;
    norm_runs_in_place<PERM>(xs, nw, rsqrtf(block_sum(ss2, part) / (float)n + eps), n);
    __syncthreads();
}

// Phase D's normed input xs: h1 = h + o Wo^T is `h1` (phase C added it),
// or for Gemma 2 h + rms_norm(p) * post_nw, computed here and written by
// block 0 to h1_buf (post_norm_add).
template <bool PERM = false>
__device__ __forceinline__ void mlp_input(const u16 *h, bool h_cg, const u16 *h1, const u16 *p, const u16 *post_nw,
                                          u16 *h1_buf, const u16 *nw, u16 *xs, int n, float eps, float *part) {
#if GEMMA
    (void)h1;
    post_norm_add<PERM>(h, h_cg, p, post_nw, h1_buf, nw, xs, n, eps, part);
#else
    (void)h, (void)h_cg, (void)p, (void)post_nw, (void)h1_buf;
    norm_to_shared<PERM>(h1, true, nw, xs, n, eps, part);
#endif
}

// The MLP's gate activation: GeGLU's tanh GELU for Gemma 2, else SiLU.
__device__ __forceinline__ float gate_act(float g) {
#if GEMMA
    return 0.5f * g * (1.f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
#else
    return g / (1.f + __expf(-g));
#endif
}

// The warp's sums of R rows of a 4-bit matrix with x (shared memory), as
// cuda_qmv_source.h computes them: scale * sum(q x) + bias * sum(x) per
// group. A lane issues the loads of U chunks of every row before using
// any: a phase is a few rounds of loads per warp (one block of 16 warps an
// SM), so their latency, more than the bandwidth, bounds it. Every lane
// gets the sums.
template <int R, int U>
__device__ __forceinline__ void dot_rows(const u16 *xs, const u32 *w, const u16 *scales,
                                         const u16 *biases, const int (&rows)[R], int K,
                                         float (&out)[R]) {
    const int lane = threadIdx.x & 31, chunks = K >> 5, groups = K / GS;
    const u16 *wr[R], *sr[R], *br[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        wr[r] = reinterpret_cast<const u16 *>(w + (size_t)rows[r] * (K >> 3));
        sr[r] = scales + (size_t)rows[r] * groups, br[r] = biases + (size_t)rows[r] * groups;
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.f;
    for (int c0 = lane; c0 < chunks; c0 += 32 * U) {
        V4 q[U][R];
        float sc[U][R], bi[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + 32 * u < chunks ? c0 + 32 * u : c0; // past the end: a valid address, unused
            const int g = (c << 5) / GS;
#pragma unroll
            for (int r = 0; r < R; r++) {
                q[u][r] = load16(wr[r] + c * 8, true);
                sc[u][r] = load_half(sr[r] + g), bi[u][r] = load_half(br[r] + g);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + 32 * u;
            if (c >= chunks) break;
            const V4 xv[4] = {*(const V4 *)(xs + c * 32), *(const V4 *)(xs + c * 32 + 8),
                              *(const V4 *)(xs + c * 32 + 16), *(const V4 *)(xs + c * 32 + 24)};
            float xf[32];
            const float xsum = unpack_x32(xv, xf);
#pragma unroll
            for (int r = 0; r < R; r++) {
                const u32 words[4] = {q[u][r].x, q[u][r].y, q[u][r].z, q[u][r].w};
                acc[r] += sc[u][r] * nibble_dot(words, xf) + (bi[u][r] - 16.f * sc[u][r]) * xsum;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) out[r] = warp_sum(acc[r]);
}

// dot_rows with DOT_U (at most 8 loads a lane ahead).
template <int R>
__device__ __forceinline__ void dot(const u16 *xs, const u32 *w, const u16 *scales, const u16 *biases,
                                    const int (&rows)[R], int K, float (&out)[R]) {
    dot_rows<R, (DOT_U * R <= 8 ? DOT_U : 8 / R)>(xs, w, scales, biases, rows, K, out);
}

// out[r] = res[r] + round(x W[r]^T) for the n rows of W, two rows a warp
// (phases C and E); res is read through L2 when another block wrote it.
// Without res (Gemma 2), out[r] = round(x W[r]^T). SPREAD: dealt_warp's.
template <bool SPREAD>
__device__ __forceinline__ void residual_rows(const u16 *xs, const u32 *w, const u16 *scales,
                                              const u16 *biases, int K, const u16 *res, bool res_cg,
                                              u16 *out, int n) {
    const int lane = threadIdx.x & 31, n_warps = gridDim.x * NWARPS;
    for (int it = dealt_warp<SPREAD>(); it < n / 2; it += n_warps) {
        const int rows[2] = {2 * it, 2 * it + 1};
        float a[2];
        dot<2>(xs, w, scales, biases, rows, K, a);
        if (lane) continue;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float h = !res ? 0.f : res_cg ? load_cg_half(res + rows[r]) : load_half(res + rows[r]);
            out[rows[r]] = store_half(h + round_half(a[r]));
        }
    }
}

#if (TC || TCR_C || TCR_E || TCA) && __CUDA_ARCH__ >= 800
// ---- Tensor cores (sm_80+) for the 4-bit products: docs/GPU.md ----
// mma.sync m16n8k16 multiplies A, 16 weight rows by 16 k-slots, by B, 16
// k-slots by 8 columns of x, into float32 sums. Lane (g, t) = (lane / 4,
// lane % 4) holds A's rows g and g + 8 and B's column g at k-slots 2t,
// 2t + 1, 2t + 8, 2t + 9. A sum does not care which k sits in which slot,
// so a lane feeds the words it loaded as they are: nibbles 0 and 4, then 1
// and 5 (one mma), 2 and 6, 3 and 7 (the next), and B the x values at the
// same k (tc_pos order). B's column n carries x only for the n-th group of
// a window of 8 (zeros elsewhere: the lane's word is of another group), so
// the sums leave C per group, for its scale and bias, once every 8 groups.
// A nibble q becomes the 16-bit float 1 + q/16 by OR-ing it into 1.0's
// mantissa (exact, as are the products): a shift and a LOP3 a pair of
// weights. The four lanes of a row read 64 contiguous bytes a load: 32
// bytes (one word a lane) measured 20-60% slower than the FMA loop, 64
// faster (docs/GPU.md).

// Nibbles N and N + 4 of w as a pair of 16-bit floats 1 + q/16.
template <int N>
__device__ __forceinline__ u32 nib_pair(u32 w) {
#if XT == 0 // bfloat16: 7 mantissa bits, q at bits 3..6
    constexpr int sh = 3 - 4 * N;
    const u32 v = sh >= 0 ? w << (sh & 31) : w >> (-sh & 31);
    return (v & 0x00780078u) | 0x3F803F80u;
#else // float16: 10 mantissa bits, q at bits 6..9
    constexpr int sh = 6 - 4 * N;
    const u32 v = sh >= 0 ? w << (sh & 31) : w >> (-sh & 31);
    return (v & 0x03C003C0u) | 0x3C003C00u;
#endif
}

__device__ __forceinline__ void mma_16816(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
#if XT == 0
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#endif
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// x for tc_dot in shared memory: the values in tc_pos order (xp), each
// group's sum (xsum) and 64 zero bytes, the B operand of the lanes whose
// column is not their word's group.
struct TcX {
    const u16 *xp;
    const float *xsum;
    const V4 *zero;
    float *team; // [NWARPS][64]: a team's partial sums (tc_team_sum)
};

// Waits for the N warps of team `team` (barrier 0 is __syncthreads').
template <int N>
__device__ __forceinline__ void team_sync(int team) {
    asm volatile("bar.sync %0, %1;" ::"r"(team + 1), "r"(32 * N) : "memory");
}

// The sums of a team's N warps (each over its share of K) in member 0's
// lanes; the other members get false.
template <int N>
__device__ __forceinline__ bool tc_team_sum(const TcX &x, float &lo, float &hi) {
    if (N == 1) return true;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, team = warp / N, member = warp % N;
    float *mine = x.team + warp * 64;
    if (member) mine[lane] = lo, mine[32 + lane] = hi;
    team_sync<N>(team);
    if (!member)
        for (int m = 1; m < N; m++) lo += mine[m * 64 + lane], hi += mine[m * 64 + 32 + lane];
    team_sync<N>(team); // before the members' next item writes its sums
    return member == 0;
}

// The windows of K's `groups` that member `member` of a team of n warps
// takes (tc_dot's g_begin, g_end, step): a contiguous share of K, or with
// TCI every n-th window, so that the team's loads of a round are adjacent
// in each row.
__device__ __forceinline__ void tc_share(int member, int n, int groups, int &g0, int &g1, int &step) {
#if TCI
    g0 = min(groups, 8 * member), g1 = groups, step = 8 * n;
#else
    const int share = (groups + n - 1) / n;
    g0 = min(groups, member * share), g1 = min(groups, g0 + share), step = 8;
#endif
}

// x for tc_dot, after a writer with PERM (norm_to_shared, post_norm_add,
// copy_to_shared) put it in shared memory with its group sums and zeros,
// and synchronized the block.
__device__ TcX tc_finish_x(u16 *xp, int n) {
    V4 *zero = tc_zero(xp, n);
    return TcX{xp, tc_xsum(xp, n), zero, reinterpret_cast<float *>(zero + 4)};
}

// The sums of rows lo and hi (this lane's; lane group g's) of a 4-bit
// matrix with x over groups g_begin..g_end-1 of K, in every lane of the
// group. A window's weights (8 groups, 4 GS bytes a row) are all loaded
// before any is used; windows start every `step` groups (tc_share).
__device__ __forceinline__ void tc_dot(const TcX &x, const u32 *w, const u16 *scales, const u16 *biases,
                                       int lo, int hi, int K, int g_begin, int g_end, int step, float &out_lo,
                                       float &out_hi) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, groups = K / GS;
    const u32 *wl = w + (size_t)lo * (K >> 3), *wh = w + (size_t)hi * (K >> 3);
    const u16 *sl = scales + (size_t)lo * groups, *sh = scales + (size_t)hi * groups;
    const u16 *bl = biases + (size_t)lo * groups, *bh = biases + (size_t)hi * groups;
    float ylo = 0.f, yhi = 0.f;
    for (int w0 = g_begin; w0 < g_end; w0 += step) {
        // This lane's two groups of the window (C's columns 2t, 2t + 1).
        const int j0 = min(w0 + 2 * t, g_end - 1), j1 = min(w0 + 2 * t + 1, g_end - 1);
        const float s0l = load_half(sl + j0), s1l = load_half(sl + j1), s0h = load_half(sh + j0),
                    s1h = load_half(sh + j1);
        const float b0l = load_half(bl + j0), b1l = load_half(bl + j1), b0h = load_half(bh + j0),
                    b1h = load_half(bh + j1);
        const int ng = min(8, g_end - w0);
        // Four sets of sums, so that consecutive mma do not wait on each other.
        float c4[4][4] = {};
        // A lane's 16-byte loads i: row bytes 64 i + 16 t of the window,
        // words 16 i + 4 t .. + 3, all in the window's group (16 i + 4 t) * 8 / GS.
        {
            constexpr int NLD = GS / 16;
            V4 ql[NLD], qh[NLD];
            const u32 *rl = wl + (size_t)w0 * (GS / 8) + 4 * t;
            const u32 *rh = wh + (size_t)w0 * (GS / 8) + 4 * t;
#pragma unroll
            for (int i = 0; i < NLD; i++) {
                const int gw = (16 * i + 4 * t) * 8 / GS;
                const int off = gw < ng ? 16 * i : 0; // past the window: a valid address, x zero
                ql[i] = load16(reinterpret_cast<const u16 *>(rl + off), true);
                qh[i] = load16(reinterpret_cast<const u16 *>(rh + off), true);
            }
#pragma unroll
            for (int i = 0; i < NLD; i++) {
                const int gw = (16 * i + 4 * t) * 8 / GS;
                const bool mine = g == gw && gw < ng; // B's column g holds this group
                const V4 *xv = mine ? reinterpret_cast<const V4 *>(x.xp + w0 * GS + 8 * (16 * i + 4 * t)) : x.zero;
                const u32 wlo[4] = {ql[i].x, ql[i].y, ql[i].z, ql[i].w}, whi[4] = {qh[i].x, qh[i].y, qh[i].z, qh[i].w};
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const V4 b = xv[r];
                    mma_16816(c4[(2 * r) & 3], nib_pair<0>(wlo[r]), nib_pair<0>(whi[r]), nib_pair<1>(wlo[r]),
                              nib_pair<1>(whi[r]), b.x, b.y);
                    mma_16816(c4[(2 * r + 1) & 3], nib_pair<2>(wlo[r]), nib_pair<2>(whi[r]), nib_pair<3>(wlo[r]),
                              nib_pair<3>(whi[r]), b.z, b.w);
                }
            }
        }
        float c[4];
#pragma unroll
        for (int e = 0; e < 4; e++) c[e] = (c4[0][e] + c4[1][e]) + (c4[2][e] + c4[3][e]);
        // sum q x = 16 (C - sum x): scale * that + bias * sum x.
        if (w0 + 2 * t < g_end) {
            const float x0 = x.xsum[j0];
            ylo += 16.f * s0l * c[0] + (b0l - 16.f * s0l) * x0;
            yhi += 16.f * s0h * c[2] + (b0h - 16.f * s0h) * x0;
        }
        if (w0 + 2 * t + 1 < g_end) {
            const float x1 = x.xsum[j1];
            ylo += 16.f * s1l * c[1] + (b1l - 16.f * s1l) * x1;
            yhi += 16.f * s1h * c[3] + (b1h - 16.f * s1h) * x1;
        }
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
        ylo += __shfl_xor_sync(0xffffffffu, ylo, o);
        yhi += __shfl_xor_sync(0xffffffffu, yhi, o);
    }
    out_lo = ylo, out_hi = yhi;
}

// out[r] = res[r] + round(x W[r]^T) for the n rows of W (n a multiple of
// 16): a team of N warps takes 16 rows at a time (tiles dealt to the
// blocks in turn), each warp a share of K, and its member 0 adds the
// shares up (N = NWARPS: a block a tile).
template <int N>
__device__ void tc_residual_rows(const TcX &x, const u32 *w, const u16 *scales, const u16 *biases, int K,
                                 const u16 *res, bool res_cg, u16 *out, int n) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, team = warp / N, member = warp % N;
    int g0, g1, step;
    tc_share(member, N, K / GS, g0, g1, step);
    for (int tile = team * gridDim.x + blockIdx.x; tile < n / 16; tile += gridDim.x * (NWARPS / N)) {
        const int lo = tile * 16 + (lane >> 2);
        float a_lo, a_hi;
        tc_dot(x, w, scales, biases, lo, lo + 8, K, g0, g1, step, a_lo, a_hi);
        if (!tc_team_sum<N>(x, a_lo, a_hi) || (lane & 3)) continue;
        const float r_lo = !res ? 0.f : res_cg ? load_cg_half(res + lo) : load_half(res + lo);
        const float r_hi = !res ? 0.f : res_cg ? load_cg_half(res + lo + 8) : load_half(res + lo + 8);
        out[lo] = store_half(r_lo + round_half(a_lo)), out[lo + 8] = store_half(r_hi + round_half(a_hi));
    }
}
#define TC_ON TC
#define TCA_ON TCA
#define TCR_ON 1
#else
#define TC_ON 0
#define TCA_ON 0
#define TCR_ON 0
#endif

// out = res + round(x W^T) for the n rows of W, x (K values) written by
// other blocks of this kernel (phases C and E); on tensor cores with
// TEAM > 0, TEAM warps a 16-row tile; else on the FMA loop, its items
// dealt as SPREAD says.
template <int TEAM, bool SPREAD>
__device__ void residual_phase(const u16 *x, u16 *xs, const u32 *w, const u16 *scales, const u16 *biases, int K,
                               const u16 *res, bool res_cg, u16 *out, int n) {
#if TCR_ON
    if (TEAM > 0) {
        copy_to_shared<true>(x, xs, K);
        tc_residual_rows<(TEAM > 0 ? TEAM : 1)>(tc_finish_x(xs, K), w, scales, biases, K, res, res_cg, out, n);
        return;
    }
#endif
    copy_to_shared(x, xs, K);
    residual_rows<SPREAD>(xs, w, scales, biases, K, res, res_cg, out, n);
}

// Phase A's outputs for rows r0 and r1 of q|k|v with sums a0 and a1: rounded
// (and the bias added, rounded) as MLX's graph rounds them; a rotation pair
// (rope: angle j) rotated and written to q or the key cache, else two value
// rows written to the value cache, at the token's slot.
struct QkvOut {
    const u16 *bias;
    const float *inv_freq;
    float rope_log2_base, position;
    float *q_buf;
    u16 *k_cache, *v_cache;
    int qd, kvd, cap, slot;
};
__device__ __forceinline__ void qkv_out(const QkvOut &o, int r0, int r1, float a0, float a1, bool rope, int j) {
    a0 = round_half(a0), a1 = round_half(a1);
#if HAS_BIAS
    a0 = round_half(a0 + load_half(o.bias + r0)), a1 = round_half(a1 + load_half(o.bias + r1));
#endif
    if (rope) {
        float sn, cs;
        // MLX's CUDA RoPE: exp2 of -(j / half) * log2(base) where the model
        // has no table of frequencies
        const float f = o.rope_log2_base > 0.f ? exp2f(-((float)j / (float)(HD / 2)) * o.rope_log2_base)
                                               : o.inv_freq[j];
        sincosf(o.position * f, &sn, &cs);
        const float o0 = round_half(a0 * cs - a1 * sn), o1 = round_half(a0 * sn + a1 * cs);
        if (r0 < o.qd) {
            o.q_buf[r0] = o0, o.q_buf[r1] = o1;
        } else {
            const int k0 = r0 - o.qd, k1 = r1 - o.qd;
            o.k_cache[((size_t)(k0 / HD) * o.cap + o.slot) * HD + k0 % HD] = store_half(o0);
            o.k_cache[((size_t)(k1 / HD) * o.cap + o.slot) * HD + k1 % HD] = store_half(o1);
        }
    } else {
        const int v0 = r0 - o.qd - o.kvd, v1 = r1 - o.qd - o.kvd;
        o.v_cache[((size_t)(v0 / HD) * o.cap + o.slot) * HD + v0 % HD] = store_half(a0);
        o.v_cache[((size_t)(v1 / HD) * o.cap + o.slot) * HD + v1 % HD] = store_half(a1);
    }
}

// A layer's entry in the table (u64 words, TABLE_WORDS a layer): device
// addresses of its weights and caches (and Gemma 2's post-norms), then the
// caches' capacity, then its cache slot as slot0 minus the low word and
// its window (0: all keys; first = slot - window + 1) in the high word.
#define T_ATTN_NW 0
#define T_QKV 1 // w, scales, biases, bias (0 without)
#define T_O 5   // w, scales, biases
#define T_MLP_NW 8
#define T_GU 9
#define T_DN 12
#define T_INV_FREQ 15
#define T_K_CACHE 16
#define T_V_CACHE 17
#define T_POST_ATTN_NW 18
#define T_POST_MLP_NW 19
#define T_CAP 20
#define T_SLOT 21
#define TABLE_WORDS 22

// The attention's keys t0, t0 + NWARPS, ... (KK of them; past k1, t0
// again) of kv head kvh: this lane's EPL elements of each key and value.
__device__ __forceinline__ void attn_keys(const u16 *k_cache, const u16 *v_cache, int kvh, int cap, int t0, int k1,
                                          int lane, float (&kf)[KK][EPL], float (&vf)[KK][EPL]) {
#pragma unroll
    for (int kk = 0; kk < KK; kk++) {
        const int t = t0 + kk * NWARPS < k1 ? t0 + kk * NWARPS : t0;
        const u16 *kr = k_cache + ((size_t)kvh * cap + t) * HD + lane * EPL;
        const u16 *vr = v_cache + ((size_t)kvh * cap + t) * HD + lane * EPL;
#pragma unroll
        for (int e = 0; e < EPL; e += 2) {
            const u32 kw = load_cg32(kr + e), vw = load_cg32(vr + e);
            kf[kk][e] = half_at(kw, 0), kf[kk][e + 1] = half_at(kw, 1);
            vf[kk][e] = half_at(vw, 0), vf[kk][e + 1] = half_at(vw, 1);
        }
    }
}

#if KVP
// A warp with no work in phase A asks L2 for its share of the keys and
// values the attention reads next (those before the token's own slot,
// 128-byte lines), so that the attention's loads wait on L2, not HBM.
// Measured with a few MB of them (600 keys); past 8 MB (a sixth of an
// H100's L2) it asks for none rather than crowd out what phase A reads.
__device__ __forceinline__ void prefetch_kv(const u16 *k_cache, const u16 *v_cache, int n_kv, int cap,
                                            int first, int slot, int idle, int n_idle, int lane) {
    const int lines = ((slot - first) * HD * 2 + 127) / 128, per_cache = n_kv * lines;
    if (2 * per_cache > (8 << 20) / 128) return;
    for (int i = idle * 32 + lane; i < 2 * per_cache; i += n_idle * 32) {
        const int head = i % per_cache / lines, line = i % lines;
        const u16 *rows = (i < per_cache ? k_cache : v_cache) + ((size_t)head * cap + first) * HD;
        const char *p = reinterpret_cast<const char *>(rows) + (size_t)line * 128;
        asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %0; prefetch.global.L2 [g]; }" ::"l"(p));
    }
}
#endif

extern "C" __global__ void __launch_bounds__(LT, 1)
KERNEL_NAME(const u16 *__restrict__ h, const unsigned long long *__restrict__ table, u32 *scratch
            LAYER_ARRAYS, u16 *out, int hidden, int n_heads, int n_kv, int ff, int slot0,
            float position, float rope_log2_base, float eps, float attn_scale, float softcap) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ float part[32];
    u16 *xs = reinterpret_cast<u16 *>(smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gwarp = dealt_warp<DEAL_A != 0>(), n_warps = gridDim.x * NWARPS;
    const int qd = n_heads * HD, kvd = n_kv * HD; // n_heads == REP * n_kv

    u32 *ctrl = scratch;
    u32 bar_n = 0; // grid barriers passed
    float *q_buf = reinterpret_cast<float *>(scratch + CTRL_WORDS);                 // [qd]
    float *parts = q_buf + ((qd + 3) & ~3);                                         // [n_heads][grid][HD + 2]
    u16 *o_buf = reinterpret_cast<u16 *>(parts + (size_t)n_heads * gridDim.x * (HD + 2)); // [qd]
    u16 *act = o_buf + ((qd + 7) & ~7);                                             // [ff]
    u16 *p_buf = act + ((ff + 7) & ~7);   // [hidden]: Gemma 2's attention or MLP output
    u16 *h1_buf = p_buf + ((hidden + 7) & ~7); // [hidden]: Gemma 2's h1
    const u16 *prev_post_mlp = nullptr;   // Gemma 2: the layer before's MLP post-norm

    // Each layer's row of the table is copied to shared memory while the
    // layer before runs (a phase that began with a load from the table
    // waited for it).
    __shared__ unsigned long long rows[2][TABLE_WORDS];
    if (tid < TABLE_WORDS) rows[0][tid] = table[tid];
    __syncthreads();

  for (int layer = 0; layer < NL; layer++) {
    // The layer's buffers are read from its row in each phase (held across
    // the phases they would take registers the loops need). Its input is h
    // for the first layer, then the last layer's output (written by every
    // block: read through L2).
    const unsigned long long *tw = rows[layer & 1];
#define TABLE(T, i) ((T)tw[i])
    if (layer) grid_sync(ctrl, bar_n); // also: no block reads the other row now
    if (layer + 1 < NL && tid < TABLE_WORDS) rows[(layer + 1) & 1][tid] = table[(layer + 1) * TABLE_WORDS + tid];
    u16 *k_cache = TABLE(u16 *, T_K_CACHE), *v_cache = TABLE(u16 *, T_V_CACHE);
    const int cap = (int)tw[T_CAP];
    const int slot = slot0 - (int)(u32)tw[T_SLOT], window = (int)(u32)(tw[T_SLOT] >> 32);
    const int first = window > 0 && slot - window + 1 > 0 ? slot - window + 1 : 0;
    const u16 *x_in = layer ? out : h;
    const bool x_cg = layer > 0;
    // Chunks of at least KC keys, at most one block per chunk of a kv head's
    // HS groups of query heads.
    const int n_keys = slot - first + 1;
    int chunks = (int)gridDim.x / (n_kv * HS);
    if (chunks < 1) chunks = 1;
    if (chunks > (n_keys + KC - 1) / KC) chunks = (n_keys + KC - 1) / KC;
    const int per_chunk = (n_keys + chunks - 1) / chunks;

    // ---- A: q|k|v, RoPE, cache writes ----
    if (layer == TL) stamp(ctrl, 0);
  {
    const u32 *qkv_w = TABLE(const u32 *, T_QKV);
    const u16 *qkv_s = TABLE(const u16 *, T_QKV + 1), *qkv_b = TABLE(const u16 *, T_QKV + 2);
#if HAS_BIAS
    const u16 *qkv_bias = TABLE(const u16 *, T_QKV + 3);
#endif
    const float *inv_freq = TABLE(const float *, T_INV_FREQ);
    const QkvOut qo{
#if HAS_BIAS
        qkv_bias,
#else
        nullptr,
#endif
        inv_freq, rope_log2_base, position, q_buf, k_cache, v_cache, qd, kvd, cap, slot};
    // x normed into shared memory (in tc_pos order for tensor cores).
#if GEMMA
    if (layer) // out = h1 + the layer before's normed MLP output, this layer's h
        post_norm_add<TCA_ON != 0>(h1_buf, true, p_buf, prev_post_mlp, out, TABLE(const u16 *, T_ATTN_NW), xs, hidden,
                                   eps, part);
    else
#endif
    norm_to_shared<TCA_ON != 0>(x_in, x_cg, TABLE(const u16 *, T_ATTN_NW), xs, hidden, eps, part);
#if TCA_ON
    // On tensor cores: a tile is 8 rotation pairs of a q or k head (A's
    // rows g and g + 8 a pair, so a lane ends with both of its halves), or
    // 16 consecutive v rows; a team of TSA warps takes a tile, each warp a
    // share of K.
    {
        const TcX x = tc_finish_x(xs, hidden);
        const int team = warp / TSA, member = warp % TSA;
        int g0, g1, step;
        tc_share(member, TSA, hidden / GS, g0, g1, step);
        const int rope_tiles = (qd + kvd) / 16, tiles = (qd + 2 * kvd) / 16;
        for (int it = team * gridDim.x + blockIdx.x; it < tiles; it += gridDim.x * (NWARPS / TSA)) {
            const bool rope = it < rope_tiles;
            int lo, hi, j = 0;
            if (rope) {
                const int head = it / (HD / 16);
                j = it % (HD / 16) * 8 + (lane >> 2);
#if ROPE_TRAD
                lo = head * HD + 2 * j, hi = lo + 1;
#else
                lo = head * HD + j, hi = lo + HD / 2;
#endif
            } else {
                lo = qd + kvd + 16 * (it - rope_tiles) + (lane >> 2), hi = lo + 8;
            }
            float a0, a1;
            tc_dot(x, qkv_w, qkv_s, qkv_b, lo, hi, hidden, g0, g1, step, a0, a1);
            if (!tc_team_sum<TSA>(x, a0, a1) || (lane & 3)) continue;
            qkv_out(qo, lo, hi, a0, a1, rope, j);
        }
#if KVP
        const int my_tile = team * gridDim.x + blockIdx.x, teams = gridDim.x * (NWARPS / TSA);
        if (my_tile >= tiles)
            prefetch_kv(k_cache, v_cache, n_kv, cap, first, slot, (my_tile - tiles) * TSA + member,
                        (teams - tiles) * TSA, lane);
#endif
    }
#else
    // An item is ROWS_A / 2 rotation pairs (j, j + HD/2, or 2j, 2j + 1 with
    // ROPE_TRAD) of a q or k head, or ROWS_A consecutive v rows.
    const int rope_items = (qd + kvd) / ROWS_A, items = (qd + 2 * kvd) / ROWS_A;
    for (int it = gwarp; it < items; it += n_warps) {
        int rows[ROWS_A], js[ROWS_A / 2];
        const bool rope = it < rope_items;
        if (rope) {
            const int per_head = HD / ROWS_A, head = it / per_head;
#pragma unroll
            for (int p = 0; p < ROWS_A / 2; p++) {
                const int j = (it % per_head) * (ROWS_A / 2) + p;
                js[p] = j;
#if ROPE_TRAD
                rows[2 * p] = head * HD + 2 * j, rows[2 * p + 1] = head * HD + 2 * j + 1;
#else
                rows[2 * p] = head * HD + j, rows[2 * p + 1] = head * HD + j + HD / 2;
#endif
            }
        } else {
#pragma unroll
            for (int r = 0; r < ROWS_A; r++) rows[r] = qd + kvd + ROWS_A * (it - rope_items) + r;
        }
        float a[ROWS_A];
        dot<ROWS_A>(xs, qkv_w, qkv_s, qkv_b, rows, hidden, a);
        if (lane) continue;
#pragma unroll
        for (int p = 0; p < ROWS_A / 2; p++) qkv_out(qo, rows[2 * p], rows[2 * p + 1], a[2 * p], a[2 * p + 1], rope, rope ? js[p] : 0);
    }
#if KVP
    if (gwarp >= items) prefetch_kv(k_cache, v_cache, n_kv, cap, first, slot, gwarp - items, n_warps - items, lane);
#endif
#endif
  }
    if (layer == TL) stamp_block_latest(ctrl, ST_ARRIVED);
    grid_sync(ctrl, bar_n);
    if (layer == TL) stamp(ctrl, 1);
    if (layer == TL && tid == 0) stamp_latest(ctrl, ST_B_START);

    // ---- B: attention, chunks of keys per kv head, merged by the last ----
    __shared__ int merge;
    float *wbuf = reinterpret_cast<float *>(smem); // [RH][NWARPS][HD + 2]
    for (int u = blockIdx.x; u < n_kv * HS * chunks; u += gridDim.x) {
        // kv head kvh, its query heads h0..h0+RB-1 (group g), chunk c
        const int kvh = u / (HS * chunks), g = u / chunks % HS, c = u % chunks;
        const int h0 = kvh * REP + g * RB;
        const int k0 = first + c * per_chunk;
        const int k1 = min(k0 + per_chunk, slot + 1);
        // The group's q heads loaded once a block, 16 bytes a thread, into
        // shared memory: every warp of every block of a group loading them
        // from L2 queued ~1000 requests on each of their lines.
        float *qs = reinterpret_cast<float *>(smem); // [RB][HD]
        __syncthreads(); // the block's last readers of smem are done
        for (int i = tid; i < RB * HD / 4; i += LT) {
            const V4 v = load_cg16(reinterpret_cast<const u16 *>(q_buf + (size_t)h0 * HD + 4 * i));
            qs[4 * i] = bits_to_float(v.x), qs[4 * i + 1] = bits_to_float(v.y);
            qs[4 * i + 2] = bits_to_float(v.z), qs[4 * i + 3] = bits_to_float(v.w);
        }
        __syncthreads();
        float qv[RB][EPL], m[RB], l[RB], acc[RB][EPL];
#pragma unroll
        for (int r = 0; r < RB; r++) {
            m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
            for (int e = 0; e < EPL; e++) {
                acc[r][e] = 0.f;
                qv[r][e] = qs[r * HD + lane * EPL + e] * attn_scale;
            }
        }
        // KK keys' rows loaded before any is used; past the chunk, the
        // first again.
        for (int t0 = k0 + warp; t0 < k1; t0 += KK * NWARPS) {
            float kf[KK][EPL], vf[KK][EPL];
            attn_keys(k_cache, v_cache, kvh, cap, t0, k1, lane, kf, vf);
#pragma unroll
            for (int kk = 0; kk < KK; kk++) {
                if (t0 + kk * NWARPS >= k1) break;
#pragma unroll
                for (int r = 0; r < RB; r++) {
                    float s = 0.f;
#pragma unroll
                    for (int e = 0; e < EPL; e++) s += qv[r][e] * kf[kk][e];
                    s = warp_sum(s);
                    if (softcap > 0.f) s = softcap * tanhf(s / softcap);
                    const float mn = fmaxf(m[r], s), corr = __expf(m[r] - mn), p = __expf(s - mn);
                    l[r] = l[r] * corr + p;
#pragma unroll
                    for (int e = 0; e < EPL; e++) acc[r][e] = acc[r][e] * corr + p * vf[kk][e];
                    m[r] = mn;
                }
            }
        }
        if (layer == TL) stamp_block_latest(ctrl, ST_KEYS);
        // The block's warps combined per head into one partial (max, sum,
        // acc), RH heads a round (wbuf: [RH][NWARPS][HD + 2]).
#pragma unroll
        for (int r0 = 0; r0 < RB; r0 += RH) {
            __syncthreads();
#pragma unroll
            for (int hh = 0; hh < RH; hh++) {
                if (r0 + hh >= RB) break;
                float *wb = wbuf + (hh * NWARPS + warp) * (HD + 2);
#pragma unroll
                for (int e = 0; e < EPL; e++) wb[lane * EPL + e] = acc[r0 + hh][e];
                if (lane == 0) wb[HD] = m[r0 + hh], wb[HD + 1] = l[r0 + hh];
            }
            __syncthreads();
            const int nh = RB - r0 < RH ? RB - r0 : RH;
            for (int i = tid; i < nh * (HD + 2); i += LT) {
                const int hh = i / (HD + 2), d = i % (HD + 2);
                const float *wb = wbuf + hh * NWARPS * (HD + 2);
                float mx = -INFINITY;
                for (int w2 = 0; w2 < NWARPS; w2++) mx = fmaxf(mx, wb[w2 * (HD + 2) + HD]);
                float v = 0.f;
                if (mx != -INFINITY) {
                    for (int w2 = 0; w2 < NWARPS; w2++) {
                        const float wm = wb[w2 * (HD + 2) + HD];
                        if (wm == -INFINITY) continue;
                        const float f = __expf(wm - mx);
                        v += f * wb[w2 * (HD + 2) + (d < HD ? d : HD + 1)];
                    }
                }
                parts[((size_t)(h0 + r0 + hh) * gridDim.x + c) * (HD + 2) + d] = d == HD ? mx : v;
            }
        }
        __syncthreads();
        if (tid == 0) { // release this block's partials, acquire the others' (for the last)
            u32 arrived;
            asm volatile("{ .reg .u64 a; cvta.to.global.u64 a, %1; atom.acq_rel.gpu.global.add.u32 %0, [a], 1; }"
                         : "=r"(arrived) : "l"(ctrl + KV_COUNT + kvh * HS + g) : "memory");
            merge = arrived == (u32)chunks - 1;
            if (layer == TL) stamp_latest(ctrl, ST_PARTIALS);
        }
        __syncthreads();
        // No fence: thread 0's acquire, then the block's barrier, orders
        // every thread's loads below after the other blocks' releases (a
        // __threadfence here cost the merge 0.2-0.4 us, decode 0.4-1.2%).
        if (!merge) continue;
        // Each thread merges the chunks of its (head, element) pairs by
        // itself, MC chunks a round: their maxima, sums and values loaded at
        // once (one round trip to L2; every thread of a head loads the same
        // maxima and sums), weighed exp(max_c - max) with the running max.
        for (int i = tid; i < RB * HD; i += LT) {
            const int r = i / HD, d = i % HD;
            const float *src = parts + (size_t)(h0 + r) * gridDim.x * (HD + 2);
            float mx = -INFINITY, den = 0.f, num = 0.f;
            for (int c0 = 0; c0 < chunks; c0 += MC) {
                float cm[MC], cl[MC], cv[MC];
#pragma unroll
                for (int u = 0; u < MC; u++) {
                    const float *pc = src + (size_t)(c0 + u) * (HD + 2);
                    const bool in = c0 + u < chunks;
                    cm[u] = in ? load_cg_f32(pc + HD) : -INFINITY;
                    cl[u] = in ? load_cg_f32(pc + HD + 1) : 0.f;
                    cv[u] = in ? load_cg_f32(pc + d) : 0.f;
                }
                float mn = mx;
#pragma unroll
                for (int u = 0; u < MC; u++) mn = fmaxf(mn, cm[u]);
                if (mn == -INFINITY) continue; // no keys yet
                const float corr = mx == -INFINITY ? 0.f : __expf(mx - mn);
                den *= corr, num *= corr;
#pragma unroll
                for (int u = 0; u < MC; u++) {
                    const float f = cm[u] == -INFINITY ? 0.f : __expf(cm[u] - mn);
                    den += f * cl[u], num += f * cv[u];
                }
                mx = mn;
            }
            o_buf[(h0 + r) * HD + d] = store_half(num / den);
        }
        if (layer == TL && tid == 0) stamp_latest(ctrl, ST_MERGED);
        if (tid == 0) ctrl[KV_COUNT + kvh * HS + g] = 0;
    }
    if (layer == TL) stamp_block_latest(ctrl, ST_ARRIVED + 1);
    grid_sync(ctrl, bar_n);
    if (layer == TL) stamp(ctrl, 2);

    // ---- C: h1 = h + o Wo^T ----
    // (Gemma 2: o Wo^T alone to p_buf; D adds it, normed.)
    residual_phase<TCR_C, DEAL_C != 0>(o_buf, xs, TABLE(const u32 *, T_O), TABLE(const u16 *, T_O + 1), TABLE(const u16 *, T_O + 2), qd,
                   GEMMA ? nullptr : x_in, x_cg, GEMMA ? p_buf : out, hidden);
    if (layer == TL) stamp_block_latest(ctrl, ST_ARRIVED + 2);
    grid_sync(ctrl, bar_n);
    if (layer == TL) stamp(ctrl, 3);

    // ---- D: act = silu(g) * u ----
  {
    const u32 *gu_w = TABLE(const u32 *, T_GU);
    const u16 *gu_s = TABLE(const u16 *, T_GU + 1), *gu_b = TABLE(const u16 *, T_GU + 2);
#if TC_ON
    {
        // An item is 8 gate rows (A's rows g) and their up rows (g + 8)
        // (the host asks for TC only when ff is a multiple of 8).
        mlp_input<true>(x_in, x_cg, out, p_buf, TABLE(const u16 *, T_POST_ATTN_NW), h1_buf,
                        TABLE(const u16 *, T_MLP_NW), xs, hidden, eps, part);
        const TcX x = tc_finish_x(xs, hidden);
        // A team of TS warps takes an item, each warp a share of K. Items
        // are dealt to the blocks in turn, so every SM gets work when
        // there are fewer items than teams.
        const int team = warp / TS, member = warp % TS;
        int g0, g1, step;
        tc_share(member, TS, hidden / GS, g0, g1, step);
        for (int it = team * gridDim.x + blockIdx.x; it < ff / 8; it += gridDim.x * (NWARPS / TS)) {
            const int r = it * 8 + (lane >> 2);
            float gs, us;
            tc_dot(x, gu_w, gu_s, gu_b, r, r + ff, hidden, g0, g1, step, gs, us);
            if (!tc_team_sum<TS>(x, gs, us) || (lane & 3)) continue;
            const float g = round_half(gs), up = round_half(us);
            act[r] = store_half(gate_act(g) * up);
        }
    }
#else
  {
    mlp_input(x_in, x_cg, out, p_buf, TABLE(const u16 *, T_POST_ATTN_NW), h1_buf, TABLE(const u16 *, T_MLP_NW), xs,
              hidden, eps, part);
    // An item is ROWS_D / 2 gate rows and their up rows.
    for (int it = dealt_warp<false>(); it < ff / (ROWS_D / 2); it += n_warps) {
        int rows[ROWS_D];
#pragma unroll
        for (int p = 0; p < ROWS_D / 2; p++) {
            rows[2 * p] = it * (ROWS_D / 2) + p;
            rows[2 * p + 1] = rows[2 * p] + ff;
        }
        float a[ROWS_D];
        dot<ROWS_D>(xs, gu_w, gu_s, gu_b, rows, hidden, a);
        if (lane) continue;
#pragma unroll
        for (int p = 0; p < ROWS_D / 2; p++) {
            const float g = round_half(a[2 * p]), up = round_half(a[2 * p + 1]);
            act[rows[2 * p]] = store_half(gate_act(g) * up);
        }
    }
  }
#endif
  }
    if (layer == TL) stamp_block_latest(ctrl, ST_ARRIVED + 3);
    grid_sync(ctrl, bar_n);
    if (layer == TL) stamp(ctrl, 4);

    // ---- E: out = h1 + act Wdown^T ----
    // (Gemma 2: act Wdown^T alone to p_buf; the next A adds it, normed.)
    residual_phase<TCR_E, DEAL_E != 0>(act, xs, TABLE(const u32 *, T_DN), TABLE(const u16 *, T_DN + 1), TABLE(const u16 *, T_DN + 2),
                   ff, GEMMA ? nullptr : out, true, GEMMA ? p_buf : out, hidden);
    prev_post_mlp = TABLE(const u16 *, T_POST_MLP_NW);
    if (layer == TL) stamp_block_latest(ctrl, ST_ARRIVED + 4);
#if TIMING == 2 // the barrier's cost: eight more in E's time
    if (layer == TL)
        for (int i = 0; i < 8; i++) grid_sync(ctrl, bar_n);
#endif
    if (layer == TL) stamp(ctrl, 5);
  }
#if GEMMA
    // The last layer's MLP output, normed, added to its h1.
    grid_sync(ctrl, bar_n);
    if (blockIdx.x == 0) post_norm_add(h1_buf, true, p_buf, prev_post_mlp, out, nullptr, xs, hidden, eps, part);
#endif
    grid_end(ctrl);
}
)CUDA";

#endif
