// cuda_read_probe.cpp - how fast the GPU MLX runs on reads its memory: the
// denominator of `gomlx bench`'s bandwidth roofline, measured on the card at
// hand instead of read off a data sheet (an H100's 3.35 TB/s is a peak no
// kernel reaches).
//
// The probe kernel (cuda_read_probe_source.h) goes through MLX's command
// graph like our other kernels; a pass is several launches evaluated
// together, so the host's cost of one eval is spread over them.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/fast.h>
#include <mlx/mlx.h>

#include "mlx/cuda_jit.h"
#include "mlx/cuda_read_probe_source.h"
#include "mlx/mx.h"

namespace mc = mlx::core;
using mc::array;

namespace {

constexpr int kThreads = 512;

array probe(const gomlx::cuda_jit::Kernel &k, const std::string &code, const array &buf, int blocks) {
    int n = (int)(buf.size() / 4); // 16-byte words
    return mc::fast::precompiled_cuda_kernel(k.name, code, {buf}, {{blocks * kThreads}}, {mc::uint32},
                                             {n}, {blocks * kThreads, 1, 1}, {kThreads, 1, 1}, 0,
                                             std::nullopt, true)[0];
}

} // namespace

double mx_cuda_read_gbps(size_t bytes, int passes, char *err, size_t err_len) {
    std::string error;
    double best = 0;
    try {
        if (!mc::cu::is_available()) {
            error = "MLX's CUDA backend is not available";
        } else {
            // 16-byte words; at most 4 GiB, so the array's length in
            // 4-byte elements and the kernel's index stay within an int.
            size_t words = bytes / 16;
            if (words > (size_t)1 << 28) words = (size_t)1 << 28;
            if (words < 1) words = 1;
            int sms = gomlx::cuda_jit::sm_count();
            int blocks = (sms > 0 ? sms : 132) * 4;
            array buf = mc::full({(int)(words * 4)}, 0x5a5a5a5a, mc::uint32);
            mc::eval(buf);
            static gomlx::cuda_jit::Kernel k{"gomlx_read_probe", "", false};
            static std::string prepare_error;
            static bool prepared = gomlx::cuda_jit::prepare(
                k, kCudaReadProbeSource, {},
                [&](const std::string &code) { mc::eval(probe(k, code, buf, blocks)); }, &prepare_error);
            if (!prepared) {
                error = prepare_error;
            } else {
                const int launches = 24;
                for (int p = 0; p < passes; p++) {
                    std::vector<array> outs;
                    for (int l = 0; l < launches; l++) outs.push_back(probe(k, k.code(), buf, blocks));
                    auto t0 = std::chrono::steady_clock::now();
                    mc::eval(outs);
                    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                    double gbps = (double)words * 16 * launches / s / 1e9;
                    if (gbps > best) best = gbps;
                }
            }
        }
    } catch (const std::exception &e) {
        error = e.what();
        best = 0;
    }
    if (err && err_len) snprintf(err, err_len, "%s", best > 0 ? "" : error.c_str());
    return best;
}
