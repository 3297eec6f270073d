// cuda_layer_x_source.h - the layer kernel's CUDA C, second part
// (cuda_layer_source.h): a phase's input vector x into shared memory,
// normed (RMS norm; Gemma 2's post-norm and residual add) or copied, in
// the order the FMA loop or the tensor cores read it, with each group's
// sum for the tensor cores.
#ifndef GOMLX_CUDA_LAYER_X_SOURCE_H
#define GOMLX_CUDA_LAYER_X_SOURCE_H

static const char *const kCudaLayerXSource = R"CUDA(

// Where tc_dot finds, after x's n values in shared memory, each group's sum
// of x and 64 zero bytes (tc_finish_x).
__device__ __forceinline__ int tc_groups4(int n) { return (n / GS + 3) & ~3; }
__device__ __forceinline__ float *tc_xsum(u16 *xp, int n) {
    return reinterpret_cast<float *>(reinterpret_cast<unsigned char *>(xp) + ((2 * n + 15) & ~15));
}
__device__ __forceinline__ V4 *tc_zero(u16 *xp, int n) {
    return reinterpret_cast<V4 *>(tc_xsum(xp, n) + tc_groups4(n));
}

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
// into their group's sum; then the zeros. Every thread of the block calls it.
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

#ifndef NWP
#define NWP 0
#endif
// Asks L1 for the line of run c of a norm's weights w1 and w2 (either may
// be null): with NWP, the pass over x does, so that the normed pass after
// the block's sum finds them there instead of waiting a trip to L2.
__device__ __forceinline__ void prefetch_weight_runs(const u16 *w1, const u16 *w2, int c) {
#if NWP
    if (w1) prefetch_l1(w1 + 8 * c);
    if (w2) prefetch_l1(w2 + 8 * c);
#else
    (void)w1, (void)w2, (void)c;
#endif
}

// x's n elements (a multiple of 8), 16 bytes a load, into xs as they are;
// this thread's sum of their squares (with NWP, each run of w1 and w2
// asked of L1 beside x's). A thread keeps to the runs of 8 it loaded here
// (runs c = thread, thread + LT, ...) until the next __syncthreads, so it
// may rewrite them in place.
__device__ __forceinline__ float runs_to_shared(const u16 *x, bool x_cg, u16 *xs, int n, const u16 *w1 = nullptr,
                                               const u16 *w2 = nullptr) {
    const bool aligned = aligned16(x);
    float ss = 0.f;
    for (int c = threadIdx.x; c < n / 8; c += LT) {
        prefetch_weight_runs(w1, w2, c);
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

// x's n values into xs, a run of 8 a thread at a time as make(c, words)
// gives run c: with PERM for tensor cores (tc_runs_to_shared), else as
// they are.
template <bool PERM, class Make>
__device__ __forceinline__ void make_runs(u16 *xs, int n, Make make) {
    if (PERM) {
        tc_runs_to_shared(xs, n, make);
        return;
    }
    for (int c = threadIdx.x; c < n / 8; c += LT) {
        u32 out[4];
        make(c, out);
        *(V4 *)(xs + 8 * c) = V4{out[0], out[1], out[2], out[3]};
    }
}

// This thread's runs of xs normed in place as MLX's rms_norm rounds them:
// v * inv rounded, times w, rounded (with PERM, in tc_pos order, which
// stays within a run).
template <bool PERM>
__device__ __forceinline__ void norm_runs_in_place(u16 *xs, const u16 *w, float inv, int n) {
    make_runs<PERM>(xs, n, [&](int c, u32(&out)[4]) { normed_run(xs, w, c, inv, out); });
}

#ifndef LN
#define LN 0
#endif
#if LN && (GEMMA || XT)
#error "LN is for bfloat16 (x * w unscaled could overflow float16) without Gemma 2's post-norms (slower there)"
#endif
#if LN
// With LN (bfloat16, not Gemma 2) norm_to_shared stages x * w rounded, in
// one pass, and leaves each warp's sum of the squares of x in part; the
// products over it are scaled by norm_scale() afterwards, since
// rms_norm(x) * w = (x * w) * rsqrt(mean(x^2) + eps). The dot no longer
// waits for the block's sum and a second pass over xs; the price is one
// rounding of x * w where MLX rounds x * inv, then its product with w.
__device__ __forceinline__ void weighted_run(const u16 *x, bool x_cg, bool aligned, const u16 *w, int c, float &ss,
                                             u32 (&out)[4]) {
    const V4 v = load_run(x + 8 * c, x_cg, aligned), wv = load16(w + 8 * c, true);
    const u32 xw[4] = {v.x, v.y, v.z, v.w}, ww[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float a = half_at(xw[i], 0), b = half_at(xw[i], 1);
        ss += a * a + b * b;
        out[i] = (u32)store_half(a * half_at(ww[i], 0)) | (u32)store_half(b * half_at(ww[i], 1)) << 16;
    }
}
#endif

// The scale a normed phase's products take: rsqrt(mean(x^2) + eps) from
// the warps' sums norm_to_shared left in part with LN (every lane of the
// warp calls it), else 1 (x itself was normed).
__device__ __forceinline__ float norm_scale(const float *part, int n, float eps) {
#if LN
    return rsqrtf(part_total(part) / (float)n + eps);
#else
    (void)part, (void)n, (void)eps;
    return 1.f;
#endif
}

// xs = rms_norm(x) * w as MLX's rms_norm rounds it: x * rsqrt(mean(x^2) + eps)
// rounded, times w, rounded (with PERM, in tc_pos order); with LN, x * w
// (above). x is read once.
template <bool PERM = false>
__device__ void norm_to_shared(const u16 *x, bool x_cg, const u16 *w, u16 *xs, int n, float eps,
                               float *part) {
#if LN
    (void)eps;
    const bool aligned = aligned16(x);
    float ss = 0.f;
    make_runs<PERM>(xs, n, [&](int c, u32(&out)[4]) { weighted_run(x, x_cg, aligned, w, c, ss, out); });
    warp_sums_to_part(ss, part);
#else
    const float inv = rsqrtf(block_sum(runs_to_shared(x, x_cg, xs, n, w), part) / (float)n + eps);
    norm_runs_in_place<PERM>(xs, w, inv, n);
    __syncthreads();
#endif
}

// xs = x (n elements, a multiple of 8, by default written by other blocks
// of this kernel, x_cg; with PERM, in tc_pos order).
template <bool PERM = false>
__device__ void copy_to_shared(const u16 *x, u16 *xs, int n, bool x_cg = true) {
    const bool aligned = aligned16(x);
    if (PERM)
        tc_runs_to_shared(xs, n, [&](int c, u32(&out)[4]) {
            const V4 v = load_run(x + 8 * c, x_cg, aligned);
            out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
        });
    else
        for (int c = threadIdx.x; c < n / 8; c += LT) *(V4 *)(xs + 8 * c) = load_run(x + 8 * c, x_cg, aligned);
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
    const float inv = rsqrtf(block_sum(runs_to_shared(p, true, xs, n, pw, nw), part) / (float)n + eps);
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
)CUDA";

#endif
