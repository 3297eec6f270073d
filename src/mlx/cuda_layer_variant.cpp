// cuda_layer_variant.cpp - which variant of the layer kernel a shape
// compiles to (cuda_layer_variant.h).
#include "mlx/cuda_layer_variant.h"

#include <algorithm>

#include "mlx/cuda_jit.h"

namespace gomlx::cuda_layer {
namespace {

using gomlx::cuda_jit::env_int;
using gomlx::cuda_jit::sm_count;

// Tuning knobs (A/B runs, docs/GPU.md): chunks a lane loads ahead (more
// than 1 measured slower on an H100, as did an L2 prefetch of the next
// phases' weights), rows per item in phases A (0: by shape, rows_a()) and
// D, fewest keys per attention chunk, keys a warp of it loads at once (0:
// by shape, keys_ahead()); the phase timestamps of
// tools/c/bench_cuda_layer.c; query heads a block combines at once and
// groups of a kv head's query heads in the attention (0: by shape).
const int kDotUnroll = env_int("GOMLX_CUDA_LAYER_U", 1, 1, 4);
const int kRowsAKnob = env_int("GOMLX_CUDA_LAYER_RA", 0, 2, 4);
const int kRowsD = env_int("GOMLX_CUDA_LAYER_RD", 4, 2, 4) == 2 ? 2 : 4;
const int kMinChunkKeys = env_int("GOMLX_CUDA_LAYER_KC", 32, 1, 4096);
const int kKeysAheadKnob = env_int("GOMLX_CUDA_LAYER_KK", 0, 1, 8);
const int kTiming = env_int("GOMLX_CUDA_LAYER_TIMING", 0, 0, 2);
// Phase A's idle warps prefetch the attention's keys and values into L2
// (-1: by shape, use_kvp(); 0/1 forces it off or on).
const int kKvPrefetch = env_int("GOMLX_CUDA_LAYER_KVP", -1, 0, 1);
const int kHeadsPerRoundKnob = env_int("GOMLX_CUDA_LAYER_RH", 0, 1, 8);
const int kHeadGroupsKnob = env_int("GOMLX_CUDA_LAYER_HS", 0, 1, 8);
// Tensor cores for phase D's products (sm_80+; 0: the FMA loop) and the
// warps that share one of its items (0: by shape, tc_team()).
const int kTensorCores = env_int("GOMLX_CUDA_LAYER_TC", 1, 0, 1);
const int kTcTeamKnob = env_int("GOMLX_CUDA_LAYER_TS", 0, 1, 4);
const int kTcResidualKnob = env_int("GOMLX_CUDA_LAYER_TCR", -1, 0, 2);
const int kTcResidualTeamKnob = env_int("GOMLX_CUDA_LAYER_TSR", 0, 1, 16);
// Phase A (q|k|v) on tensor cores (-1: by shape, use_tca(); 0/1 forces it
// off or on) and the warps that share one of its tiles (0: by shape,
// tca_team()).
const int kTcAKnob = env_int("GOMLX_CUDA_LAYER_TCA", -1, 0, 1);
const int kTcATeamKnob = env_int("GOMLX_CUDA_LAYER_TSA", 0, 1, 8);
// How the FMA loop's items are dealt (-1: by shape, deal_spread(); 0: a
// block's warps consecutive items; 1: consecutive items to consecutive
// blocks).
const int kDealKnob = env_int("GOMLX_CUDA_LAYER_DEAL", -1, 0, 1);
// Whether a team's warps on tensor cores take every n-th window of K
// (TCI), so that a round's loads are adjacent in each row, instead of a
// contiguous share each: decode on an H100 Llama-3.2-3B 669-670 -> 675-676
// tok/s, Qwen2.5-3B 607-613 -> 624, Mistral-7B 390 -> 396-397, Gemma-2-2B
// level (docs/bench/h100-2026-11-27-s18-interleaved.txt).
const int kTcInterleave = env_int("GOMLX_CUDA_LAYER_TCI", 1, 0, 1);
// Whether both product loops unpack a nibble pair with one lop3 and the
// exponent bits in a register (LOP) instead of two with immediates: a
// tensor-core window 591-600 -> 465-472 instructions; decode on an H200
// Llama-3.2-3B 740 -> 777 tok/s (with the mat-vec's LOP, cuda_qmv.cpp),
// Qwen2.5-3B 691 -> 727, Gemma-2-2B 671 -> 727, Mistral-7B 441 -> 468
// (docs/bench/h200-2026-11-28-s22-lop.txt).
const int kLop = env_int("GOMLX_CUDA_LAYER_LOP", 1, 0, 1);
// Whether tc_dot puts a bfloat16 nibble at the mantissa's bits 0..3
// (NIB0: a quarter fewer shifts) instead of 3..6: with LOP, decode
// Mistral-7B +0.5%, Llama-3.2-3B -1%, Qwen2.5-3B -1.4%, Gemma-2-2B level
// on an H200 (same record), so off.
const int kNib0 = env_int("GOMLX_CUDA_LAYER_NIB0", 0, 0, 1);
// Whether tc_dot leaves out the checks against K's end where every window
// of a K holds 8 groups (TCW: with TCI, K / GS a multiple of 8): a fifth
// of a window's integer instructions besides the unpacking. -1 by rule
// (whole_windows), else a mask of the Ks it may take: 1 hidden (phases A,
// D), 2 the heads' (C), 4 ff (E).
const int kTcWhole = env_int("GOMLX_CUDA_LAYER_TCW", -1, -1, 7);
// Loads a phase's chain waited for after its block's sum or its products,
// asked for before them: a norm's weights, into L1 in the pass over x
// (NWP), and phases C's and E's residual (RES0). A trip to L2 fewer in
// each: on an H200, decode Llama-3.2-3B 805-810 -> 825-828 tok/s,
// Qwen2.5-3B 739-742 -> 762, Gemma-2-2B 778-779 -> 785-787, Mistral-7B
// 511-513 -> 513-515 (twenty-fifth session,
// docs/bench/h200-2026-11-29-s25-early-loads.txt). RoPE's table of
// frequencies read before phase A's products too was level to 0.4% slower
// and left out.
const int kNormPrefetch = env_int("GOMLX_CUDA_LAYER_NWP", 1, 0, 1);
const int kResidualEarly = env_int("GOMLX_CUDA_LAYER_RES0", 1, 0, 1);
// The pre-norms of phases A and D applied to the products instead of x
// (LN, cuda_layer_x_source.h: x * w staged in one pass, the products
// scaled by rsqrt(mean(x^2) + eps) after them): 0.5-1.5% more decode on
// the H200 (twenty-seventh session). bfloat16 models without Gemma 2's
// post-norms only: x * w unscaled could overflow float16, and done the
// same way inside Gemma 2's post_norm_add it measured slower (docs/GPU.md).
const int kLateNorm = env_int("GOMLX_CUDA_LAYER_LN", 1, 0, 1);
// Tiles past the grid's last full round dealt as 8-row halves, a mask:
// 1 phases C and E (HALF, tc_residual_rows), 2 phase A (HALF_A),
// each by shape (use_half); with GOMLX_CUDA_LAYER_HALF_ALL=1 wherever the
// phase is on tensor cores (the tests). Both by default: Llama-3.2-3B
// decodes 1.6-1.9% faster, Gemma-2-2B 0.2-0.5% (twenty-ninth session).
const int kHalfKnob = env_int("GOMLX_CUDA_LAYER_HALF", 3, 0, 3);
const int kHalfAll = env_int("GOMLX_CUDA_LAYER_HALF_ALL", 0, 0, 1);

// Warps that share one of phase D's tensor-core items (8 gate rows and
// their up rows), each taking a share of K: 2 where there are at most
// half as many items as warps.
int tc_team(const Dims &d) {
    if (kTcTeamKnob) return kTcTeamKnob == 3 ? 2 : kTcTeamKnob;
    return d.ff / 8 <= sm_count() * kWarps / 2 ? 2 : 1;
}

// Whether phase D runs on tensor cores (items of 8 gate rows: ff a multiple
// of 8): Qwen2.5-3B +4%, Mistral-7B +6% decode on an H100 (ninth session).
// Llama-3.2-3B's 1024 items, shared by teams of 2 warps, measured -1.4%
// then; with the eleventh session's barrier and norms they are +1-2%
// (590-594 against 579-588 tok/s alternating, phase D 15.9 against 16.2
// us; teams of 1 or 4 slower: docs/bench/h100-2026-11-27-s12-tc.txt).
// Where x for tensor cores would not fit 48 KB of shared memory (widths
// over ~21000), the FMA loop.
int tc_shared_bytes(const Dims &d) {
    const int elems = std::max({d.hidden, d.n_heads * d.head_dim, d.ff});
    return tc_x_shared_bytes(elems, d.gs) + 4 * 64 * kWarps; // then the teams' sums (tc_finish_x)
}
int use_tc(const Dims &d) {
    return kTensorCores && d.ff % 8 == 0 && tc_shared_bytes(d) <= kMaxSharedBytes ? 1 : 0;
}

// Whether phase A (q|k|v, RoPE) runs on tensor cores: tiles of 8 rotation
// pairs or 16 v rows (head dim a multiple of 16). By shape where the FMA
// loop's lanes would take three or more rounds of loads a row (hidden over
// 2048): on an H100, decode Mistral-7B 379 -> 392 tok/s, Gemma-2-2B 604 ->
// 621, Llama-3.2-3B 639 -> 643; Qwen2.5-3B's two rounds were faster than
// its tiles (594 against 576, docs/bench/h100-2026-11-27-s14-tca.txt), and
// level since the group sums and interleaved windows (phase 5.4 -> 5.6 us,
// docs/bench/h100-2026-11-28-s21-knobs.txt).
int use_tca(const Dims &d) {
    if (!kTensorCores || kTcAKnob == 0 || d.head_dim % 16 || tc_shared_bytes(d) > kMaxSharedBytes) return 0;
    return kTcAKnob == 1 || (d.hidden + 1023) / 1024 >= 3 ? 1 : 0;
}

// The largest power of two at most n (n >= 1): a team size from a knob.
int pow2_floor(int n) {
    int p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}

// The most warps (a power of two, at most `most`) that can share each of
// `tiles` tiles while every tile still gets a team in one round of the
// grid, so that a warp's share of the weights is as small as it can be.
int one_round_team(int tiles, int most) {
    int team = 1;
    while (team < most && tiles <= sm_count() * kWarps / (2 * team)) team *= 2;
    return team;
}

// Warps that share one of phase A's tiles, each a share of K (1, 2, 4, 8).
int tca_team(const Dims &d) {
    if (kTcATeamKnob) return pow2_floor(kTcATeamKnob);
    return one_round_team((d.n_heads + 2 * d.n_kv) * d.head_dim / 16, 8);
}

// Warps that share a 16-row tile of phase C (o-proj, K = q width) or E
// (down, K = ff), added to the residual, on tensor cores; 0: the FMA loop.
// A tile's team is the most warps (up to 16) that still give every tile a
// team in one round of the grid. Phase C takes teams of up to 8 (Llama-3.2-3B
// 192 tiles, Qwen2.5-3B 128, Mistral-7B 256, Gemma-2-2B 144: 8): on an H100,
// o-proj 6.6-6.9 -> 5.9 us, 5.6-5.7 -> 3.8, 8.5 -> 6.8-6.9, decode
// Llama-3.2-3B 671-683.5 -> 690-697 tok/s, Qwen2.5-3B 628-632 -> 651-657
// (twentieth session, docs/bench/h100-2026-11-28-s20-tc-oproj.txt; teams of
// 16 for Qwen2.5-3B's 128 tiles: 725 -> 710 tok/s on an H200). Phase E
// takes teams where each warp's share of K is at least 8 groups:
// Qwen2.5-3B's down in teams of 16 (13.8 -> 10.9 us on an H100),
// Llama-3.2-3B's in teams of 8 (10.5 -> 9.5 us, decode 632-641 -> 651.5
// tok/s; docs/bench/h100-2026-11-27-s14-tcr-teams.txt). Gemma-2-2B kept
// the FMA loop for both phases and Mistral-7B for E (28 groups a warp),
// measured slower, until a nibble pair took one lop3 (LOP): then
// on an H200 with C and E in teams of 8, Gemma-2-2B 725-726 -> 734-735
// tok/s, Mistral-7B 468 -> 489 (E alone 481-482; twenty-second session,
// docs/bench/h200-2026-11-28-s22-lop.txt).
// GOMLX_CUDA_LAYER_TCR=1/0 forces both on or off, 2 phase E alone on;
// forced on, GOMLX_CUDA_LAYER_TSR sets the team.
int use_tcr(const Dims &d, int K, bool phase_e) {
    if (!kTensorCores || kTcResidualKnob == 0 || d.hidden % 16) return 0;
    const int team = one_round_team(d.hidden / 16, kWarps);
    if (kTcResidualKnob == 1 || (kTcResidualKnob == 2 && phase_e))
        return kTcResidualTeamKnob ? pow2_floor(kTcResidualTeamKnob) : team;
    if (phase_e) return K / (team * d.gs) >= 8 ? team : 0;
    return kTcResidualKnob == 2 ? 0 : one_round_team(d.hidden / 16, 8);
}
int use_tcr_c(const Dims &d) { return use_tcr(d, d.n_heads * d.head_dim, false); }
int use_tcr_e(const Dims &d) { return use_tcr(d, d.ff, true); }

// Whether tc_dot may take every tensor-core window over K as whole (8
// groups; windows start every 8 groups from 0 with TCI, tc_share). By
// rule on for hidden and ff, and for the heads' K (phase C) where more
// than half of C's team has a window: on an H200 decode Llama-3.2-3B 771
// -> 786-790 tok/s (6 windows for a team of 8), Mistral-7B 489 -> 510-514
// (8 windows), of which C's whole windows 1.2-1.4%; but Gemma-2-2B
// (4 windows) 733 -> 726-729 with C's windows whole and level without,
// Qwen2.5-3B (4) level (twenty-third session,
// docs/bench/h200-2026-11-28-s23-tcw.txt). Why a half-idle team loses is
// not known; the rule is what was measured.
int whole_windows(const Dims &d, int K, int mask_bit) {
    if (!kTcInterleave || (K / d.gs) % 8) return 0;
    if (kTcWhole >= 0) return kTcWhole & mask_bit ? 1 : 0;
    if (mask_bit != 2) return 1;
    const int team = use_tcr_c(d);
    return team && 2 * (K / (8 * d.gs)) > team ? 1 : 0;
}

// Whether phase A's warps left without an item prefetch the attention's
// keys and values into L2. The attention's keys then came 0.3-0.4 us
// sooner on an H100 (600 keys, every shape), but the extra HBM reads slowed
// a phase A that streams much (Llama-3.2-3B's 8.8 MB 9.0 -> 9.6 us,
// Mistral-7B's 14 MB 10.4 -> 11.6; decode -2% and -1%, whichever warps or
// how many asked), not one with room (Qwen2.5-3B's 3 MB, decode 588-591 ->
// 594-595 tok/s; Gemma-2-2B's 5.3 MB, 619-622 -> 626-628);
// docs/bench/h100-2026-11-27-s15-kv-prefetch.txt. So by shape where phase
// A's weights are at most 6 MB.
int use_kvp(const Dims &d) {
    if (kKvPrefetch >= 0) return kKvPrefetch;
    const double qkv_bytes = (double)(d.n_heads + 2 * d.n_kv) * d.head_dim * d.hidden * (0.5 + 4.0 / d.gs);
    return qkv_bytes <= 6e6;
}

// Keys a warp of the attention loads before using any: 3 where a lane
// holds at most 4 elements of a head (head dim <= 128), else 2. With 600
// keys on an H100, 3 took a round of loads from the warps of a 38-key
// chunk (Llama-3.2-3B's keys done 3.8 -> 3.5 us); decode, alternating:
// Llama-3.2-3B 682-683 -> 684-686.5 tok/s, Mistral-7B 399 -> 400-400.5,
// Qwen2.5-3B level (634-635 against 633-636), Gemma-2-2B's head dim 256
// slower (655-656 -> 648-650); docs/bench/h100-2026-11-28-s19-attention.txt.
int keys_ahead(const Dims &d) {
    if (kKeysAheadKnob) return kKeysAheadKnob;
    return d.head_dim <= 128 ? 3 : 2;
}

// Rows a warp's item takes in phase A (q|k|v): 4, unless 4-row items would
// leave more than half the grid's warps idle while 2-row items still fit
// in one round (Qwen2.5-3B's 2560 rows on an H100: 376 against 337 tok/s;
// Llama-3.2-3B's 5120 and Mistral-7B's 6144 are faster with 4).
int rows_a(const Dims &d) {
    if (kRowsAKnob) return kRowsAKnob == 2 ? 2 : 4;
    const int rows = (d.n_heads + 2 * d.n_kv) * d.head_dim, warps = sm_count() * kWarps;
    return rows / 2 <= warps && rows / 4 < warps / 2 ? 2 : 4;
}

// Whether a phase of `items` FMA-loop items deals them to the blocks in
// turn rather than a block's warps taking consecutive ones: where they are
// at most 5/8 of the grid's warps, so that dealt a block at a time they
// would leave 3/8 of the SMs idle. On an H100 (alternating, decode tok/s):
// Gemma-2-2B, whose o-proj and down projection have 1152 items for 2112
// warps, 618-628 -> 642-649; spreading Llama-3.2-3B's 1536 items cost 1%
// (672 -> 665) and Mistral-7B's 2048 5% (391 -> 373)
// (docs/bench/h100-2026-11-27-s17-deal.txt). Qwen2.5-3B's 1280-item q|k|v
// (61%): level on that H100 with its o-proj spread too, +0.6-0.7% alone
// on an H200 in the twenty-eighth session (767.9-768.4 -> 771.9-773.2,
// docs/bench/h200-2026-11-29-s28-deal.txt), when the bound moved from 60%.
int deal_spread(int items) {
    if (kDealKnob >= 0) return kDealKnob;
    return items * 8 <= sm_count() * kWarps * 5 ? 1 : 0;
}

// Groups a kv head's query heads are split into in the attention, a block
// taking one group's chunk of keys: the most that divide them while every
// group still gets a chunk of keys from each of 16 blocks (Qwen2.5-3B's 2
// kv heads with 8 query heads each: 4 groups of 2; kv heads >= 8: 1), at
// most kMaxKv groups in all (their arrival counters).
int head_groups(const Dims &d) {
    const int rep = d.n_heads / d.n_kv;
    if (kHeadGroupsKnob)
        return rep % kHeadGroupsKnob == 0 && d.n_kv * kHeadGroupsKnob <= kMaxKv ? kHeadGroupsKnob : 1;
    int best = 1;
    for (int g = 2; g <= rep; g++)
        if (rep % g == 0 && d.n_kv * g * 16 <= sm_count() && d.n_kv * g <= kMaxKv) best = g;
    return best;
}

// Query heads of a block's group whose attention sums it combines across
// its warps at once (one __syncthreads pair a round): as many as 48 KB of
// shared memory hold, at most all of them.
int heads_per_round(const Dims &d) {
    const int rep = d.n_heads / d.n_kv / head_groups(d);
    const int fit = kMaxSharedBytes / (4 * kWarps * (d.head_dim + 2));
    const int want = kHeadsPerRoundKnob ? kHeadsPerRoundKnob : rep;
    return std::max(1, std::min({want, rep, fit}));
}

// Whether a tensor-core phase of `tiles` 16-row tiles deals those left
// after the grid's full rounds as 8-row halves: where they are at most
// half the grid, no block then streams a whole tile more than another
// (Llama-3.2-3B's and Gemma-2-2B's 192 and 144 hidden tiles on 132 SMs:
// 1.5 tiles a block at most instead of 2; Llama-3.2-3B's 320 q|k|v tiles
// 2.5 instead of 3, Qwen2.5-3B's 160 1.5 instead of 2 where its phase A
// is on tensor cores). A half tile costs ~1.4x the instructions a byte
// (A's rows g + 8 zeros, docs/GPU.md). In the probe of the layer's data
// movement the uneven tiles cost Llama-3.2-3B's layer 0.35-1.1 us
// (twenty-eighth session). bit: the knob's bit for the phase.
int use_half(int bit, bool tensor_cores, int tiles) {
    if (!(kHalfKnob & bit) || !tensor_cores) return 0;
    if (kHalfAll) return 1;
    const int grid = sm_count(), rest = tiles % grid;
    return tiles >= grid && rest > 0 && 2 * rest <= grid ? 1 : 0;
}

} // namespace

// x staged as 16-bit values, or per warp some heads' attention sums.
int shared_bytes(const Dims &d) {
    const int elems = std::max({d.hidden, d.n_heads * d.head_dim, d.ff});
    const int tc = use_tc(d) || use_tca(d) || use_tcr_c(d) || use_tcr_e(d) ? tc_shared_bytes(d) : 0;
    return std::max({2 * elems, 4 * kWarps * (d.head_dim + 2) * heads_per_round(d), tc});
}

std::vector<std::string> variant_defines(const Dims &d, int n) {
    return {"NL=" + std::to_string(n),
            "XT=" + std::to_string(d.half), "GS=" + std::to_string(d.gs), "HD=" + std::to_string(d.head_dim),
            "REP=" + std::to_string(d.n_heads / d.n_kv), "HAS_BIAS=" + std::to_string(d.bias),
            "ROPE_TRAD=" + std::to_string(d.trad), "LT=" + std::to_string(kThreads),
            "DOT_U=" + std::to_string(kDotUnroll), "ROWS_A=" + std::to_string(rows_a(d)),
            "ROWS_D=" + std::to_string(kRowsD), "KC=" + std::to_string(kMinChunkKeys),
            "KK=" + std::to_string(keys_ahead(d)),
            "HS=" + std::to_string(head_groups(d)), "RH=" + std::to_string(heads_per_round(d)),
            "TIMING=" + std::to_string(kTiming), "TC=" + std::to_string(use_tc(d)),
            "TS=" + std::to_string(tc_team(d)), "TCA=" + std::to_string(use_tca(d)),
            "TSA=" + std::to_string(tca_team(d)), "TCR_C=" + std::to_string(use_tcr_c(d)),
            "TCR_E=" + std::to_string(use_tcr_e(d)), "GEMMA=" + std::to_string(d.gemma),
            "KVP=" + std::to_string(use_kvp(d)),
            "DEAL_A=" + std::to_string(use_tca(d) ? 0 : deal_spread((d.n_heads + 2 * d.n_kv) * d.head_dim / rows_a(d))),
            "DEAL_C=" + std::to_string(use_tcr_c(d) ? 0 : deal_spread(d.hidden / 2)),
            "DEAL_E=" + std::to_string(use_tcr_e(d) ? 0 : deal_spread(d.hidden / 2)),
            "TCI=" + std::to_string(kTcInterleave), "LOP=" + std::to_string(kLop),
            "NIB0=" + std::to_string(kNib0),
            "TCW_H=" + std::to_string(whole_windows(d, d.hidden, 1)),
            "TCW_Q=" + std::to_string(whole_windows(d, d.n_heads * d.head_dim, 2)),
            "TCW_F=" + std::to_string(whole_windows(d, d.ff, 4)), "NWP=" + std::to_string(kNormPrefetch),
            "RES0=" + std::to_string(kResidualEarly),
            "LN=" + std::to_string(kLateNorm && !d.half && !d.gemma ? 1 : 0),
            "HALF=" + std::to_string(use_half(1, use_tcr_c(d) || use_tcr_e(d), d.hidden / 16)),
            "HALF_A=" + std::to_string(use_half(2, use_tca(d), (d.n_heads + 2 * d.n_kv) * d.head_dim / 16))};
}

int tc_x_shared_bytes(int n, int gs) { return ((2 * n + 15) & ~15) + 4 * ((n / gs + 3) & ~3) + 64; }

} // namespace gomlx::cuda_layer
