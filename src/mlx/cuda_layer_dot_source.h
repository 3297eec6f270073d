// cuda_layer_dot_source.h - the layer kernel's CUDA C, third part
// (cuda_layer_source.h): the 4-bit products with x on the FMA loop (a
// warp a few rows at a time) and on tensor cores (sm_80+: a team of warps
// a 16-row tile), the MLP's gate activation, and the residual phases (C,
// E) built on the products.
#ifndef GOMLX_CUDA_LAYER_DOT_SOURCE_H
#define GOMLX_CUDA_LAYER_DOT_SOURCE_H

static const char *const kCudaLayerDotSource = R"CUDA(
#ifndef TCW_H
#define TCW_H 0
#define TCW_Q 0
#define TCW_F 0
#endif
#ifndef RES0
#define RES0 0
#endif
#ifndef HALF
#define HALF 0
#endif
#ifndef HALF_A
#define HALF_A 0
#endif
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
    // 16.0f's bits through a value ptxas cannot fold (K > 0), so that with
    // LOP it stays in a register (nibble_16q).
    const u32 one = LOP ? 0x41800000u | ((u32)K >> 31) : 0x41800000u;
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
                acc[r] += sc[u][r] * nibble_dot(words, xf, one) + (bi[u][r] - 16.f * sc[u][r]) * xsum;
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

// Nibbles N and N + 4 of w as a pair of 16-bit floats 1 + q/16 (NIB0: /128): the
// nibbles shifted into the mantissa's top bits, masked, and the exponent
// of 1 (ONE_BITS) set. With LOP (one_bits a register that holds ONE_BITS)
// the mask and the exponent are one lop3, (v & MASK) | one_bits: with both
// as immediates ptxas emits two (SASS takes one immediate an instruction),
// a third of the unpacking's instructions.
// With NIB0 (bfloat16) q sits at bits 0..3 instead, 1 + q/128: nibbles 0
// and 4 are in place unshifted, a quarter of the shifts saved, for 3 bits
// of float32 precision in the sums' cancellation (NIB_SCALE, TC_ADD_GROUP).
#if XT == 0 && NIB0
#define NIB_SHIFT 0
#define NIB_MASK 0x000F000Fu
#define ONE_BITS 0x3F803F80u
#define NIB_SCALE 128.f
#elif XT == 0 // bfloat16: 7 mantissa bits, q at bits 3..6
#define NIB_SHIFT 3
#define NIB_MASK 0x00780078u
#define ONE_BITS 0x3F803F80u
#define NIB_SCALE 16.f
#else // float16: 10 mantissa bits, q at bits 6..9
#define NIB_SHIFT 6
#define NIB_MASK 0x03C003C0u
#define ONE_BITS 0x3C003C00u
#define NIB_SCALE 16.f
#endif
template <int N>
__device__ __forceinline__ u32 nib_pair(u32 w, u32 one_bits) {
    constexpr int sh = NIB_SHIFT - 4 * N;
    const u32 v = sh >= 0 ? w << (sh & 31) : w >> (-sh & 31);
#if LOP
    u32 d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(v), "n"(NIB_MASK), "r"(one_bits)); // (a & b) | c
    return d;
#else
    (void)one_bits;
    return (v & NIB_MASK) | ONE_BITS;
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

// Rows lo's and hi's products with x over group J added to tc_dot's ylo
// and yhi (its x read too), from their window sums CL and CH: scale *
// sum(q x) + bias * sum(x), where sum(q x) = NIB_SCALE (C - sum x). A
// macro, not a function: inlined as a call, ptxas scheduled the whole
// kernel differently (the same instructions, another order), where the
// written-out form is what was measured.
#define TC_ADD_GROUP(J, CL, CH, SL, SH, BL, BH)                                   \
    {                                                                             \
        const float xs_ = x.xsum[J];                                              \
        ylo += NIB_SCALE * SL * CL + (BL - NIB_SCALE * SL) * xs_;                 \
        if (!LO_ONLY) yhi += NIB_SCALE * SH * CH + (BH - NIB_SCALE * SH) * xs_;   \
    }

// The sums of rows lo and hi (this lane's; lane group g's) of a 4-bit
// matrix with x over groups g_begin..g_end-1 of K, in every lane of the
// group. A window's weights (8 groups, 4 GS bytes a row) are all loaded
// before any is used; windows start every `step` groups (tc_share).
// WHOLE: every window holds 8 groups (the host's TCW_*), so no load,
// group or sum is checked against the end: fewer integer instructions,
// which share the ALU pipe with the unpacking (docs/GPU.md).
// LO_ONLY: row lo alone (a half tile, HALF): A's rows g + 8 are zeros,
// nothing of row hi is loaded or unpacked, and out_hi is 0.
template <bool WHOLE, bool LO_ONLY = false>
__device__ __forceinline__ void tc_dot(const TcX &x, const u32 *w, const u16 *scales, const u16 *biases,
                                       int lo, int hi, int K, int g_begin, int g_end, int step, float &out_lo,
                                       float &out_hi) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, groups = K / GS;
    const u32 *wl = w + (size_t)lo * (K >> 3), *wh = w + (size_t)hi * (K >> 3);
    const u16 *sl = scales + (size_t)lo * groups, *sh = scales + (size_t)hi * groups;
    const u16 *bl = biases + (size_t)lo * groups, *bh = biases + (size_t)hi * groups;
    float ylo = 0.f, yhi = 0.f;
    // ONE_BITS through a value ptxas cannot fold (x's zeros in shared
    // memory), so that it stays in a register. (dot_rows's K >> 31 here
    // made ptxas spill 8 bytes in Gemma-2-2B's variant; this, none.)
    const u32 one_bits = LOP ? x.zero->x | ONE_BITS : ONE_BITS;
    for (int w0 = g_begin; w0 < g_end; w0 += step) {
        // This lane's two groups of the window (C's columns 2t, 2t + 1).
        const int j0 = WHOLE ? w0 + 2 * t : min(w0 + 2 * t, g_end - 1),
                  j1 = WHOLE ? w0 + 2 * t + 1 : min(w0 + 2 * t + 1, g_end - 1);
        const float s0l = load_half(sl + j0), s1l = load_half(sl + j1), s0h = LO_ONLY ? 0.f : load_half(sh + j0),
                    s1h = LO_ONLY ? 0.f : load_half(sh + j1);
        const float b0l = load_half(bl + j0), b1l = load_half(bl + j1), b0h = LO_ONLY ? 0.f : load_half(bh + j0),
                    b1h = LO_ONLY ? 0.f : load_half(bh + j1);
        const int ng = WHOLE ? 8 : min(8, g_end - w0);
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
                const int off = WHOLE || gw < ng ? 16 * i : 0; // past the window: a valid address, x zero
                ql[i] = load16(reinterpret_cast<const u16 *>(rl + off), true);
                qh[i] = LO_ONLY ? V4{0, 0, 0, 0} : load16(reinterpret_cast<const u16 *>(rh + off), true);
            }
#pragma unroll
            for (int i = 0; i < NLD; i++) {
                const int gw = (16 * i + 4 * t) * 8 / GS;
                const bool mine = g == gw && (WHOLE || gw < ng); // B's column g holds this group
                const V4 *xv = mine ? reinterpret_cast<const V4 *>(x.xp + w0 * GS + 8 * (16 * i + 4 * t)) : x.zero;
                const u32 wlo[4] = {ql[i].x, ql[i].y, ql[i].z, ql[i].w}, whi[4] = {qh[i].x, qh[i].y, qh[i].z, qh[i].w};
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const V4 b = xv[r];
                    mma_16816(c4[(2 * r) & 3], nib_pair<0>(wlo[r], one_bits), LO_ONLY ? 0u : nib_pair<0>(whi[r], one_bits),
                              nib_pair<1>(wlo[r], one_bits), LO_ONLY ? 0u : nib_pair<1>(whi[r], one_bits), b.x, b.y);
                    mma_16816(c4[(2 * r + 1) & 3], nib_pair<2>(wlo[r], one_bits), LO_ONLY ? 0u : nib_pair<2>(whi[r], one_bits),
                              nib_pair<3>(wlo[r], one_bits), LO_ONLY ? 0u : nib_pair<3>(whi[r], one_bits), b.z, b.w);
                }
            }
        }
        float c[4];
#pragma unroll
        for (int e = 0; e < 4; e++) c[e] = (c4[0][e] + c4[1][e]) + (c4[2][e] + c4[3][e]);
        if (WHOLE || w0 + 2 * t < g_end) TC_ADD_GROUP(j0, c[0], c[2], s0l, s0h, b0l, b0h)
        if (WHOLE || w0 + 2 * t + 1 < g_end) TC_ADD_GROUP(j1, c[1], c[3], s1l, s1h, b1l, b1h)
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
        ylo += __shfl_xor_sync(0xffffffffu, ylo, o);
        if (!LO_ONLY) yhi += __shfl_xor_sync(0xffffffffu, yhi, o);
    }
    out_lo = ylo, out_hi = yhi;
}

// A phase's 16-row tiles as the items its teams take: with halves (HALF,
// HALF_A) the tiles past the grid's last full round, and never before
// tile `first`, are two 8-row items each (tc_dot's LO_ONLY), so that where
// they are at most half the grid no block streams a whole tile more than
// another (the host's use_half). Both callers pass first = 0 since phase A
// halves rope tiles too; dropping it changes their cubins by its max(),
// left until a GPU can run the result.
struct TileItems {
    int full, items; // items before `full` are whole tiles
};
__device__ __forceinline__ TileItems tile_items(int tiles, int first, bool halves) {
    if (!halves) return {tiles, tiles};
    const int full = max(tiles / (int)gridDim.x * (int)gridDim.x, first);
    return {full, full + 2 * (tiles - full)};
}

// The first row of item `item` (half: one of the 8-row items).
__device__ __forceinline__ int item_row(const TileItems &t, int item, bool half) {
    return half ? 16 * t.full + 8 * (item - t.full) : 16 * item;
}

// out[r] = res[r] + round(x W[r]^T) for the n rows of W (n a multiple of
// 16): a team of N warps takes 16 rows at a time (tiles dealt to the
// blocks in turn), each warp a share of K, and its member 0 adds the
// shares up (N = NWARPS: a block a tile); with HALF, the last tiles in
// halves (tile_items: Llama-3.2-3B's 192 tiles, 1.5 a block at most
// instead of 2).
template <int N, bool WHOLE>
__device__ void tc_residual_rows(const TcX &x, const u32 *w, const u16 *scales, const u16 *biases, int K,
                                 const u16 *res, bool res_cg, u16 *out, int n) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, team = warp / N, member = warp % N;
    int g0, g1, step;
    tc_share(member, N, K / GS, g0, g1, step);
    const TileItems ti = tile_items(n / 16, 0, HALF);
    for (int item = team * gridDim.x + blockIdx.x; item < ti.items; item += gridDim.x * (NWARPS / N)) {
        const bool half = HALF && item >= ti.full;
        const int lo = item_row(ti, item, half) + (lane >> 2);
        float a_lo, a_hi;
#if RES0 // the residual asked for before the products, not a trip to L2 after them
        const bool adds = res && member == 0 && !(lane & 3);
        const float r_lo = !adds ? 0.f : res_cg ? load_cg_half(res + lo) : load_half(res + lo);
        const float r_hi = !adds || half ? 0.f : res_cg ? load_cg_half(res + lo + 8) : load_half(res + lo + 8);
#endif
        if (half)
            tc_dot<WHOLE, true>(x, w, scales, biases, lo, lo, K, g0, g1, step, a_lo, a_hi);
        else
            tc_dot<WHOLE>(x, w, scales, biases, lo, lo + 8, K, g0, g1, step, a_lo, a_hi);
        if (!tc_team_sum<N>(x, a_lo, a_hi) || (lane & 3)) continue;
#if !RES0
        const float r_lo = !res ? 0.f : res_cg ? load_cg_half(res + lo) : load_half(res + lo);
        const float r_hi = !res || half ? 0.f : res_cg ? load_cg_half(res + lo + 8) : load_half(res + lo + 8);
#endif
        out[lo] = store_half(r_lo + round_half(a_lo));
        if (!half) out[lo + 8] = store_half(r_hi + round_half(a_hi));
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
template <int TEAM, bool SPREAD, bool WHOLE>
__device__ void residual_phase(const u16 *x, u16 *xs, const u32 *w, const u16 *scales, const u16 *biases, int K,
                               const u16 *res, bool res_cg, u16 *out, int n) {
#if TCR_ON
    if (TEAM > 0) {
        copy_to_shared<true>(x, xs, K);
        tc_residual_rows<(TEAM > 0 ? TEAM : 1), WHOLE>(tc_finish_x(xs, K), w, scales, biases, K, res, res_cg, out, n);
        return;
    }
#endif
    copy_to_shared(x, xs, K);
    residual_rows<SPREAD>(xs, w, scales, biases, K, res, res_cg, out, n);
}
)CUDA";

#endif
