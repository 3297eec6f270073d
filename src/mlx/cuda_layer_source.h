// cuda_layer_source.h - CUDA C of a decode step's decoder layers for one
// token in one kernel (cuda_layer.cpp), compiled with NVRTC after
// kCudaCommonSource and the kernel's other parts, in this order:
// cuda_layer_sync_source.h (control words, stamps, L2 loads, the grid
// barrier), cuda_layer_x_source.h (a phase's x into shared memory),
// cuda_layer_dot_source.h (the 4-bit products); this file has phase A's
// outputs, the layer table and the kernel itself.
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
// a team's warps take every n-th window of K, tc_share), TCW_H, TCW_Q,
// TCW_F (1: every tensor-core window over K = hidden, the q width or ff
// holds 8 groups, tc_dot's WHOLE), LOP and NIB0 (how tc_dot unpacks a
// nibble pair, cuda_layer_dot_source.h), NWP (1: a norm's weights asked
// of L1 in the pass over x, cuda_layer_x_source.h), RES0 (1: phases
// C's and E's residual loaded before the products), LN (1: phases A's and
// D's pre-norm applied to the products), HALF (1: phases C's and E's
// tiles past the grid's last full round as 8-row halves, tc_residual_rows)
// and HALF_A (1: phase A's tiles likewise, a rope half 4 rotation pairs).
#ifndef GOMLX_CUDA_LAYER_SOURCE_H
#define GOMLX_CUDA_LAYER_SOURCE_H

static const char *const kCudaLayerSource = R"CUDA(
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
        prefetch_l2(p);
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
        const float inv = norm_scale(part, hidden, eps); // LN: the norm's scale, applied to the products
        const int team = warp / TSA, member = warp % TSA;
        int g0, g1, step;
        tc_share(member, TSA, hidden / GS, g0, g1, step);
        const int rope_tiles = (qd + kvd) / 16, tiles = (qd + 2 * kvd) / 16;
        const TileItems ti = tile_items(tiles, 0, HALF_A);
        const int g = lane >> 2;
        for (int it = team * gridDim.x + blockIdx.x; it < ti.items; it += gridDim.x * (NWARPS / TSA)) {
            // A whole tile's indices keep their own forms (`it`, not `row`):
            // with them every cubin without HALF_A is the one measured before.
            const bool half = HALF_A && it >= ti.full;
            const int row = item_row(ti, it, half); // in the tiles' order: rope tiles, then v tiles
            const bool rope = half ? row < 16 * rope_tiles : it < rope_tiles;
            int lo, hi, j = 0;
            if (rope) {
                // A whole tile: pair g of its 8 (rows g and g + 8). A half:
                // pair g & 3 of its 4, lane g < 4 taking the pair's first
                // row and lane g + 4 (16 lanes on) its second.
                const int head = half ? row / HD : it / (HD / 16);
                j = half ? row % HD / 2 + (g & 3) : it % (HD / 16) * 8 + g;
#if ROPE_TRAD
                lo = head * HD + 2 * j, hi = lo + 1;
#else
                lo = head * HD + j, hi = lo + HD / 2;
#endif
            } else {
                lo = half ? qd + kvd - 16 * rope_tiles + row + g : qd + kvd + 16 * (it - rope_tiles) + g, hi = lo + 8;
            }
            const int mine = half && rope && g >= 4 ? hi : lo;
            float a0, a1;
            if (half)
                tc_dot<TCW_H != 0, true>(x, qkv_w, qkv_s, qkv_b, mine, mine, hidden, g0, g1, step, a0, a1);
            else
                tc_dot<TCW_H != 0>(x, qkv_w, qkv_s, qkv_b, lo, hi, hidden, g0, g1, step, a0, a1);
            if (!tc_team_sum<TSA>(x, a0, a1)) continue;
            if (half && rope) a1 = __shfl_down_sync(0xffffffffu, a0, 16); // the pair's second row
            if ((lane & 3) || (half && rope && g >= 4)) continue;
            if (half && !rope) hi = lo, a1 = a0; // a v half: row lo twice
            qkv_out(qo, lo, hi, a0 * inv, a1 * inv, rope, j);
        }
#if KVP
        const int my_tile = team * gridDim.x + blockIdx.x, teams = gridDim.x * (NWARPS / TSA);
        if (my_tile >= ti.items)
            prefetch_kv(k_cache, v_cache, n_kv, cap, first, slot, (my_tile - ti.items) * TSA + member,
                        (teams - ti.items) * TSA, lane);
#endif
    }
#else
    // An item is ROWS_A / 2 rotation pairs (j, j + HD/2, or 2j, 2j + 1 with
    // ROPE_TRAD) of a q or k head, or ROWS_A consecutive v rows.
    const int rope_items = (qd + kvd) / ROWS_A, items = (qd + 2 * kvd) / ROWS_A;
    const float inv = norm_scale(part, hidden, eps); // LN: the norm's scale, applied to the products
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
        for (int p = 0; p < ROWS_A / 2; p++)
            qkv_out(qo, rows[2 * p], rows[2 * p + 1], a[2 * p] * inv, a[2 * p + 1] * inv, rope, rope ? js[p] : 0);
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
    residual_phase<TCR_C, DEAL_C != 0, TCW_Q != 0>(o_buf, xs, TABLE(const u32 *, T_O), TABLE(const u16 *, T_O + 1), TABLE(const u16 *, T_O + 2), qd,
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
        const float inv = norm_scale(part, hidden, eps); // LN: the norm's scale, applied to the products
        // A team of TS warps takes an item, each warp a share of K. Items
        // are dealt to the blocks in turn, so every SM gets work when
        // there are fewer items than teams.
        const int team = warp / TS, member = warp % TS;
        int g0, g1, step;
        tc_share(member, TS, hidden / GS, g0, g1, step);
        for (int it = team * gridDim.x + blockIdx.x; it < ff / 8; it += gridDim.x * (NWARPS / TS)) {
            const int r = it * 8 + (lane >> 2);
            float gs, us;
            tc_dot<TCW_H != 0>(x, gu_w, gu_s, gu_b, r, r + ff, hidden, g0, g1, step, gs, us);
            if (!tc_team_sum<TS>(x, gs, us) || (lane & 3)) continue;
            const float g = round_half(gs * inv), up = round_half(us * inv);
            act[r] = store_half(gate_act(g) * up);
        }
    }
#else
  {
    mlp_input(x_in, x_cg, out, p_buf, TABLE(const u16 *, T_POST_ATTN_NW), h1_buf, TABLE(const u16 *, T_MLP_NW), xs,
              hidden, eps, part);
    const float inv = norm_scale(part, hidden, eps); // LN: the norm's scale, applied to the products
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
            const float g = round_half(a[2 * p] * inv), up = round_half(a[2 * p + 1] * inv);
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
    residual_phase<TCR_E, DEAL_E != 0, TCW_F != 0>(act, xs, TABLE(const u32 *, T_DN), TABLE(const u16 *, T_DN + 1), TABLE(const u16 *, T_DN + 2),
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
