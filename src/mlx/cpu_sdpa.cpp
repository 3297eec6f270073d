// cpu_sdpa.cpp - our C attention kernel (src/kernels/attention.h) wrapped as
// an MLX primitive, so mx_sdpa on the CPU device runs one multithreaded
// streaming-softmax pass instead of MLX's composed fallback (two matmuls
// through the reference BLAS and a materialized [Tq, Tk] score matrix).
#include "mlx/cpu_sdpa.h"

#include "mlx/cpu_primitive.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

extern "C" {
#include "kernels/attention.h"
#include "util/env.h"
}

namespace gomlx {
namespace {

// The kernel reads any strides, so views (a KV-cache slice, a transposed
// q) are passed as they are: no copy.
void strides_of(const mc::array &a, int64_t out[4]) {
    for (int i = 0; i < 4; i++) out[i] = (int64_t)a.strides()[i];
}

class CpuSdpa : public CpuOnlyPrimitive {
   public:
    CpuSdpa(mc::Stream s, float scale, bool causal, int window, float softcap)
        : CpuOnlyPrimitive(s, "GomlxCpuSdpa"), scale_(scale), causal_(causal), window_(window),
          softcap_(softcap) {}

    // Runs on the thread that evaluates the graph: it only allocates the
    // output and queues the work on the CPU stream, behind whatever
    // computes the inputs.
    void eval_cpu(const std::vector<mc::array> &in, mc::array &out) override {
        const mc::array &q = in[0], &k = in[1], &v = in[2];
        out.set_data(mc::allocator::malloc(out.nbytes()));

        gm_attn_args a;
        std::memset(&a, 0, sizeof a);
        a.B = q.shape(0);
        a.Hq = q.shape(1);
        a.Tq = q.shape(2);
        a.D = q.shape(3);
        a.Hkv = k.shape(1);
        a.Tk = k.shape(2);
        a.scale = scale_;
        a.causal = causal_ ? 1 : 0;
        a.window = window_;
        a.softcap = softcap_;
        if (!to_fdtype(q.dtype(), &a.dtype))
            throw std::invalid_argument("GomlxCpuSdpa: unsupported dtype");
        if (out.size() == 0) return;
        strides_of(q, a.q_strides);
        strides_of(k, a.k_strides);
        strides_of(v, a.v_strides);
        a.q = q.data<void>();
        a.k = k.data<void>();
        a.v = v.data<void>();
        a.out = out.data<void>();

        auto &enc = mc::cpu::get_command_encoder(stream());
        enc.set_input_array(q);
        enc.set_input_array(k);
        enc.set_input_array(v);
        enc.set_output_array(out);
        // MLX keeps the input buffers alive until the queued task has run.
        enc.dispatch([a]() {
            if (gm_attention(&a) != 0)
                throw std::runtime_error("GomlxCpuSdpa: kernel failed (out of memory?)");
        });
    }

    bool is_equivalent(const mc::Primitive &other) const override {
        auto *o = dynamic_cast<const CpuSdpa *>(&other);
        return o && o->scale_ == scale_ && o->causal_ == causal_ && o->window_ == window_ &&
               o->softcap_ == softcap_;
    }

    std::vector<mc::Shape> output_shapes(const std::vector<mc::array> &in) override {
        return {in[0].shape()};
    }

   private:
    float scale_;
    bool causal_;
    int window_;
    float softcap_;
};

}  // namespace

// GOMLX_CPU_SDPA=0 leaves attention to MLX while the quantized matmul
// kernels stay on: the A/B switch for this kernel alone.
bool cpu_sdpa_enabled() {
    static const bool on = !gm_env_off("GOMLX_CPU_SDPA");
    return on;
}

std::optional<mc::array> cpu_sdpa_try(const mc::array &q, const mc::array &k, const mc::array &v,
                                      float scale, bool causal, int window, float softcap) {
    if (window < 0 || (window > 0 && !causal) || !(softcap >= 0)) return std::nullopt;
    if (!cpu_sdpa_enabled() || q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) return std::nullopt;
    gm_fdtype t;
    if (!to_fdtype(q.dtype(), &t) || k.dtype() != q.dtype() || v.dtype() != q.dtype())
        return std::nullopt;
    int B = q.shape(0), Hq = q.shape(1), Tq = q.shape(2), D = q.shape(3);
    int Hkv = k.shape(1), Tk = k.shape(2);
    if (k.shape(0) != B || k.shape(3) != D || v.shape() != k.shape()) return std::nullopt;
    if (!gm_attention_supported(B, Hq, Hkv, Tq, Tk, D, causal ? 1 : 0)) return std::nullopt;
    mc::Device cpu(mc::Device::cpu);
    mc::Stream s = mc::default_stream(cpu);
    return mc::array(q.shape(), q.dtype(), std::make_shared<CpuSdpa>(s, scale, causal, window, softcap),
                     {q, k, v});
}

}  // namespace gomlx
