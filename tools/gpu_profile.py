"""Where a GPU decode step goes, with MLX alone (run on the NVIDIA machine
after `source tools/gpu_env.sh WHEELS`):

1. the quantized mat-vec kernels MLX runs for a decode step (4-bit, group
   64, bfloat16 x, one token) on real model shapes: time per step for all of
   a model's projections and the bandwidth that makes;
2. the cost of a kernel launch: a chain of small dependent elementwise ops
   timed per op.

Together with `gomlx bench` (step time, kernels per step) this says how
much of a step is reading weights and how much is launching kernels."""
import time

import mlx.core as mx

SHAPES = {  # (hidden, intermediate, q heads * d, kv heads * d, layers, vocab)
    "llama-3.2-3b": (3072, 8192, 3072, 1024, 28, 128256),
    "mistral-7b": (4096, 14336, 4096, 1024, 32, 32000),
}


def timed(fn, reps):
    fn()
    mx.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    mx.synchronize()
    return (time.perf_counter() - t) / reps


def qmv_step(name):
    h, ff, qd, kvd, layers, vocab = SHAPES[name]
    mats = [(qd + 2 * kvd, h), (h, qd), (2 * ff, h), (h, ff)]  # stacked as gomlx runs them
    weights = []
    for n, k in mats:
        w = mx.random.normal((n, k)).astype(mx.bfloat16)
        weights.append(mx.quantize(w, group_size=64, bits=4))
    x = {k: mx.random.normal((1, k)).astype(mx.bfloat16) for _, k in mats}
    mx.eval(weights, list(x.values()))
    nbytes = sum(wq.nbytes + s.nbytes + b.nbytes for wq, s, b in weights)

    def step():
        outs = []
        for _ in range(layers):
            for (n, k), (wq, s, b) in zip(mats, weights):
                outs.append(mx.quantized_matmul(x[k], wq, s, b, transpose=True, group_size=64, bits=4))
        mx.eval(outs)

    t = timed(step, 5)
    per_kernel = t / (layers * len(mats))
    print(f"{name}: {layers * len(mats)} quantized mat-vecs per step (no unembedding) take "
          f"{t * 1e3:.2f} ms for {nbytes * layers / 1e9:.2f} GB: {nbytes * layers / t / 1e12:.2f} TB/s, "
          f"{per_kernel * 1e6:.1f} us each", flush=True)


def launch_floor():
    a = mx.zeros((1, 4096), dtype=mx.bfloat16)
    mx.eval(a)
    for n in (100, 400):
        def chain():
            y = a
            for _ in range(n):
                y = y + 1
            mx.eval(y)
        t = timed(chain, 10)
        print(f"chain of {n} dependent small adds: {t * 1e3:.2f} ms, {t / n * 1e6:.2f} us per op", flush=True)


if __name__ == "__main__":
    print("MLX", mx.__version__, mx.default_device())
    launch_floor()
    for name in SHAPES:
        qmv_step(name)
