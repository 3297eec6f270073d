// cuda_common_source.h - CUDA C helpers our NVRTC-compiled kernels share
// (cuda_qmv_source.h, cuda_layer_source.h): bfloat16/float16 conversions,
// the warp sum and the 16-byte load, as inline PTX so no CUDA toolkit
// header is needed. XT picks the activation dtype (0 bfloat16, 1 float16).
#ifndef GOMLX_CUDA_COMMON_SOURCE_H
#define GOMLX_CUDA_COMMON_SOURCE_H

static const char *const kCudaCommonSource = R"CUDA(
typedef unsigned int u32;
typedef unsigned short u16;
struct alignas(16) V4 { u32 x, y, z, w; };

__device__ __forceinline__ float bits_to_float(u32 u) {
    float f;
    asm("mov.b32 %0, %1;" : "=f"(f) : "r"(u));
    return f;
}

__device__ __forceinline__ u32 float_to_bits(float f) {
    u32 u;
    asm("mov.b32 %0, %1;" : "=r"(u) : "f"(f));
    return u;
}

// Element i (0 or 1) of a pair packed in a 32-bit word, as float32.
__device__ __forceinline__ float half_at(u32 pair, int i) {
    u16 h = (u16)(i ? pair >> 16 : pair & 0xffffu);
#if XT == 0
    return bits_to_float((u32)h << 16);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

__device__ __forceinline__ float load_half(const u16 *p) {
    return half_at((u32)*p, 0);
}

// Round to nearest even, as MLX's cast from float32 does.
__device__ __forceinline__ u16 store_half(float f) {
#if XT == 0
    u32 u = float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
#else
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float other;
        asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(other) : "f"(v), "r"(o));
        v += other;
    }
    return v;
}

// 16 bytes at p, as one vector load when p is 16-byte aligned (MLX's own
// buffers are; a view into one may start anywhere), else element by element.
__device__ __forceinline__ V4 load16(const u16 *p, bool aligned) {
    if (aligned) { // through the read-only path, as __ldg would
        V4 v;
        asm("{ .reg .u64 g; cvta.to.global.u64 g, %4; ld.global.nc.v4.u32 {%0, %1, %2, %3}, [g]; }"
            : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
            : "l"(p));
        return v;
    }
    u32 e[8];
#pragma unroll
    for (int i = 0; i < 8; i++) e[i] = p[i];
    return V4{e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16};
}

// The 32 values of x in four 16-byte chunks as float32; returns their sum.
__device__ __forceinline__ float unpack_x32(const V4 (&v)[4], float (&xf)[32]) {
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const u32 p[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            xf[i * 8 + 2 * k] = half_at(p[k], 0);
            xf[i * 8 + 2 * k + 1] = half_at(p[k], 1);
            sum += xf[i * 8 + 2 * k] + xf[i * 8 + 2 * k + 1];
        }
    }
    return sum;
}

#ifndef LOP // the default (cuda_layer_variant.cpp, cuda_qmv.cpp)
#define LOP 1
#endif

// Nibble k of w (bits 4k..4k+3) moved to bits 19..22, the top of a float's
// mantissa, OR-ed into 16.0f (one: its bits): 16 + q. With LOP (one a
// register ptxas cannot fold) the mask and the OR are one lop3; with both
// as immediates ptxas emits two (SASS takes one immediate an instruction).
__device__ __forceinline__ u32 nibble_16q(u32 w, int k, u32 one) {
    const u32 v = 4 * k <= 19 ? w << (19 - 4 * k) : w >> (4 * k - 19);
#if LOP
    u32 d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(v), "n"(0x00780000u), "r"(one)); // (a & b) | c
    return d;
#else
    return (v & 0x00780000u) | one;
#endif
}

// sum over k < 32 of (16 + q[k]) * xf[k], q the 4-bit values of a 16-byte
// chunk (nibble k of word k / 8); the caller takes off 16 * sum(x). A
// nibble becomes 16 + q by OR-ing it into the top of 16.0f's mantissa
// (exact, as are the products): a shift, a LOP3 (two without LOP) and the
// FMA a weight. The int-to-float conversion runs at 1/8 of the FMA rate,
// and taking 2^23 off a nibble OR-ed into 2^23's low bits costs one more
// instruction a weight (the loop's issue rate is as much a bound as the
// memory's). one: 0x41800000 (16.0f), as a register with LOP.
__device__ __forceinline__ float nibble_dot(const u32 w[4], const float xf[32], u32 one) {
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int k = 0; k < 8; k += 2) {
            s0 += bits_to_float(nibble_16q(w[i], k, one)) * xf[i * 8 + k];
            s1 += bits_to_float(nibble_16q(w[i], k + 1, one)) * xf[i * 8 + k + 1];
        }
    return s0 + s1;
}
)CUDA";

#endif
