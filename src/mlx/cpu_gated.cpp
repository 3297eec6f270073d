// cpu_gated.cpp - our gated MLP activation (src/kernels/gated.h) as an MLX
// primitive on the CPU device. During a prefill the MLP's intermediates
// are the widest arrays of a layer; MLX's op-by-op SwiGLU keeps up to
// three [T, ff] temporaries besides the [T, 2ff] projection, this keeps
// only its output.
#include "mlx/cpu_gated.h"

#include "mlx/cpu_primitive.h"

#include <memory>
#include <stdexcept>
#include <vector>

#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>

extern "C" {
#include "kernels/gated.h"
}

namespace gomlx {
namespace {

class CpuGated : public CpuOnlyPrimitive {
   public:
    CpuGated(mc::Stream s, bool gelu) : CpuOnlyPrimitive(s, "GomlxCpuGated"), gelu_(gelu) {}

    void eval_cpu(const std::vector<mc::array> &in, mc::array &out) override {
        const mc::array &gu = in[0];
        out.set_data(mc::allocator::malloc(out.nbytes()));
        if (out.size() == 0) return;
        gm_fdtype t;
        if (!to_fdtype(gu.dtype(), &t)) throw std::invalid_argument("GomlxCpuGated: unsupported dtype");
        int ff = gu.shape(-1) / 2;
        int rows = (int)(gu.size() / gu.shape(-1));
        auto packed = std::make_shared<Packed>();
        View v = view_of(gu);
        void *dst = out.data<void>();
        bool gelu = gelu_;

        auto &enc = mc::cpu::get_command_encoder(stream());
        enc.set_input_array(gu);
        enc.set_output_array(out);
        // MLX keeps the input buffers alive until the queued task has run.
        enc.dispatch([v, packed, dst, rows, ff, gelu, t]() {
            pack(v, *packed);
            if (gm_gated_rows(packed->ptr, dst, rows, ff, gelu ? 1 : 0, t) != 0)
                throw std::runtime_error("GomlxCpuGated: kernel failed");
        });
    }

    bool is_equivalent(const mc::Primitive &other) const override {
        auto *o = dynamic_cast<const CpuGated *>(&other);
        return o && o->gelu_ == gelu_;
    }

    std::vector<mc::Shape> output_shapes(const std::vector<mc::array> &in) override {
        mc::Shape s = in[0].shape();
        s.back() /= 2;
        return {s};
    }

   private:
    bool gelu_;
};

}  // namespace

std::optional<mc::array> cpu_gated_try(const mc::array &gu, bool gelu) {
    gm_fdtype t;
    if (gu.ndim() < 1 || gu.shape(-1) < 2 || gu.shape(-1) % 2 || !to_fdtype(gu.dtype(), &t))
        return std::nullopt;
    mc::Device cpu(mc::Device::cpu);
    mc::Stream s = mc::default_stream(cpu);
    mc::Shape shape = gu.shape();
    shape.back() /= 2;
    return mc::array(shape, gu.dtype(), std::make_shared<CpuGated>(s, gelu), {gu});
}

}  // namespace gomlx
