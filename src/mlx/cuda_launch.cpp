// cuda_launch.cpp - see cuda_launch.h.
#include "mlx/cuda_launch.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include <mlx/allocator.h>
#include <mlx/primitives.h>

namespace mc = mlx::core;

namespace gomlx::cuda_launch {
namespace {

// CUDA's dim3, by value as the encoder takes it.
struct Dim3 {
    unsigned x, y, z;
};

// MLX 0.32's cu::get_command_encoder and three CommandEncoder members (the
// object comes first, as `this`), and the driver's module loader.
struct Api {
    void *(*get_encoder)(mc::Stream);
    void (*set_input)(void *encoder, const mc::array &);
    void (*set_output)(void *encoder, const mc::array &);
    void (*add_kernel)(void *encoder, void *function, Dim3 grid, Dim3 block, Dim3 cluster,
                       unsigned smem, void **params);
    int (*load_module)(void **module, const void *image);
    int (*get_function)(void **function, void *module, const char *name);
};

const Api *api() {
    static Api a;
    static const bool ok = [] {
        const char *e = getenv("GOMLX_CUDA_DIRECT"); // experimental: on only when 1
        if (!e || strcmp(e, "1")) return false;
        void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (!cuda) return false;
        a.get_encoder = (decltype(a.get_encoder))dlsym(RTLD_DEFAULT, "_ZN3mlx4core2cu19get_command_encoderENS0_6StreamE");
        a.set_input = (decltype(a.set_input))dlsym(RTLD_DEFAULT, "_ZN3mlx4core2cu14CommandEncoder15set_input_arrayERKNS0_5arrayE");
        a.set_output = (decltype(a.set_output))dlsym(RTLD_DEFAULT, "_ZN3mlx4core2cu14CommandEncoder16set_output_arrayERKNS0_5arrayE");
        a.add_kernel = (decltype(a.add_kernel))dlsym(
            RTLD_DEFAULT, "_ZN3mlx4core2cu14CommandEncoder19add_kernel_node_rawEP9CUfunc_st4dim3S5_S5_jPPv");
        a.load_module = (decltype(a.load_module))dlsym(cuda, "cuModuleLoadData");
        a.get_function = (decltype(a.get_function))dlsym(cuda, "cuModuleGetFunction");
        return a.get_encoder && a.set_input && a.set_output && a.add_kernel && a.load_module && a.get_function;
    }();
    return ok ? &a : nullptr;
}

std::mutex g_mu;
std::map<std::string, void *> g_functions;  // kernel name -> CUfunction (modules stay loaded)

// The kernel's function, its module loaded on first use (on the thread
// that evaluates, where MLX has made the device's context current).
void *function_of(const cuda_jit::Kernel &k) {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_functions.find(k.name);
    if (it != g_functions.end()) return it->second;
    void *module = nullptr, *fn = nullptr;
    if (api()->load_module(&module, k.ptx.data()) != 0 || api()->get_function(&fn, module, k.name.c_str()) != 0)
        throw std::runtime_error("could not load the compiled kernel " + k.name);
    g_functions.emplace(k.name, fn);
    return fn;
}

class Launch : public mc::UnaryPrimitive {
   public:
    Launch(mc::Stream s, const cuda_jit::Kernel &k, std::vector<Scalar> scalars, int blocks, int threads,
           int smem, int reuse)
        : mc::UnaryPrimitive(s), kernel_(k), scalars_(std::move(scalars)), blocks_(blocks), threads_(threads),
          smem_(smem), reuse_(reuse) {}

    void eval_cpu(const std::vector<mc::array> &, mc::array &) override {
        throw std::runtime_error("GomlxCudaLaunch runs on CUDA GPUs only");
    }

    void eval_gpu(const std::vector<mc::array> &in, mc::array &out) override {
        // The output takes over an input's buffer, which MLX allocated the
        // way its own ops do (stream-ordered); see node().
        out.copy_shared_buffer(in[reuse_]);
        const Api *a = api();
        void *fn = function_of(kernel_);
        void *encoder = a->get_encoder(stream());
        for (const mc::array &x : in)
            if (!x.flags().row_contiguous)
                throw std::invalid_argument(kernel_.name + ": an input is not contiguous");
        for (const mc::array &x : in) a->set_input(encoder, x);
        a->set_output(encoder, out);
        // Argument values, then a pointer to each (the encoder copies them).
        std::vector<void *> pointers;
        for (const mc::array &x : in) pointers.push_back(const_cast<void *>(x.data<void>()));
        pointers.push_back(out.data<void>());
        std::vector<void *> params;
        for (void *&p : pointers) params.push_back(&p);
        for (Scalar &s : scalars_) params.push_back(s.is_float ? static_cast<void *>(&s.f) : &s.i);
        a->add_kernel(encoder, fn, Dim3{(unsigned)blocks_, 1, 1}, Dim3{(unsigned)threads_, 1, 1}, Dim3{1, 1, 1},
                      (unsigned)smem_, params.data());
    }

    const char *name() const override { return "GomlxCudaLaunch"; }

   private:
    const cuda_jit::Kernel &kernel_;  // kept for the process's life (a static map owns it)
    std::vector<Scalar> scalars_;
    int blocks_, threads_, smem_, reuse_;
};

}  // namespace

bool available() { return api() != nullptr; }

mc::array node(const cuda_jit::Kernel &k, std::vector<mc::array> inputs, int reuse,
               std::vector<Scalar> scalars, int blocks, int threads, int smem) {
    if (!available()) throw std::runtime_error("direct CUDA launches are not available");
    if (reuse < 0 || reuse >= (int)inputs.size()) throw std::invalid_argument("cuda_launch::node: reuse");
    const mc::Shape out_shape = inputs[reuse].shape();
    const mc::Dtype out_dtype = inputs[reuse].dtype();
    mc::Stream s = mc::default_stream(mc::Device::gpu);
    return mc::array(out_shape, out_dtype,
                     std::make_shared<Launch>(s, k, std::move(scalars), blocks, threads, smem, reuse),
                     std::move(inputs));
}

}  // namespace gomlx::cuda_launch
