#!/usr/bin/env python3
"""How fast the layer kernel's decomposition could be: its phases with nothing but their data movement.

The layer kernel (src/mlx/cuda_layer_source.h) runs a decoder layer as five
phases on a grid of one 512-thread block an SM. Each block streams its share
of the phase's weights (16-byte loads into registers), writes its slice of
the phase's output, passes a grid-wide barrier (cuda_layer_sync_source.h's
grid_sync: a release-add, acquire polls, the block barrier) and loads the
whole vector the next phase needs through L2. This probe runs a cycle of such
phases (a layer's: each its vector's words, the weight bytes a block streams,
optionally a wait standing for the attention's chain and FMAs standing for
the products' arithmetic) with that data movement and nothing else, in six
ways:

  bar        the barrier and the weights, no vector
  bardata    the layer kernel's scheme: the floor of its decomposition
  ll         no barrier: NCCL's "LL" protocol, a 4-byte flag beside every
             4-byte word in one 8-byte store (single-copy atomic), the
             consumer polling the data itself until every flag is this phase's
  bulkearly  each phase's weights copied into shared memory by the copy engine
             (cp.async.bulk), asked for as soon as the block has read the last
             phase's: during the barrier
  ring3/6    warp 15 streams every phase's weights, one phase after the next,
             through 3 or 6 slots of 32 KB of shared memory (full and empty
             mbarriers), never waiting for a grid barrier; warps 0-14 run the
             phases (a warp-specialized kernel's data movement)

Every mode but bar must end on the same sum (the same words and weights).

    tools/gpu_sync_probe.py --cubin OUT.cubin       # compile for sm_90 (the NVRTC wheel; no GPU)
    tools/gpu_sync_probe.py --run OUT.cubin --cycle llama=1536:67024,1536:0:5500,1536:40208,1536:214480,4096:107232
        [--work 0,16,...] [--phases N] [--reps R]

Prints ns a cycle per mode (median of R launches of N phases, the modes
alternating). docs/GPU.md, "The decomposition's floor", has the cycles of the
bench shapes and what they said.
"""
import argparse
import ctypes
import importlib.util
import statistics
import sys
from pathlib import Path

SOURCE = r"""
typedef unsigned int u32;
typedef unsigned long long u64;
#define LT 512
#define NWARPS (LT / 32)
#define MAXW 5504     // words of a phase's vector, at most
#define MAXB 262144   // weight bytes a block streams in a phase, at most
#define SLOT 32768    // the ring's slots
#define NC (LT - 32)  // the ring's consumer threads (warp 15 streams)

// A phase of the cycle: its vector's words, the weight bytes a block
// streams, and a wait (ns) standing for work that reads no weights (the
// attention's chain).
// work: dependent FMAs a thread spends on each 16 bytes of weights, standing
// for the products' arithmetic (0: the weights only summed). heavy: where
// not 0, only blocks below it stream wbytes; the others stream light bytes
// with as many of their warps as keep each thread's share the same (the
// tiles of a phase dealt unevenly over the SMs; register path only).
struct Phase { u32 words, wbytes, delay, work, heavy, light; };

// The bytes' sum, after `work` dependent FMAs that cannot change it.
__device__ __forceinline__ u32 mix(uint4 v, u32 work) {
    float f = __uint_as_float((v.x & 0x007fffffu) | 0x3f800000u); // in [1, 2)
    for (u32 i = 0; i < work; i++) f = fmaf(f, 0.9999f, 1e-4f);   // stays in [1, 2)
    return (v.x ^ v.y ^ v.z ^ v.w) + (f >= 2.f ? 1u : 0u);
}

__device__ __forceinline__ u64 gclock() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ void spin_ns(u32 ns) {
    if (!ns) return;
    const u64 until = gclock() + ns;
    while (gclock() < until) {}
}

__device__ __forceinline__ uint4 ld_cg16(const void *p) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

__device__ __forceinline__ uint4 ld_weights16(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// Two (word, flag) pairs; each 8-byte element is single-copy atomic.
__device__ __forceinline__ void ld_ll16(const void *p, u64 &a, u64 &b) {
    asm volatile("ld.relaxed.gpu.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p) : "memory");
}

__device__ __forceinline__ void st_ll8(void *p, u32 word, u32 flag) {
    const u64 v = (u64)word | ((u64)flag << 32);
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ u32 warp_sum(u32 v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The block barrier of the threads that run the phases: all 512, or the
// ring's 480 consumers (named barrier 1; the streaming warp is not there).
template <int N> __device__ __forceinline__ void team_sync() {
    if (N == LT) __syncthreads();
    else asm volatile("bar.sync 1, %0;" ::"n"(N) : "memory");
}

template <int N> __device__ __forceinline__ u32 team_sum(u32 v, u32 *part) {
    v = warp_sum(v);
    team_sync<N>();
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    team_sync<N>();
    const int lane = threadIdx.x & 31;
    return warp_sum(lane < N / 32 ? part[lane] : 0u);
}

// A wait of more than a second means a bug or a grid not all resident: the
// flag is raised and every later wait gives up at once, so the launch ends.
__device__ __forceinline__ bool gave_up(u32 *ctrl, u64 since) {
    if (*(volatile u32 *)(ctrl + 2)) return true;
    if (gclock() - since < 1000000000ull) return false;
    atomicExch(ctrl + 2, 1u);
    return true;
}

// As the layer kernel's grid_sync: the count only grows, a release-add, acquire polls.
template <int N> __device__ void grid_sync(u32 *ctrl, u32 &bar_n) {
    team_sync<N>();
    bar_n++;
    if (threadIdx.x == 0) {
        const u32 target = bar_n * gridDim.x;
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(ctrl) : "memory");
        const u64 since = gclock();
        for (u32 spins = 1;; spins++) {
            u32 n;
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(n) : "l"(ctrl) : "memory");
            if ((int)(n - target) >= 0) break;
            if ((spins & 255) == 0 && gave_up(ctrl, since)) break;
        }
    }
    team_sync<N>();
}

__device__ __forceinline__ u32 smem_addr(const void *p) { return (u32)__cvta_generic_to_shared(p); }

// n bytes at src into dst by the copy engine, completing on mbar (one
// warp, a piece a lane).
__device__ __forceinline__ void warp_bulk(unsigned char *dst, u64 *mbar, const unsigned char *src, u32 n) {
    const u32 lane = threadIdx.x & 31;
    if (lane == 0)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(mbar)), "r"(n)
                     : "memory");
    __syncwarp();
    const u32 piece = ((n / 16 + 31) / 32) * 16, at = lane * piece;
    if (at < n)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                     ::"r"(smem_addr(dst + at)), "l"(src + at), "r"(min(piece, n - at)), "r"(smem_addr(mbar))
                     : "memory");
}

__device__ __forceinline__ void wait_parity(u32 *ctrl, u64 *mbar, u32 parity) {
    const u64 since = gclock();
    for (u32 done = 0, spins = 1; !done; spins++) {
        if ((spins & 255) == 0 && gave_up(ctrl, since)) break;
        asm volatile("{ .reg .pred P; mbarrier.try_wait.parity.shared::cta.b64 P, [%1], %2; selp.u32 %0, 1, 0, P; }"
                     : "=r"(done) : "r"(smem_addr(mbar)), "r"(parity) : "memory");
    }
}

template <int N> __device__ __forceinline__ u32 smem_sum(const unsigned char *at, u32 n, u32 work) {
    u32 w = 0;
#pragma unroll 4
    for (u32 k = threadIdx.x; k < n / 16; k += N) {
        w += mix(*reinterpret_cast<const uint4 *>(at + 16 * k), work);
    }
    return w;
}

// The block's share of phase p's weights: contiguous, anywhere in the buffer.
__device__ __forceinline__ const unsigned char *share(const void *weights, u64 wsize, u32 p) {
    return reinterpret_cast<const unsigned char *>(weights) +
           (((u64)p * gridDim.x + blockIdx.x) * MAXB) % (wsize - MAXB);
}

// The words a block writes in a phase, from the sum so far.
__device__ __forceinline__ u32 word_of(u32 acc, u32 i, u32 phase) { return acc * 2654435761u + i * 40503u + phase; }

// Write the block's slice of phase p's vector, pass the grid barrier, load
// the whole vector and sum it (every load asked for at once).
template <int N> __device__ __forceinline__ u32 exchange(u32 *ctrl, u32 &bar_n, u32 *data, u32 p, u32 W, u32 mine,
                                                         u32 *part) {
    const u32 G = gridDim.x, b = blockIdx.x, t = threadIdx.x;
    const u32 lo = (u32)((u64)b * W / G), hi = (u32)((u64)(b + 1) * W / G);
    u32 *v = data + (u64)p * MAXW;
    for (u32 i = lo + t; i < hi; i += N) v[i] = word_of(mine, i, p);
    grid_sync<N>(ctrl, bar_n);
    uint4 q[(MAXW + 4 * N - 1) / (4 * N)];
#pragma unroll
    for (int k = 0; k < (MAXW + 4 * N - 1) / (4 * N); k++) {
        const u32 i = 4 * (t + k * N);
        q[k] = i < W ? ld_cg16(v + i) : make_uint4(0, 0, 0, 0);
    }
    u32 s = 0;
#pragma unroll
    for (int k = 0; k < (MAXW + 4 * N - 1) / (4 * N); k++) s += q[k].x + q[k].y + q[k].z + q[k].w;
    return team_sum<N>(s, part);
}

// The same with a flag beside every word instead of the barrier.
__device__ __forceinline__ u32 exchange_ll(u32 *ctrl, u32 *data, u32 p, u32 W, u32 mine, u32 flag, u32 *part) {
    const u32 G = gridDim.x, b = blockIdx.x, t = threadIdx.x;
    const u32 lo = (u32)((u64)b * W / G), hi = (u32)((u64)(b + 1) * W / G);
    u64 *v = reinterpret_cast<u64 *>(data) + (u64)p * MAXW;
    for (u32 i = lo + t; i < hi; i += LT) st_ll8(v + i, word_of(mine, i, p), flag);
    u64 a[6], c[6];
#pragma unroll
    for (int k = 0; k < 6; k++) {
        const u32 i = 2 * (t + k * LT);
        if (i < W) ld_ll16(v + i, a[k], c[k]);
        else a[k] = c[k] = (u64)flag << 32;
    }
    u32 s = 0;
#pragma unroll
    for (int k = 0; k < 6; k++) {
        const u64 since = gclock();
        for (u32 spins = 1; (u32)(a[k] >> 32) != flag || (u32)(c[k] >> 32) != flag; spins++) {
            ld_ll16(v + 2 * (t + k * LT), a[k], c[k]);
            if ((spins & 255) == 0 && gave_up(ctrl, since)) break;
        }
        s += (u32)a[k] + (u32)c[k];
    }
    return team_sum<LT>(s, part);
}

__device__ __forceinline__ void grid_end(u32 *ctrl, u32 &bar_n, u64 *out, u64 t0, u32 acc) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = gclock() - t0;
        out[1] = acc;
    }
    grid_sync<LT>(ctrl, bar_n);
    if (threadIdx.x == 0 && atomicAdd(ctrl + 1, 1u) == gridDim.x - 1) {
        atomicExch(ctrl, 0u);
        atomicExch(ctrl + 1, 0u);
    }
}

// bulkearly: the weights of the first phase from p on that has any.
__device__ __forceinline__ void bulk_next(unsigned char *stage, u64 *mbar, const void *weights, u64 wsize,
                                          const Phase *cycle, u32 ncycle, u32 nphases, u32 p) {
    for (u32 k = 0; k < ncycle && p + k < nphases; k++) {
        const u32 wb = cycle[(p + k) % ncycle].wbytes;
        if (wb) {
            warp_bulk(stage, mbar, share(weights, wsize, p + k), wb);
            return;
        }
    }
}

// Modes: 0 the barrier alone (no vector), 1 bardata (our scheme: weights by
// registers, 16 bytes a thread, four loads in flight), 2 ll, 3 bulkearly
// (a phase's weights by the copy engine into shared memory, asked for as
// soon as the block has read the last phase's: during its barrier).
extern "C" __global__ void __launch_bounds__(LT, 1)
probe(u32 *ctrl, u32 *data, const uint4 *weights, u64 wsize, u32 nphases, const Phase *cycle, u32 ncycle, u32 tag,
      u32 mode, u64 *out) {
    __shared__ u32 part[NWARPS];
    __shared__ u64 mbar;
    extern __shared__ __align__(128) unsigned char stage[];
    const u32 t = threadIdx.x;
    if (mode == 3 && t == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&mbar)) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    u32 bar_n = 0, acc = 0;
    grid_sync<LT>(ctrl, bar_n);
    const u64 t0 = gclock();
    u32 fills = 0;
    if (mode == 3 && t < 32) bulk_next(stage, &mbar, weights, wsize, cycle, ncycle, nphases, 0);
    for (u32 p = 0; p < nphases; p++) {
        const Phase ph = cycle[p % ncycle];
        u32 w = 0;
        if (mode == 3 && ph.wbytes) {
            wait_parity(ctrl, &mbar, fills++ & 1);
            w = smem_sum<LT>(stage, ph.wbytes, ph.work);
            __syncthreads(); // every thread has read the stage
            if (t < 32) bulk_next(stage, &mbar, weights, wsize, cycle, ncycle, nphases, p + 1);
        } else if (ph.wbytes) {
            // Four loads in flight a thread, then their arithmetic.
            const unsigned char *src = share(weights, wsize, p);
            const bool light = ph.heavy && blockIdx.x >= ph.heavy;
            const u32 n16 = (light ? ph.light : ph.wbytes) / 16;
            const u32 nt = light ? (u32)((u64)LT * ph.light / ph.wbytes + 31) / 32 * 32 : LT;
            for (u32 k = t; t < nt && k < n16; k += 4 * nt) {
                uint4 v[4];
#pragma unroll
                for (int j = 0; j < 4; j++)
                    v[j] = k + j * nt < n16 ? ld_weights16(src + 16 * (k + j * nt)) : make_uint4(0, 0, 0, 0);
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (k + j * nt < n16) w += mix(v[j], ph.work);
            }
        }
        spin_ns(ph.delay);
        const u32 mine = acc + team_sum<LT>(w, part);
        if (mode == 0) {
            grid_sync<LT>(ctrl, bar_n);
            acc = mine;
        } else if (mode == 2) {
            acc = exchange_ll(ctrl, data, p, ph.words, mine, tag + p, part);
        } else {
            acc = exchange<LT>(ctrl, bar_n, data, p, ph.words, mine, part);
        }
    }
    grid_end(ctrl, bar_n, out, t0, acc);
}

// The ring: warp 15 streams every phase's weights, one phase after the
// next, through `slots` slots of 32 KB of shared memory (a full and an empty
// mbarrier each), waiting only for a slot to be read, never for a grid
// barrier; warps 0-14 run the phases as bardata does, reading the slots.
extern "C" __global__ void __launch_bounds__(LT, 1)
probe_ring(u32 *ctrl, u32 *data, const uint4 *weights, u64 wsize, u32 nphases, const Phase *cycle, u32 ncycle,
           u32 slots, u64 *out) {
    __shared__ u32 part[NWARPS];
    __shared__ u64 full[8], empty[8];
    extern __shared__ __align__(128) unsigned char stage[];
    const u32 t = threadIdx.x;
    if (t == 0) {
        for (u32 s = 0; s < slots; s++) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&full[s])) : "memory");
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&empty[s])) : "memory");
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    u32 bar_n = 0, acc = 0;
    grid_sync<LT>(ctrl, bar_n);
    const u64 t0 = gclock();
    u32 q = 0; // slots filled (streaming warp) or read (the others) so far
    if (t >= NC) {
        for (u32 p = 0; p < nphases; p++) {
            const u32 wb = cycle[p % ncycle].wbytes;
            for (u32 at = 0; at < wb; at += SLOT, q++) {
                const u32 s = q % slots, use = q / slots;
                if (use > 0) wait_parity(ctrl, &empty[s], (use - 1) & 1);
                warp_bulk(stage + s * SLOT, &full[s], share(weights, wsize, p) + at, min((u32)SLOT, wb - at));
            }
        }
    } else {
        for (u32 p = 0; p < nphases; p++) {
            const Phase ph = cycle[p % ncycle];
            u32 w = 0;
            for (u32 at = 0; at < ph.wbytes; at += SLOT, q++) {
                const u32 s = q % slots;
                wait_parity(ctrl, &full[s], (q / slots) & 1);
                w += smem_sum<NC>(stage + s * SLOT, min((u32)SLOT, ph.wbytes - at), ph.work);
                team_sync<NC>(); // the slot is read
                if (t == 0) asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(&empty[s])) : "memory");
            }
            spin_ns(ph.delay);
            const u32 mine = acc + team_sum<NC>(w, part);
            acc = exchange<NC>(ctrl, bar_n, data, p, ph.words, mine, part);
        }
    }
    __syncthreads();
    grid_end(ctrl, bar_n, out, t0, acc);
}
"""


def compile_cubin(out):
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    if not spec or not spec.submodule_search_locations:
        sys.exit("gpu_sync_probe: nvidia-cuda-nvrtc-cu12 is not installed (requirements/test.txt)")
    lib = ctypes.CDLL(str(Path(list(spec.submodule_search_locations)[0]) / "lib" / "libnvrtc.so.12"))
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), SOURCE.encode(), b"probe.cu", 0, None, None) == 0
    opts = [b"--gpu-architecture=sm_90", b"--std=c++17", b"--ptxas-options=-v"]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    print(log.value.decode(errors="replace"))
    if rc != 0:
        sys.exit("compile failed")
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetCUBIN(prog, buf)
    Path(out).write_bytes(buf.raw)


class Cuda:
    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError:
            sys.exit("gpu_sync_probe: no NVIDIA driver here (libcuda.so.1); --run needs the GPU machine")
        self.ok(self.lib.cuInit(0))
        self.dev = ctypes.c_int()
        self.ok(self.lib.cuDeviceGet(ctypes.byref(self.dev), 0))
        self.ctx = ctypes.c_void_p()
        self.ok(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), self.dev))
        self.ok(self.lib.cuCtxSetCurrent(self.ctx))

    def ok(self, rc):
        if rc != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(rc, ctypes.byref(name))
            raise RuntimeError(f"CUDA error {rc} {name.value}")

    def attr(self, a):
        v = ctypes.c_int()
        self.ok(self.lib.cuDeviceGetAttribute(ctypes.byref(v), a, self.dev))
        return v.value

    def alloc(self, n):
        p = ctypes.c_uint64()
        self.ok(self.lib.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(n)))
        self.ok(self.lib.cuMemsetD8_v2(p, 0, ctypes.c_size_t(n)))
        return p.value


MAX_STAGE = 224 * 1024
MODES = {0: "bar", 1: "bardata", 2: "ll", 3: "bulkearly", 4: "ring3", 5: "ring6"}


def run(cubin, phases, reps, cycles):
    cu = Cuda()
    mod = ctypes.c_void_p()
    cu.ok(cu.lib.cuModuleLoadData(ctypes.byref(mod), Path(cubin).read_bytes()))
    fn, ring = ctypes.c_void_p(), ctypes.c_void_p()
    cu.ok(cu.lib.cuModuleGetFunction(ctypes.byref(fn), mod, b"probe"))
    cu.ok(cu.lib.cuModuleGetFunction(ctypes.byref(ring), mod, b"probe_ring"))
    # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: a phase's whole share (bulkearly), the ring's slots
    cu.ok(cu.lib.cuFuncSetAttribute(fn, 8, MAX_STAGE))
    cu.ok(cu.lib.cuFuncSetAttribute(ring, 8, 6 * 32768))
    sms = cu.attr(16)  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    name = ctypes.create_string_buffer(256)
    cu.lib.cuDeviceGetName(name, 256, cu.dev)
    print(f"# {name.value.decode()}, {sms} SMs, grid {sms} x 512 threads, {phases} phases a launch, "
          f"median of {reps} launches, alternating; ns per cycle of phases")
    ctrl = cu.alloc(64)
    data = cu.alloc(phases * 5504 * 8)
    wsize = 1 << 30
    weights = cu.alloc(wsize)
    out = cu.alloc(16)
    cyc = cu.alloc(64 * 24)
    tag = [0]

    def launch(mode, cycle):
        tag[0] += 1 << 16  # a flag no earlier launch wrote
        flat = (ctypes.c_uint32 * (6 * len(cycle)))(*[v for ph in cycle for v in ph])
        cu.ok(cu.lib.cuMemcpyHtoD_v2(ctypes.c_uint64(cyc), flat, ctypes.c_size_t(ctypes.sizeof(flat))))
        n = phases // len(cycle) * len(cycle)
        if mode >= 4:
            f, smem, last = ring, (3 if mode == 4 else 6) * 32768, ctypes.c_uint32(3 if mode == 4 else 6)
        else:
            f, smem, last = fn, (max(ph[1] for ph in cycle) if mode == 3 else 0), ctypes.c_uint32(tag[0])
        args = [ctypes.c_uint64(ctrl), ctypes.c_uint64(data), ctypes.c_uint64(weights), ctypes.c_uint64(wsize),
                ctypes.c_uint32(n), ctypes.c_uint64(cyc), ctypes.c_uint32(len(cycle)), last]
        if mode < 4:
            args.append(ctypes.c_uint32(mode))
        args.append(ctypes.c_uint64(out))
        params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args])
        cu.ok(cu.lib.cuLaunchKernel(f, sms, 1, 1, 512, 1, 1, smem, None, params, None))
        cu.ok(cu.lib.cuCtxSynchronize())
        res = (ctypes.c_uint64 * 2)()
        cu.ok(cu.lib.cuMemcpyDtoH_v2(res, ctypes.c_uint64(out), ctypes.c_size_t(16)))
        flag = (ctypes.c_uint32 * 3)()
        cu.ok(cu.lib.cuMemcpyDtoH_v2(flag, ctypes.c_uint64(ctrl), ctypes.c_size_t(12)))
        if flag[2]:
            raise RuntimeError(f"mode {MODES[mode]} timed out")
        return res[0] / (n // len(cycle)), res[1]

    print(f"{'cycle':>16} {'MB a cycle':>10} " + " ".join(f"{m:>9}" for m in MODES.values()) +
          "  sums   bardata's and ring6's read rates (GB/s)")
    for label, cycle in cycles:
        if cycle[0][3]:
            label += f" w{cycle[0][3]}"
        ns, sums = {}, {}
        for mode in MODES:
            launch(mode, cycle)  # warm-up
        for _ in range(reps):
            for mode in MODES:  # alternating, so drift hits every mode
                t, s = launch(mode, cycle)
                ns.setdefault(mode, []).append(t)
                sums[mode] = s
        med = {m: statistics.median(v) for m, v in ns.items()}
        agree = "agree" if len({sums[m] for m in MODES if m}) == 1 else f"DIFFER {sums}"
        mb = sum(ph[1] for ph in cycle) * sms
        print(f"{label:>16} {mb / 1e6:>10.2f} " + " ".join(f"{med[m]:>9.0f}" for m in MODES) +
              f"  {agree}  {mb / med[1]:6.0f} {mb / med[5]:6.0f}")


def parse_cycle(text, work=0):
    """LABEL=WORDS:BYTES[:DELAY_NS[:HEAVY:LIGHT]],... -> (label, [(words, bytes, delay, work, heavy, light)])"""
    label, _, spec = text.partition("=")
    cycle = []
    for ph in spec.split(","):
        f = [int(x) for x in ph.split(":")] + [0, 0, 0]
        words, wbytes, delay, heavy, light = f[:5]
        if heavy and (light % 16 or light > wbytes):
            sys.exit(f"bad phase {ph}: light bytes a multiple of 16, at most the heavy blocks'")
        if words % 4 or not 0 < words <= 5504 or wbytes % 16 or wbytes > MAX_STAGE:
            sys.exit(f"bad phase {ph}: words a multiple of 4 in 4..5504, bytes a multiple of 16 up to {MAX_STAGE}")
        cycle.append((words, wbytes, delay, work, heavy, light))
    return label, cycle


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cubin", help="compile the probe for sm_90 into this file")
    ap.add_argument("--run", help="run the probe from this cubin")
    ap.add_argument("--phases", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cycle", action="append", default=[], metavar="LABEL=WORDS:BYTES[:DELAY_NS[:HEAVY:LIGHT]],...",
                    help="phases run in turn (a layer's): each its vector's 4-byte words, the weight bytes "
                         "each block streams, a wait standing for work without weights, and optionally the "
                         "blocks below HEAVY streaming BYTES and the others LIGHT (tiles dealt unevenly)")
    ap.add_argument("--work", default="0", help="comma-separated FMAs a thread spends on 16 bytes of weights "
                    "(every cycle is run at each)")
    a = ap.parse_args()
    if a.cubin:
        compile_cubin(a.cubin)
    if a.run:
        works = [int(w) for w in a.work.split(",")]
        cycles = [parse_cycle(c, w) for w in works for c in (a.cycle or ["d=1536:196608"])]
        run(a.run, a.phases, a.reps, cycles)


if __name__ == "__main__":
    main()
