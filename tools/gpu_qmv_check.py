"""Our CUDA mat-vec inside a real-shape model: the logits of a one-token
step (which takes the mat-vec path: MLP and vocabulary of a 7B model) with
our kernel on and off, next to mlx-lm's on the same GPU (bfloat16, as ours)
and against mlx-lm with the model's float parameters in float32 (the more
precise reference). Ours-on should be no further from the float32 logits
than ours-off (= mlx-lm's bfloat16, bit for bit). Run on the NVIDIA machine
after `source tools/gpu_env.sh WHEELS`; needs build/gomlx.

    python3 tools/gpu_qmv_check.py MODEL_DIR [TOKEN_ID ...]"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlx.core as mx
import mlx_lm
import numpy as np


ROOT = Path(__file__).resolve().parent.parent


def gomlx_logits(model, tok, on):
    tmp = tempfile.mkdtemp()
    try:
        out = os.path.join(tmp, "logits.npy")
        env = dict(os.environ, GOMLX_CUDA_QMV="1" if on else "0")
        subprocess.run([str(ROOT / "build" / "gomlx"), "logits", model, "--ids", str(tok), "--out", out],
                       check=True, env=env)
        return np.load(out).reshape(-1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    model = sys.argv[1]
    toks = [int(t) for t in sys.argv[2:]] or [1, 1000, 20000]
    ref_model, _ = mlx_lm.load(model)
    f32_model, _ = mlx_lm.load(model)
    f32_model.set_dtype(mx.float32)
    worst, same_top = 0.0, True
    for tok in toks:
        theirs = np.array(ref_model(mx.array([[tok]]))[0, -1].astype(mx.float32))
        exact = np.array(f32_model(mx.array([[tok]]))[0, -1].astype(mx.float32))
        on, off = gomlx_logits(model, tok, True), gomlx_logits(model, tok, False)
        scale = np.abs(exact).max()
        rel = lambda a, b: np.abs(a - b).max() / scale
        print(f"token {tok}: to float32 logits: ours on {rel(on, exact):.2e}, off {rel(off, exact):.2e}, "
              f"mlx-lm {rel(theirs, exact):.2e}; off vs mlx-lm {rel(off, theirs):.2e}; argmax on/off/f32: "
              f"{np.argmax(on)}/{np.argmax(off)}/{np.argmax(exact)}", flush=True)
        worst = max(worst, rel(on, exact) / max(rel(off, exact), 1e-9))
        same_top &= bool(np.argmax(on) == np.argmax(exact))
    print(f"worst ratio of distances to the float32 logits, ours on / off: {worst:.2f}")
    # Fails when ours is clearly further from the float32 logits than MLX's kernel.
    return 0 if worst <= 1.5 and same_top else 1


if __name__ == "__main__":
    sys.exit(main())
