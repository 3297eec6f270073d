// cpu_layer.cpp - a whole decoder layer for one token (src/kernels/
// layer_step.h) as one MLX primitive. Decoding a small model on the CPU
// is bound by MLX's cost per graph node (allocation, scheduling on the CPU
// stream's thread, the hand-off of each op): a Llama layer is some sixty
// nodes once RMSNorm and RoPE expand into their CPU fallbacks, one here.
//
// The KV cache is state, not a value: the kernel writes the new key and
// value into the cache buffers it gets as inputs. That is safe because the
// engine keeps its own handle to each buffer (so MLX never donates it to
// another op), every reader and writer of a cache runs on the one CPU
// stream in graph order, and a grown or trimmed cache is a new array that
// is computed before the step that writes into it.
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>

#include "mlx/cpu_primitive.h"
#include "mlx/mx.h"
#include "mlx/mx_internal.h"

extern "C" {
#include "kernels/layer_step.h"
}

namespace gomlx {
namespace {

// Where each input sits in the primitive's input list (-1: absent).
struct Slots {
    int attn_norm, mlp_norm, post_attn_norm = -1, post_mlp_norm = -1;
    int lin[4][4];  // qkv, o, gate_up, down: w, scales, biases, bias
    int inv_freq, k_cache, v_cache;
};

class CpuLayerStep : public CpuOnlyPrimitive {
   public:
    CpuLayerStep(mc::Stream s, const gm_layer_step_args &proto, const Slots &slots)
        : CpuOnlyPrimitive(s, "GomlxCpuLayerStep"), proto_(proto), slots_(slots) {}

    void eval_cpu(const std::vector<mc::array> &in, mc::array &out) override {
        out.set_data(mc::allocator::malloc(out.nbytes()));
        gm_layer_step_args a = proto_;
        auto ptr = [&](int slot) -> void * {
            if (slot < 0) return nullptr;
            const mc::array &x = in[slot];
            if (!x.flags().row_contiguous)
                throw std::invalid_argument("GomlxCpuLayerStep: a weight or cache is not contiguous");
            return const_cast<void *>(static_cast<const void *>(x.data<char>()));
        };
        a.attn_norm = ptr(slots_.attn_norm);
        a.mlp_norm = ptr(slots_.mlp_norm);
        a.post_attn_norm = ptr(slots_.post_attn_norm);
        a.post_mlp_norm = ptr(slots_.post_mlp_norm);
        gm_step_linear *lins[4] = {&a.qkv, &a.o, &a.gate_up, &a.down};
        for (int i = 0; i < 4; i++) {
            lins[i]->w = static_cast<const uint32_t *>(ptr(slots_.lin[i][0]));
            lins[i]->scales = ptr(slots_.lin[i][1]);
            lins[i]->biases = ptr(slots_.lin[i][2]);
            lins[i]->bias = ptr(slots_.lin[i][3]);
        }
        a.inv_freq = static_cast<const float *>(ptr(slots_.inv_freq));
        a.k_cache = ptr(slots_.k_cache);
        a.v_cache = ptr(slots_.v_cache);
        a.h_out = out.data<void>();

        auto &enc = mc::cpu::get_command_encoder(stream());
        for (auto &x : in) enc.set_input_array(x);
        enc.set_output_array(out);
        // MLX keeps the input buffers alive until the queued task has run.
        enc.dispatch([a, vh = view_of(in[0])]() mutable {
            Packed ph;
            pack(vh, ph);
            a.h_in = ph.ptr;
            if (gm_layer_step(&a) != 0)
                throw std::runtime_error("GomlxCpuLayerStep: kernel failed (out of memory?)");
        });
    }

    // Never merged with another node: each one writes its own cache slot.
    bool is_equivalent(const mc::Primitive &) const override { return false; }

    std::vector<mc::Shape> output_shapes(const std::vector<mc::array> &in) override {
        return {in[0].shape()};
    }

   private:
    gm_layer_step_args proto_;
    Slots slots_;
};

[[noreturn]] void unsuitable(const char *why) {
    throw std::invalid_argument(std::string("fused CPU layer: ") + why);
}

int add_input(std::vector<mc::array> &inputs, mx_array a) {
    if (!a) return -1;
    inputs.push_back(a->a);
    return (int)inputs.size() - 1;
}

void add_linear(std::vector<mc::array> &inputs, const mx_qlinear &l, mc::Dtype t,
                gm_step_linear *out, int slots[4]) {
    if (!l.w || !l.scales || !l.biases || l.bits <= 0 || l.group_size <= 0)
        unsuitable("a projection is not affine-quantized");
    const mc::array &w = l.w->a, &s = l.scales->a, &b = l.biases->a;
    gm_fdtype sb;
    if (w.dtype() != mc::uint32 || w.ndim() != 2 || !to_fdtype(s.dtype(), &sb) ||
        b.dtype() != s.dtype() || mc::promote_types(t, s.dtype()) != t)
        unsuitable("a projection's packing or scale dtype");
    out->N = w.shape(0);
    out->K = (int)((int64_t)w.shape(1) * 32 / l.bits);
    out->bits = l.bits;
    out->group_size = l.group_size;
    out->sb_dtype = sb;
    if (s.ndim() != 2 || s.shape(0) != out->N || (int64_t)s.shape(1) * l.group_size != out->K ||
        b.shape() != s.shape())
        unsuitable("a projection's scales do not fit its weights");
    if (l.bias && (l.bias->a.dtype() != t || l.bias->a.size() != (size_t)out->N))
        unsuitable("a projection's bias");
    slots[0] = add_input(inputs, l.w);
    slots[1] = add_input(inputs, l.scales);
    slots[2] = add_input(inputs, l.biases);
    slots[3] = add_input(inputs, l.bias);
}

int add_norm(std::vector<mc::array> &inputs, mx_array w, mc::Dtype t, int hidden) {
    if (!w) return -1;
    if (w->a.dtype() != t || w->a.ndim() != 1 || w->a.shape(0) != hidden)
        unsuitable("a norm weight's dtype or size");
    return add_input(inputs, w);
}

}  // namespace
}  // namespace gomlx

using namespace gomlx;

extern "C" mx_array mx_cpu_layer_step(mx_array h, const mx_layer_step *s) {
    if (!h || !s || !s->attn_norm || !s->mlp_norm || !s->inv_freq || !s->k_cache || !s->v_cache)
        return nullptr;
    return gomlx::mx::guard([&] {
        const mc::array &x = h->a;
        mc::Dtype t = x.dtype();
        gm_layer_step_args a;
        std::memset(&a, 0, sizeof a);
        if (!to_fdtype(t, &a.dtype)) unsuitable("activation dtype");
        if (x.ndim() != 3 || x.shape(0) != 1 || x.shape(1) != 1) unsuitable("h must be [1, 1, hidden]");
        a.hidden = x.shape(2);
        a.n_heads = s->n_heads;
        a.n_kv_heads = s->n_kv_heads;
        a.head_dim = s->head_dim;
        a.eps = s->eps;
        a.gelu = s->gelu;
        a.position = s->position;
        a.rope_traditional = s->rope_traditional;
        a.slot = s->slot;
        a.first = s->first;
        a.attn_scale = s->attn_scale;
        a.softcap = s->softcap;

        std::vector<mc::array> inputs{x};
        Slots sl;
        sl.attn_norm = add_norm(inputs, s->attn_norm, t, a.hidden);
        sl.mlp_norm = add_norm(inputs, s->mlp_norm, t, a.hidden);
        sl.post_attn_norm = add_norm(inputs, s->post_attn_norm, t, a.hidden);
        sl.post_mlp_norm = add_norm(inputs, s->post_mlp_norm, t, a.hidden);
        add_linear(inputs, s->qkv, t, &a.qkv, sl.lin[0]);
        add_linear(inputs, s->o, t, &a.o, sl.lin[1]);
        add_linear(inputs, s->gate_up, t, &a.gate_up, sl.lin[2]);
        add_linear(inputs, s->down, t, &a.down, sl.lin[3]);
        const mc::array &f = s->inv_freq->a, &k = s->k_cache->a, &v = s->v_cache->a;
        if (f.dtype() != mc::float32 || f.size() * 2 != (size_t)a.head_dim)
            unsuitable("inv_freq must be float32 [head_dim/2]");
        if (k.dtype() != t || k.ndim() != 4 || k.shape(0) != 1 || k.shape(1) != a.n_kv_heads ||
            k.shape(3) != a.head_dim || v.shape() != k.shape() || v.dtype() != t)
            unsuitable("the KV cache's shape or dtype");
        a.capacity = k.shape(2);
        sl.inv_freq = add_input(inputs, s->inv_freq);
        sl.k_cache = add_input(inputs, s->k_cache);
        sl.v_cache = add_input(inputs, s->v_cache);
        if (!gm_layer_step_supported(&a)) unsuitable("sizes the kernel does not handle");
        mc::Stream cpu = mc::default_stream(mc::Device(mc::Device::cpu));
        return mc::array(x.shape(), t, std::make_shared<CpuLayerStep>(cpu, a, sl), std::move(inputs));
    });
}
