// mx_core.cpp - the shim's plumbing: error buffer, scopes and handle
// lifetimes, dtypes, device and memory control, evaluation, readback and
// array creation.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <mlx/device.h>
#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>
#include <mlx/version.h>

#include "mlx/mx_internal.h"

namespace mlx_ns = mlx::core;
using mlx_ns::array;

// A scope owns the handles created while it is the innermost one; a slot
// set to null was kept or freed by its owner since.
struct mx_scope_s {
    std::vector<mx_array_s *> owned;
};

namespace {

thread_local char tl_error[2048];
// Innermost scope last; per thread because MLX streams are per thread too.
thread_local std::vector<mx_scope *> tl_scopes;

void set_error_text(const char *msg) noexcept {
    snprintf(tl_error, sizeof tl_error, "%s", msg && *msg ? msg : "unknown MLX error");
}

size_t dtype_bytes(mx_dtype t) {
    switch (t) {
    case MX_BOOL:
    case MX_UINT8: return 1;
    case MX_FLOAT16:
    case MX_BFLOAT16: return 2;
    case MX_UINT32:
    case MX_INT32:
    case MX_FLOAT32: return 4;
    case MX_INT64: return 8;
    default: return 0;
    }
}

template <class T>
array from_typed(const void *data, mlx_ns::Shape shape, mlx_ns::Dtype t) {
    return array(static_cast<const T *>(data), std::move(shape), t);
}

}  // namespace

namespace gomlx::mx {

void record(const char *msg) noexcept { set_error_text(msg); }

void record_current_exception() noexcept {
    try {
        throw;
    } catch (const std::exception &e) {
        set_error_text(e.what());
    } catch (...) {
        set_error_text("unknown C++ exception in MLX");
    }
}

mx_array wrap_unscoped(array a) { return new mx_array_s{std::move(a), nullptr, 0}; }

mx_array wrap(array a) {
    mx_array h = wrap_unscoped(std::move(a));
    if (!tl_scopes.empty()) {
        mx_scope *s = tl_scopes.back();
        try {
            s->owned.push_back(h);
        } catch (...) {
            delete h;
            throw;
        }
        h->scope = s;
        h->slot = s->owned.size() - 1;
    }
    return h;
}

mlx_ns::Shape to_shape(const int *shape, int ndim) {
    if (ndim < 0 || ndim > MX_MAX_DIMS || (ndim > 0 && !shape))
        throw std::invalid_argument("bad shape (ndim " + std::to_string(ndim) + ")");
    return mlx_ns::Shape(shape, shape + ndim);
}

// Scalars are built in their own dtype so large integers stay exact.
array scalar_of(double v, mlx_ns::Dtype dt) {
    if (dt == mlx_ns::bool_) return array(v != 0.0, dt);
    if (mlx_ns::issubdtype(dt, mlx_ns::integer)) return array((int64_t)v, dt);
    return array((float)v, dt);
}

mlx_ns::Dtype to_mlx(mx_dtype t) {
    switch (t) {
    case MX_BOOL: return mlx_ns::bool_;
    case MX_UINT8: return mlx_ns::uint8;
    case MX_UINT32: return mlx_ns::uint32;
    case MX_INT32: return mlx_ns::int32;
    case MX_INT64: return mlx_ns::int64;
    case MX_FLOAT16: return mlx_ns::float16;
    case MX_BFLOAT16: return mlx_ns::bfloat16;
    case MX_FLOAT32: return mlx_ns::float32;
    default: throw std::invalid_argument("dtype not supported by the engine");
    }
}

mx_dtype from_mlx(mlx_ns::Dtype t) {
    switch (t.val()) {
    case mlx_ns::Dtype::Val::bool_: return MX_BOOL;
    case mlx_ns::Dtype::Val::uint8: return MX_UINT8;
    case mlx_ns::Dtype::Val::uint32: return MX_UINT32;
    case mlx_ns::Dtype::Val::int32: return MX_INT32;
    case mlx_ns::Dtype::Val::int64: return MX_INT64;
    case mlx_ns::Dtype::Val::float16: return MX_FLOAT16;
    case mlx_ns::Dtype::Val::bfloat16: return MX_BFLOAT16;
    case mlx_ns::Dtype::Val::float32: return MX_FLOAT32;
    default: return MX_OTHER;
    }
}

}  // namespace gomlx::mx

using namespace gomlx::mx;

extern "C" {

/* ---- errors, scopes, lifetimes ---- */

const char *mx_error(void) { return tl_error; }

void mx_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    va_end(ap);
}

void mx_clear_error(void) { tl_error[0] = '\0'; }

mx_scope *mx_scope_open(void) {
    try {
        auto *s = new mx_scope;
        try {
            tl_scopes.push_back(s);
        } catch (...) {
            delete s;
            throw;
        }
        return s;
    } catch (...) {
        record_current_exception();
        return nullptr;
    }
}

void mx_scope_close(mx_scope *scope) {
    if (!scope) return;
    // Usually the innermost; tolerate closing out of order.
    auto it = std::find(tl_scopes.rbegin(), tl_scopes.rend(), scope);
    if (it != tl_scopes.rend()) tl_scopes.erase(std::next(it).base());
    for (mx_array_s *h : scope->owned) delete h;
    delete scope;
}

mx_array mx_keep(mx_array a) {
    if (a && a->scope) {
        a->scope->owned[a->slot] = nullptr;
        a->scope = nullptr;
    }
    return a;
}

void mx_free(mx_array a) {
    if (!a) return;
    mx_keep(a);
    delete a;
}

mx_array mx_copy_ref(mx_array a) {
    if (!a) return nullptr;
    return guard([&] { return a->a; });
}

/* ---- device, streams, memory ---- */

int mx_gpu_available(void) {
    return guard_ret(0, [] { return mlx_ns::is_available(mlx_ns::Device::gpu) ? 1 : 0; });
}

int mx_set_device(int gpu) {
    return guard_ret(-1, [&] {
        if (gpu && !mlx_ns::is_available(mlx_ns::Device::gpu)) {
            record("mx_set_device: this MLX build has no GPU backend (Metal or CUDA); use the CPU");
            return -1;
        }
        mlx_ns::set_default_device(gpu ? mlx_ns::Device::gpu : mlx_ns::Device::cpu);
        return 0;
    });
}

int mx_device_is_gpu(void) {
    return guard_ret(0, [] { return mlx_ns::default_device() == mlx_ns::Device::gpu ? 1 : 0; });
}

const char *mx_version(void) { return guard_ret<const char *>("", [] { return mlx_ns::version(); }); }

size_t mx_active_memory(void) { return guard_ret<size_t>(0, [] { return mlx_ns::get_active_memory(); }); }
size_t mx_peak_memory(void) { return guard_ret<size_t>(0, [] { return mlx_ns::get_peak_memory(); }); }
size_t mx_cache_memory(void) { return guard_ret<size_t>(0, [] { return mlx_ns::get_cache_memory(); }); }

void mx_reset_peak_memory(void) {
    guard_ret(0, [] {
        mlx_ns::reset_peak_memory();
        return 0;
    });
}

void mx_clear_cache(void) {
    guard_ret(0, [] {
        mlx_ns::clear_cache();
        return 0;
    });
}

size_t mx_set_memory_limit(size_t bytes) {
    return guard_ret<size_t>(0, [&] { return mlx_ns::set_memory_limit(bytes); });
}

size_t mx_memory_limit(void) { return guard_ret<size_t>(0, [] { return mlx_ns::get_memory_limit(); }); }

size_t mx_recommended_wired(void) {
    return guard_ret<size_t>(0, [] {
        // Only Metal's device info has it (what mlx-lm wires during a
        // generation); CUDA's and the CPU's have no such key.
        const auto &info = mlx_ns::device_info(mlx_ns::default_device());
        auto it = info.find("max_recommended_working_set_size");
        if (it == info.end()) return (size_t)0;
        const size_t *v = std::get_if<size_t>(&it->second);
        return v ? *v : (size_t)0;
    });
}

size_t mx_set_cache_limit(size_t bytes) {
    return guard_ret<size_t>(0, [&] { return mlx_ns::set_cache_limit(bytes); });
}

size_t mx_set_wired_limit(size_t bytes) {
    // Only Metal has a wired limit; elsewhere MLX may throw, which is fine.
    try {
        return mlx_ns::set_wired_limit(bytes);
    } catch (...) {
        return 0;
    }
}

/* ---- inspection ---- */

int mx_ndim(mx_array a) { return a ? (int)a->a.ndim() : -1; }

int mx_dim(mx_array a, int axis) {
    if (!a) return -1;
    int n = (int)a->a.ndim();
    int ax = axis < 0 ? axis + n : axis;
    if (ax < 0 || ax >= n) {
        mx_set_error("mx_dim: axis %d out of range for %d dimensions", axis, n);
        return -1;
    }
    return (int)a->a.shape(ax);
}

size_t mx_size(mx_array a) { return a ? a->a.size() : 0; }
size_t mx_nbytes(mx_array a) { return a ? a->a.nbytes() : 0; }
mx_dtype mx_get_dtype(mx_array a) { return a ? from_mlx(a->a.dtype()) : MX_OTHER; }

const char *mx_dtype_name(mx_dtype t) {
    switch (t) {
    case MX_BOOL: return "bool";
    case MX_UINT8: return "uint8";
    case MX_UINT32: return "uint32";
    case MX_INT32: return "int32";
    case MX_INT64: return "int64";
    case MX_FLOAT16: return "float16";
    case MX_BFLOAT16: return "bfloat16";
    case MX_FLOAT32: return "float32";
    default: return "other";
    }
}

size_t mx_dtype_size(mx_dtype t) { return dtype_bytes(t); }

/* ---- evaluation and readback ---- */

static int eval_common(mx_array *arrays, int n, bool async) {
    if (n < 0 || (n > 0 && !arrays)) return -1;
    for (int i = 0; i < n; i++)
        if (!arrays[i]) return -1;  // the failed op already left its message
    return guard_ret(-1, [&] {
        std::vector<array> v;
        v.reserve((size_t)n);
        for (int i = 0; i < n; i++) v.push_back(arrays[i]->a);
        if (async)
            mlx_ns::async_eval(std::move(v));
        else
            mlx_ns::eval(std::move(v));
        return 0;
    });
}

int mx_eval(mx_array *arrays, int n) { return eval_common(arrays, n, false); }
int mx_async_eval(mx_array *arrays, int n) { return eval_common(arrays, n, true); }

int mx_settle(void) {
    // eval() returns when its outputs are ready; the buffers MLX kept alive
    // for the kernels that made them go back only when its worker thread
    // runs their completion handlers, which synchronize() waits for.
    return guard_ret(-1, [] {
        mlx_ns::synchronize();
        return 0;
    });
}

int mx_read(mx_array a, mx_dtype as, void *dst, size_t cap) {
    if (!a) return -1;
    return guard_ret(-1, [&] {
        mlx_ns::Dtype t = to_mlx(as);
        size_t need = a->a.size() * t.size();
        if (need > cap) {
            mx_set_error("mx_read: %zu bytes needed, buffer holds %zu", need, cap);
            return -1;
        }
        array c = mlx_ns::contiguous(mlx_ns::astype(a->a, t));
        mlx_ns::eval(c);
        if (!c.flags().row_contiguous) throw std::runtime_error("mx_read: result not row-contiguous");
        if (need) memcpy(dst, c.data<void>(), need);
        return 0;
    });
}

int mx_item_int(mx_array a, int64_t *out) {
    if (!a) return -1;
    if (a->a.size() != 1) {
        mx_set_error("mx_item_int: array has %zu elements, want 1", a->a.size());
        return -1;
    }
    /* Read the scalar as it is: converting on the device first would cost a
     * kernel launch and a second sync on every decoded token. */
    return guard_ret(-1, [&] {
        array &v = a->a;
        mlx_ns::eval(v);
        switch (v.dtype()) {
        case mlx_ns::int32: *out = v.item<int32_t>(); return 0;
        case mlx_ns::uint32: *out = v.item<uint32_t>(); return 0;
        case mlx_ns::int64: *out = v.item<int64_t>(); return 0;
        case mlx_ns::uint8: *out = v.item<uint8_t>(); return 0;
        default: break;
        }
        array c = mlx_ns::astype(v, mlx_ns::int64);
        mlx_ns::eval(c);
        *out = c.item<int64_t>();
        return 0;
    });
}

int mx_item_float(mx_array a, double *out) {
    if (!a) return -1;
    if (a->a.size() != 1) {
        mx_set_error("mx_item_float: array has %zu elements, want 1", a->a.size());
        return -1;
    }
    float f;
    if (mx_read(a, MX_FLOAT32, &f, sizeof f)) return -1;
    *out = f;
    return 0;
}

/* ---- creation ---- */

mx_array mx_from_data(const void *data, const int *shape, int ndim, mx_dtype t) {
    return guard([&] {
        mlx_ns::Shape s = to_shape(shape, ndim);
        mlx_ns::Dtype dt = to_mlx(t);
        if (!data) throw std::invalid_argument("mx_from_data: NULL data");
        switch (t) {
        case MX_BOOL: return from_typed<bool>(data, std::move(s), dt);
        case MX_UINT8: return from_typed<uint8_t>(data, std::move(s), dt);
        case MX_UINT32: return from_typed<uint32_t>(data, std::move(s), dt);
        case MX_INT32: return from_typed<int32_t>(data, std::move(s), dt);
        case MX_INT64: return from_typed<int64_t>(data, std::move(s), dt);
        case MX_FLOAT16: return from_typed<mlx_ns::float16_t>(data, std::move(s), dt);
        case MX_BFLOAT16: return from_typed<mlx_ns::bfloat16_t>(data, std::move(s), dt);
        default: return from_typed<float>(data, std::move(s), dt);
        }
    });
}

mx_array mx_scalar(double v, mx_dtype t) {
    return guard([&] { return scalar_of(v, to_mlx(t)); });
}

mx_array mx_zeros(const int *shape, int ndim, mx_dtype t) {
    return guard([&] { return mlx_ns::zeros(to_shape(shape, ndim), to_mlx(t)); });
}

mx_array mx_full(const int *shape, int ndim, double v, mx_dtype t) {
    return guard([&] {
        mlx_ns::Dtype dt = to_mlx(t);
        return mlx_ns::full(to_shape(shape, ndim), scalar_of(v, dt), dt);
    });
}

mx_array mx_arange(int start, int stop, int step, mx_dtype t) {
    return guard([&] { return mlx_ns::arange((double)start, (double)stop, (double)step, to_mlx(t)); });
}

}  // extern "C"
