"""What a graph node costs on the GPU, by kind of node, from Python: a
chain of N dependent nodes of one kind is built (timed apart) and then
evaluated. With tiny arrays the eval time per node is MLX's host cost of
handing the node to the device, or the device's latency for a dependent
kernel where that is longer; `bench_dispatch` (tools/c) splits the two
(docs/PERFORMANCE.md, fifth session). A decode step of a 3B model is ~700
such nodes and is paced by the host. Run on the NVIDIA machine after
`source tools/gpu_env.sh WHEELS`."""
import time

import mlx.core as mx

N = 400


def measure(name, make_chain, reps=10):
    build = run = 0.0
    for r in range(reps + 1):
        t0 = time.perf_counter()
        y = make_chain()
        t1 = time.perf_counter()
        mx.eval(y)
        mx.synchronize()
        t2 = time.perf_counter()
        if r:  # the first round compiles kernels
            build += t1 - t0
            run += t2 - t1
    print(f"{name:34s} build {build / reps / N * 1e6:6.2f} us/node   eval {run / reps / N * 1e6:6.2f} us/node",
          flush=True)


def main():
    print("MLX", mx.__version__, mx.default_device())
    a = mx.zeros((1, 1, 4096), dtype=mx.bfloat16)
    cache = mx.zeros((1, 8, 512, 128), dtype=mx.bfloat16)
    kv = mx.zeros((1, 8, 1, 128), dtype=mx.bfloat16)
    w = mx.random.normal((4096, 4096)).astype(mx.bfloat16)
    wq, s, b = mx.quantize(w, group_size=64, bits=4)
    nw = mx.ones((4096,), dtype=mx.bfloat16)
    q = mx.zeros((1, 32, 1, 128), dtype=mx.bfloat16)
    mx.eval(a, cache, kv, wq, s, b, nw, q)

    def chain(step):
        def make():
            y = a
            for i in range(N):
                y = step(y, i)
            return y
        return make

    measure("add (one kernel)", chain(lambda y, i: y + 1))
    measure("reshape (a view)", chain(lambda y, i: y.reshape(1, 4096, 1) if i % 2 == 0 else y.reshape(1, 1, 4096)))
    measure("slice (a view)", chain(lambda y, i: y[..., : 4096 - i]))
    measure("rms_norm", chain(lambda y, i: mx.fast.rms_norm(y, nw, 1e-5)))
    measure("quantized_matmul 4096x4096", chain(lambda y, i: mx.quantized_matmul(y, wq, s, b, True, 64, 4)))

    def updates():
        c = cache
        for i in range(N):
            c[:, :, i % 512 : i % 512 + 1, :] = kv
        return c
    measure("slice_update (KV write)", updates)

    def ropes():
        y = q
        for i in range(N):
            y = mx.fast.rope(y, 128, traditional=False, base=10000.0, scale=1.0, offset=i)
        return y
    measure("rope", ropes)

    def attn():
        y = q
        for i in range(N):
            y = mx.fast.scaled_dot_product_attention(y, cache[:, :, :300], cache[:, :, :300], scale=0.088)
        return y
    measure("sdpa over 300 keys (+2 slices)", attn)


if __name__ == "__main__":
    main()
