// mx_ops.cpp - the array operations of the shim: layout, elementwise,
// reductions, linear algebra and quantization, fused transformer pieces
// and random sampling, each a thin exception-safe call into mlx::core.
#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "mlx/cpu_gated.h"
#include "mlx/cpu_sdpa.h"
#include "mlx/qmm_hooks.h"
#include "mlx/mx_internal.h"
#include "util/env.h"

namespace mc = mlx::core;
using mc::array;
using namespace gomlx::mx;

namespace {

std::optional<array> opt(mx_array a) {
    if (!a) return std::nullopt;
    return a->a;
}

// Per-axis bounds over the first ndim axes, the rest whole; stop is clamped
// so callers can ask for "to the end" with a large number.
void slice_bounds(const array &a, const int *start, const int *stop, const int *strides, int ndim,
                  mc::Shape &lo, mc::Shape &hi, mc::Shape &st) {
    int n = (int)a.ndim();
    if (ndim < 0 || ndim > n || (ndim > 0 && (!start || !stop)))
        throw std::invalid_argument("slice: " + std::to_string(ndim) + " bounds for an array of " +
                                    std::to_string(n) + " dimensions");
    lo = mc::Shape(n, 0);
    hi = a.shape();
    st = mc::Shape(n, 1);
    for (int i = 0; i < ndim; i++) {
        lo[i] = start[i];
        hi[i] = stop[i] < a.shape(i) ? stop[i] : a.shape(i);
        if (strides) st[i] = strides[i];
    }
}

std::atomic<int> g_cpu_kernels{!gm_env_off("GOMLX_CPU_KERNELS")};

}  // namespace

#define MX_UNARY(name, fn)                                \
    mx_array name(mx_array a) {                           \
        if (!a) return nullptr;                           \
        return guard([&] { return mc::fn(a->a); });       \
    }

#define MX_BINARY(name, fn)                               \
    mx_array name(mx_array a, mx_array b) {               \
        if (!a || !b) return nullptr;                     \
        return guard([&] { return mc::fn(a->a, b->a); }); \
    }

#define MX_REDUCE(name, fn)                                               \
    mx_array name(mx_array a, int axis, int keepdims) {                   \
        if (!a) return nullptr;                                           \
        return guard([&] { return mc::fn(a->a, axis, keepdims != 0); });  \
    }

extern "C" {

/* ---- shape and layout ---- */

mx_array mx_reshape(mx_array a, const int *shape, int ndim) {
    if (!a) return nullptr;
    return guard([&] { return mc::reshape(a->a, to_shape(shape, ndim)); });
}

mx_array mx_transpose(mx_array a, const int *perm, int ndim) {
    if (!a) return nullptr;
    return guard([&] {
        if (ndim < 0 || (ndim > 0 && !perm)) throw std::invalid_argument("mx_transpose: bad perm");
        return mc::transpose(a->a, std::vector<int>(perm, perm + ndim));
    });
}

mx_array mx_swapaxes(mx_array a, int axis1, int axis2) {
    if (!a) return nullptr;
    return guard([&] { return mc::swapaxes(a->a, axis1, axis2); });
}

mx_array mx_expand_dims(mx_array a, int axis) {
    if (!a) return nullptr;
    return guard([&] { return mc::expand_dims(a->a, axis); });
}

mx_array mx_squeeze(mx_array a, int axis) {
    if (!a) return nullptr;
    return guard([&] { return mc::squeeze(a->a, axis); });
}

mx_array mx_astype(mx_array a, mx_dtype t) {
    if (!a) return nullptr;
    return guard([&] { return mc::astype(a->a, to_mlx(t)); });
}

MX_UNARY(mx_contiguous, contiguous)

mx_array mx_slice(mx_array a, const int *start, const int *stop, const int *strides, int ndim) {
    if (!a) return nullptr;
    return guard([&] {
        mc::Shape lo, hi, st;
        slice_bounds(a->a, start, stop, strides, ndim, lo, hi, st);
        return mc::slice(a->a, std::move(lo), std::move(hi), std::move(st));
    });
}

mx_array mx_slice_update(mx_array dst, mx_array src, const int *start, const int *stop, int ndim) {
    if (!dst || !src) return nullptr;
    return guard([&] {
        mc::Shape lo, hi, st;
        slice_bounds(dst->a, start, stop, nullptr, ndim, lo, hi, st);
        return mc::slice_update(dst->a, src->a, std::move(lo), std::move(hi));
    });
}

mx_array mx_concat(const mx_array *arrays, int n, int axis) {
    if (n <= 0 || !arrays) {
        record("mx_concat: no arrays");
        return nullptr;
    }
    for (int i = 0; i < n; i++)
        if (!arrays[i]) return nullptr;
    return guard([&] {
        std::vector<array> v;
        v.reserve((size_t)n);
        for (int i = 0; i < n; i++) v.push_back(arrays[i]->a);
        return mc::concatenate(std::move(v), axis);
    });
}

mx_array mx_repeat(mx_array a, int repeats, int axis) {
    if (!a) return nullptr;
    return guard([&] { return mc::repeat(a->a, repeats, axis); });
}

mx_array mx_broadcast_to(mx_array a, const int *shape, int ndim) {
    if (!a) return nullptr;
    return guard([&] { return mc::broadcast_to(a->a, to_shape(shape, ndim)); });
}

/* ---- fused activations ----
 * The gated MLP's activation is a chain of elementwise ops; compiled, it
 * is one kernel instead of three to six, which matters on the GPU where a
 * decode step is bound by kernel launches. On the CPU MLX would compile by
 * running a C++ compiler at run time, so there the plain ops are used. */

namespace {
std::vector<mc::array> swiglu_impl(const std::vector<mc::array> &in) {
    const mc::array &g = in[0];
    return {mc::multiply(mc::multiply(g, mc::sigmoid(g)), in[1])};
}

std::vector<mc::array> geglu_impl(const std::vector<mc::array> &in) {
    const mc::array &x = in[0];
    mc::Dtype t = x.dtype();
    auto k = [&](double v) { return mc::array((float)v, t); };
    mc::array inner = mc::multiply(mc::add(x, mc::multiply(mc::multiply(mc::square(x), x), k(0.044715))),
                                   k(0.7978845608028654)); /* sqrt(2/pi) */
    mc::array gelu = mc::multiply(mc::multiply(x, k(0.5)), mc::add(k(1.0), mc::tanh(inner)));
    return {mc::multiply(gelu, in[1])};
}

using gated_impl = std::vector<mc::array> (*)(const std::vector<mc::array> &);

mc::array fused_gated(const mc::array &g, const mc::array &u, gated_impl impl) {
    if (mx_device_is_gpu()) {
        static auto swiglu_c = mc::compile(swiglu_impl, true);
        static auto geglu_c = mc::compile(geglu_impl, true);
        auto &fn = impl == swiglu_impl ? swiglu_c : geglu_c;
        return fn({g, u})[0];
    }
    return impl({g, u})[0];
}

mx_array fused(mx_array g, mx_array u, gated_impl impl) {
    if (!g || !u) return nullptr;
    return guard([&] { return fused_gated(g->a, u->a, impl); });
}
}  // namespace

mx_array mx_swiglu(mx_array gate, mx_array up) { return fused(gate, up, swiglu_impl); }
mx_array mx_geglu(mx_array gate, mx_array up) { return fused(gate, up, geglu_impl); }

namespace {
// x, then keep (x's shape) when masked; cap a constant of the trace. It
// divides rather than multiplies by 1/cap, so bf16 rounds as the
// references do.
std::vector<mc::array> softcap_impl(const std::vector<mc::array> &in, float cap) {
    const mc::array c(cap, in[0].dtype());
    mc::array y = mc::multiply(mc::tanh(mc::divide(in[0], c)), c);
    if (in.size() > 1) y = mc::where(in[1], y, mc::array(-std::numeric_limits<float>::infinity(), y.dtype()));
    return {y};
}

using compiled_fn = std::function<std::vector<mc::array>(const std::vector<mc::array> &)>;

// One compiled function per cap (a model has one or two), shapeless: a
// prefill's chunks and a decode's growing key count reuse one trace.
const compiled_fn &softcap_compiled(float cap) {
    static std::mutex mu;
    static std::map<float, compiled_fn> fns;
    std::lock_guard<std::mutex> lock(mu);
    auto it = fns.find(cap);
    if (it == fns.end())
        it = fns.emplace(cap, mc::compile([cap](const std::vector<mc::array> &in) { return softcap_impl(in, cap); },
                                          true)).first;
    return it->second;
}
}  // namespace

mx_array mx_softcap_masked(mx_array x, float cap, mx_array keep) {
    if (!x) return nullptr;
    return guard([&]() -> mc::array {
        std::vector<mc::array> in = {x->a};
        // The mask at x's full shape (a view): a shapeless trace must not
        // hold a broadcast of one key count.
        if (keep) in.push_back(mc::broadcast_to(keep->a, x->a.shape()));
        if (!mx_device_is_gpu()) return softcap_impl(in, cap)[0];
        // Its temporaries are score-sized (heads x T x S a layer in a
        // prefill), so one kernel saves memory as much as launches.
        return softcap_compiled(cap)(in)[0];
    });
}

mx_array mx_gated_stacked(mx_array gu, int gelu) {
    if (!gu) return nullptr;
    return guard([&]() -> mc::array {
        const mc::array &a = gu->a;
        if (a.ndim() < 1 || a.shape(-1) % 2)
            throw std::invalid_argument("mx_gated_stacked: the last dimension must be even");
        if (mx_cpu_kernels() && mc::default_device() == mc::Device::cpu)
            if (auto r = gomlx::cpu_gated_try(a, gelu != 0)) return std::move(*r);
        int ff = a.shape(-1) / 2;
        mc::Shape lo(a.ndim(), 0), mid = a.shape(), hi = a.shape();
        mid.back() = ff;
        mc::Shape up_lo = lo;
        up_lo.back() = ff;
        return fused_gated(mc::slice(a, lo, mid), mc::slice(a, up_lo, hi),
                           gelu ? geglu_impl : swiglu_impl);
    });
}

/* ---- elementwise ---- */

MX_BINARY(mx_add, add)
MX_BINARY(mx_subtract, subtract)
MX_BINARY(mx_multiply, multiply)
MX_BINARY(mx_divide, divide)
MX_BINARY(mx_maximum, maximum)
MX_BINARY(mx_minimum, minimum)
MX_BINARY(mx_power, power)
MX_UNARY(mx_negative, negative)
MX_UNARY(mx_exp, exp)
MX_UNARY(mx_log, log)
MX_UNARY(mx_sqrt, sqrt)
MX_UNARY(mx_rsqrt, rsqrt)
MX_UNARY(mx_tanh, tanh)
MX_UNARY(mx_sin, sin)
MX_UNARY(mx_cos, cos)
MX_UNARY(mx_sigmoid, sigmoid)
MX_UNARY(mx_erf, erf)
MX_UNARY(mx_abs, abs)
MX_UNARY(mx_square, square)
MX_BINARY(mx_greater, greater)
MX_BINARY(mx_greater_equal, greater_equal)
MX_BINARY(mx_less, less)
MX_BINARY(mx_less_equal, less_equal)
MX_BINARY(mx_equal, equal)
MX_BINARY(mx_logical_and, logical_and)
MX_UNARY(mx_logical_not, logical_not)

mx_array mx_where(mx_array cond, mx_array a, mx_array b) {
    if (!cond || !a || !b) return nullptr;
    return guard([&] { return mc::where(cond->a, a->a, b->a); });
}

mx_array mx_scale(mx_array x, double s) {
    if (!x) return nullptr;
    return guard([&] { return mc::multiply(x->a, scalar_of(s, x->a.dtype())); });
}

/* ---- reductions, sorting, indexing ---- */

MX_REDUCE(mx_sum, sum)
MX_REDUCE(mx_mean, mean)
MX_REDUCE(mx_max, max)
MX_REDUCE(mx_min, min)
MX_REDUCE(mx_argmax, argmax)
MX_REDUCE(mx_logsumexp, logsumexp)

mx_array mx_softmax(mx_array a, int axis, int precise) {
    if (!a) return nullptr;
    return guard([&] { return mc::softmax(a->a, axis, precise != 0); });
}

mx_array mx_cumsum(mx_array a, int axis, int reverse, int inclusive) {
    if (!a) return nullptr;
    return guard([&] { return mc::cumsum(a->a, axis, reverse != 0, inclusive != 0); });
}

mx_array mx_sort(mx_array a, int axis) {
    if (!a) return nullptr;
    return guard([&] { return mc::sort(a->a, axis); });
}

mx_array mx_argsort(mx_array a, int axis) {
    if (!a) return nullptr;
    return guard([&] { return mc::argsort(a->a, axis); });
}

mx_array mx_argpartition(mx_array a, int kth, int axis) {
    if (!a) return nullptr;
    return guard([&] { return mc::argpartition(a->a, kth, axis); });
}

mx_array mx_take(mx_array a, mx_array indices, int axis) {
    if (!a || !indices) return nullptr;
    return guard([&] { return mc::take(a->a, indices->a, axis); });
}

mx_array mx_take_along_axis(mx_array a, mx_array indices, int axis) {
    if (!a || !indices) return nullptr;
    return guard([&] { return mc::take_along_axis(a->a, indices->a, axis); });
}

mx_array mx_put_along_axis(mx_array a, mx_array indices, mx_array values, int axis) {
    if (!a || !indices || !values) return nullptr;
    return guard([&] { return mc::put_along_axis(a->a, indices->a, values->a, axis); });
}

/* ---- linear algebra and quantization ---- */

MX_BINARY(mx_matmul, matmul)

mx_array mx_quantized_matmul(mx_array x, mx_array w, mx_array scales, mx_array biases,
                             int transpose, int group_size, int bits) {
    if (!x || !w || !scales) return nullptr;
    return guard([&] {
        std::optional<array> b = opt(biases);
        if (mx_cpu_kernels() && mc::default_device() == mc::Device::cpu) {
            if (auto r = gomlx::cpu_qmm_try(x->a, w->a, scales->a, b, transpose != 0, group_size,
                                            bits))
                return std::move(*r);
        }
        if (mc::default_device() == mc::Device::gpu) {
            if (auto r = gomlx::cuda_qmv_try(x->a, w->a, scales->a, b, transpose != 0, group_size,
                                             bits))
                return std::move(*r);
        }
        // MLX 0.32.4's CUDA matrix-matrix kernel is wrong when a row is a
        // single group (K == group_size: relative errors of 1 and more,
        // any bits; measured on an H100). Real models never have it; tiny
        // ones do. Dequantizing first is exact there and costs nothing.
        const array &xa = x->a;
        if (mc::default_device() == mc::Device::gpu && transpose && b && xa.ndim() >= 1 &&
            xa.shape(-1) == group_size && xa.size() / (size_t)group_size > 1) {
            mc::Dtype t = mc::promote_types(xa.dtype(), scales->a.dtype());
            // Widened first: MLX dequantizes in the scales' dtype.
            array wd = mc::dequantize(w->a, mc::astype(scales->a, t), mc::astype(*b, t), group_size,
                                      bits, "affine", std::nullopt, t);
            return mc::matmul(xa, mc::transpose(wd));
        }
        return mc::quantized_matmul(x->a, w->a, scales->a, b, transpose != 0, group_size, bits,
                                    "affine");
    });
}

mx_array mx_dequantize(mx_array w, mx_array scales, mx_array biases, int group_size, int bits,
                       mx_dtype out) {
    if (!w || !scales) return nullptr;
    return guard([&] {
        std::optional<mc::Dtype> dt;
        if (out != MX_OTHER) dt = to_mlx(out);
        return mc::dequantize(w->a, scales->a, opt(biases), group_size, bits, "affine",
                              std::nullopt, dt);
    });
}

int mx_quantize(mx_array w, int group_size, int bits, mx_array *wq, mx_array *scales,
                mx_array *biases) {
    if (wq) *wq = nullptr;
    if (scales) *scales = nullptr;
    if (biases) *biases = nullptr;
    if (!w || !wq || !scales || !biases) return -1;
    std::vector<array> r;
    if (guard_ret(-1, [&] {
            r = mc::quantize(w->a, group_size, bits, "affine");
            if (r.size() != 3) throw std::runtime_error("mx_quantize: expected 3 outputs");
            return 0;
        }))
        return -1;
    *wq = guard([&] { return r[0]; });
    *scales = guard([&] { return r[1]; });
    *biases = guard([&] { return r[2]; });
    if (!*wq || !*scales || !*biases) {
        mx_free(*wq);
        mx_free(*scales);
        mx_free(*biases);
        *wq = *scales = *biases = nullptr;
        return -1;
    }
    return 0;
}

void mx_set_cpu_kernels(int on) { g_cpu_kernels.store(on ? 1 : 0); }
int mx_cpu_kernels(void) { return g_cpu_kernels.load(); }

/* ---- fused transformer pieces ---- */

mx_array mx_rms_norm(mx_array x, mx_array weight, float eps) {
    if (!x) return nullptr;
    return guard([&] { return mc::fast::rms_norm(x->a, opt(weight), eps); });
}

mx_array mx_layer_norm(mx_array x, mx_array weight, mx_array bias, float eps) {
    if (!x) return nullptr;
    return guard([&] { return mc::fast::layer_norm(x->a, opt(weight), opt(bias), eps); });
}

mx_array mx_rope(mx_array x, int dims, int traditional, float base, float scale, int offset,
                 mx_array freqs) {
    if (!x) return nullptr;
    return guard([&] {
        std::optional<float> b;
        if (!freqs) b = base;  // MLX wants exactly one of base and freqs
        return mc::fast::rope(x->a, dims, traditional != 0, b, scale, offset, opt(freqs));
    });
}

int mx_cpu_sdpa_on(void) {
    return mx_cpu_kernels() && gomlx::cpu_sdpa_enabled() && mc::default_device() == mc::Device::cpu;
}

mx_array mx_cpu_sdpa(mx_array q, mx_array k, mx_array v, float scale, int causal, int window,
                     float softcap) {
    if (!q || !k || !v) return nullptr;
    return guard([&] {
        if (!mx_cpu_kernels() || mc::default_device() != mc::Device::cpu)
            throw std::invalid_argument("mx_cpu_sdpa: needs the CPU device with the CPU kernels on");
        auto r = gomlx::cpu_sdpa_try(q->a, k->a, v->a, scale, causal != 0, window, softcap);
        if (!r) throw std::invalid_argument("mx_cpu_sdpa: shapes or dtypes the kernel does not take");
        return std::move(*r);
    });
}

mx_array mx_sdpa(mx_array q, mx_array k, mx_array v, float scale, int causal, mx_array mask) {
    if (!q || !k || !v) return nullptr;
    return guard([&] {
        // MLX's CPU fallback composes the op from reference-BLAS matmuls.
        if (!mask && mx_cpu_kernels() && mc::default_device() == mc::Device::cpu) {
            if (auto r = gomlx::cpu_sdpa_try(q->a, k->a, v->a, scale, causal != 0))
                return std::move(*r);
        }
        if (causal) return mc::fast::scaled_dot_product_attention(q->a, k->a, v->a, scale, "causal");
        if (mask)
            return mc::fast::scaled_dot_product_attention(q->a, k->a, v->a, scale, "array", mask->a);
        return mc::fast::scaled_dot_product_attention(q->a, k->a, v->a, scale, "");
    });
}

/* ---- random ---- */

mx_array mx_random_key(uint64_t seed) {
    return guard([&] { return mc::random::key(seed); });
}

int mx_random_split(mx_array key, mx_array *k1, mx_array *k2) {
    if (k1) *k1 = nullptr;
    if (k2) *k2 = nullptr;
    if (!key || !k1 || !k2) return -1;
    std::optional<std::pair<array, array>> p;
    if (guard_ret(-1, [&] {
            p.emplace(mc::random::split(key->a));
            return 0;
        }))
        return -1;
    *k1 = guard([&] { return p->first; });
    *k2 = guard([&] { return p->second; });
    if (!*k1 || !*k2) {
        mx_free(*k1);
        mx_free(*k2);
        *k1 = *k2 = nullptr;
        return -1;
    }
    return 0;
}

mx_array mx_random_categorical(mx_array logits, int axis, mx_array key) {
    if (!logits || !key) return nullptr;
    return guard([&] { return mc::random::categorical(logits->a, axis, key->a); });
}

}  // extern "C"
