// cpu_qmm.cpp - our C quantized matmul kernels (src/kernels/qmm.h) wrapped
// as an MLX primitive, so mx_quantized_matmul on the CPU device runs them
// inside MLX's graph instead of MLX's scalar single-threaded CPU kernel.
#include "mlx/qmm_hooks.h"

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
#include "kernels/qmm.h"
}

namespace gomlx {
namespace {

class CpuQuantizedMatmul : public CpuOnlyPrimitive {
   public:
    CpuQuantizedMatmul(mc::Stream s, int group_size, int bits)
        : CpuOnlyPrimitive(s, "GomlxCpuQuantizedMatmul"), group_size_(group_size), bits_(bits) {}

    // Runs on the thread that evaluates the graph: it only allocates the
    // output and queues the work on the CPU stream, behind whatever
    // computes the inputs.
    void eval_cpu(const std::vector<mc::array> &in, mc::array &out) override {
        const mc::array &x = in[0], &w = in[1], &scales = in[2], &biases = in[3];
        out.set_data(mc::allocator::malloc(out.nbytes()));

        gm_qmm_args a;
        std::memset(&a, 0, sizeof a);
        a.N = w.shape(-2);
        a.K = x.shape(-1);
        a.M = a.K > 0 ? (int)(x.size() / (size_t)a.K) : 0;
        a.bits = bits_;
        a.group_size = group_size_;
        if (!to_fdtype(x.dtype(), &a.x_dtype) || !to_fdtype(scales.dtype(), &a.sb_dtype) ||
            biases.dtype() != scales.dtype() || !to_fdtype(out.dtype(), &a.y_dtype))
            throw std::invalid_argument("GomlxCpuQuantizedMatmul: unsupported dtypes");
        a.y = out.data<void>();
        if (a.M == 0 || a.N == 0) return;

        auto &enc = mc::cpu::get_command_encoder(stream());
        enc.set_input_array(x);
        enc.set_input_array(w);
        enc.set_input_array(scales);
        enc.set_input_array(biases);
        enc.set_output_array(out);
        // MLX keeps the input buffers alive until the queued task has run.
        enc.dispatch([a, vx = view_of(x), vw = view_of(w), vs = view_of(scales),
                      vb = view_of(biases)]() mutable {
            Packed px, pw, ps, pb;
            pack(vx, px);
            pack(vw, pw);
            pack(vs, ps);
            pack(vb, pb);
            a.x = px.ptr;
            a.w = static_cast<const uint32_t *>(pw.ptr);
            a.scales = ps.ptr;
            a.biases = pb.ptr;
            if (gm_qmm(&a) != 0)
                throw std::runtime_error("GomlxCpuQuantizedMatmul: kernel failed (out of memory?)");
        });
    }

    bool is_equivalent(const mc::Primitive &other) const override {
        auto *o = dynamic_cast<const CpuQuantizedMatmul *>(&other);
        return o && o->group_size_ == group_size_ && o->bits_ == bits_;
    }

    std::vector<mc::Shape> output_shapes(const std::vector<mc::array> &in) override {
        mc::Shape s = in[0].shape();
        s.back() = in[1].shape(-2);
        return {s};
    }

   private:
    int group_size_;
    int bits_;
};

}  // namespace

std::optional<mc::array> cpu_qmm_try(const mc::array &x, const mc::array &w,
                                     const mc::array &scales,
                                     const std::optional<mc::array> &biases, bool transpose,
                                     int group_size, int bits) {
    // transpose=false (x @ W with W [in, out]) is left to MLX: no model
    // layer we load uses it.
    if (!transpose || !biases) return std::nullopt;
    if (!gm_qmm_supported(bits, group_size, x.ndim() ? x.shape(-1) : 0)) return std::nullopt;
    gm_fdtype t;
    if (!to_fdtype(x.dtype(), &t) || !to_fdtype(scales.dtype(), &t) ||
        biases->dtype() != scales.dtype() || w.dtype() != mc::uint32)
        return std::nullopt;
    if (x.ndim() < 1 || w.ndim() != 2 || scales.ndim() != 2 || biases->ndim() != 2)
        return std::nullopt;
    int K = x.shape(-1), N = w.shape(0);
    if ((int64_t)w.shape(1) * 32 != (int64_t)K * bits || scales.shape(0) != N ||
        scales.shape(1) != K / group_size || biases->shape() != scales.shape())
        return std::nullopt;
    mc::Device cpu(mc::Device::cpu);
    mc::Stream s = mc::default_stream(cpu);
    mc::Dtype out_t = mc::promote_types(x.dtype(), scales.dtype());
    mc::Shape shape = x.shape();
    shape.back() = N;
    return mc::array(std::move(shape), out_t,
                     std::make_shared<CpuQuantizedMatmul>(s, group_size, bits),
                     {x, w, scales, *biases});
}

}  // namespace gomlx
