"""GPU numerics against the CPU-made references: for a few fixtures, the
logits of gomlx on the GPU and of mlx-lm on the same GPU, each against
reference/logits_mlx.npy (mlx-lm on the CPU), and against each other. Run on
the NVIDIA machine after `source tools/gpu_env.sh WHEELS` (needs build/gomlx)."""
import json, subprocess, sys, numpy as np, mlx.core as mx, mlx_lm
for name in ["llama-tiny", "llama-tiny-q8", "llama-tiny-q4-mixed", "llama-tiny-q4", "qwen2-tiny-q4"]:
    d = f"testdata/models/{name}"
    g = json.load(open(f"{d}/reference/greedy.json"))
    ids = g["prompt_ids"]
    ref = np.load(f"{d}/reference/logits_mlx.npy")
    subprocess.run(["build/gomlx", "logits", d, "--ids", ",".join(map(str, ids)), "--out", "/tmp/l.npy"], check=True)
    ours = np.load("/tmp/l.npy")
    model, _ = mlx_lm.load(d)
    theirs = np.array(model(mx.array(ids)[None])[0].astype(mx.float32))
    print(f"{name}: gomlx-gpu vs cpu-ref {np.abs(ours-ref).max():.2e}; mlx-lm-gpu vs cpu-ref {np.abs(theirs-ref).max():.2e}; gomlx vs mlx-lm on gpu {np.abs(ours-theirs).max():.2e}")
