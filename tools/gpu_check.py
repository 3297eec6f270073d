"""GPU numerics against the CPU-made references: for a few fixtures, the
logits of gomlx on the GPU and of mlx-lm on the same GPU, each against
reference/logits_mlx.npy (mlx-lm on the CPU; transformers' logits_hf.npy
where the fixture says mlx-lm is not a reference, as for Gemma 2, whose
sliding window mlx-lm 0.32.2 ignores), and against each other. Run on
the NVIDIA machine after `source tools/gpu_env.sh WHEELS` (needs build/gomlx)."""
import json, os, subprocess, sys, tempfile, numpy as np, mlx.core as mx, mlx_lm
names = sys.argv[1:] or ["llama-tiny", "llama-tiny-q8", "llama-tiny-q4-mixed", "llama-tiny-q4", "qwen2-tiny-q4",
                         "gemma2-tiny", "gemma2-tiny-q4", "mistral-tiny-q4"]
for name in names:
    d = f"testdata/models/{name}"
    g = json.load(open(f"{d}/reference/greedy.json"))
    ids = g["prompt_ids"]
    which = "mlx" if g.get("mlx_lm_exact", True) else "hf_dequant" if "hf_dequant_tokens" in g else "hf"
    ref = np.load(f"{d}/reference/logits_{which}.npy")
    out = os.path.join(tempfile.mkdtemp(), "logits.npy")
    subprocess.run(["build/gomlx", "logits", d, "--ids", ",".join(map(str, ids)), "--out", out], check=True)
    ours = np.load(out)
    model, _ = mlx_lm.load(d)
    theirs = np.array(model(mx.array(ids)[None])[0].astype(mx.float32))
    print(f"{name}: gomlx-gpu vs {which} cpu-ref {np.abs(ours-ref).max():.2e}; mlx-lm-gpu vs cpu-ref {np.abs(theirs-ref).max():.2e}; gomlx vs mlx-lm on gpu {np.abs(ours-theirs).max():.2e}")
