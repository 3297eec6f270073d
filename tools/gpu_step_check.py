"""The one-token GPU step through our one-kernel layer (src/mlx/cuda_layer.cpp,
src/models/fused_step.c) inside real-shape models: logits at every position of a short sequence fed
one token at a time (`gomlx logits --chunk 1`, the decode path, RoPE at
offsets 0..n-1), with the kernel on and off (GOMLX_CUDA_LAYER), against
mlx-lm with the model's float parameters in float32 (the precise
reference) and in bfloat16. Ours-on should be no further from the float32
logits than ours-off. Run on the
NVIDIA machine after `source tools/gpu_env.sh WHEELS`; needs build/gomlx.

    python3 tools/gpu_step_check.py MODEL_DIR..."""
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
IDS = [1, 1000, 20000, 5, 777, 31000, 42, 9000, 123, 2500, 17, 30001]


def gomlx_logits(model, on):
    tmp = tempfile.mkdtemp()
    try:
        out = os.path.join(tmp, "logits.npy")
        env = dict(os.environ, GOMLX_CUDA_LAYER="1" if on else "0")
        subprocess.run([str(ROOT / "build" / "gomlx"), "logits", model, "--ids", ",".join(map(str, IDS)),
                        "--chunk", "1", "--out", out], check=True, env=env)
        return np.load(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check(model):
    ref, _ = mlx_lm.load(model)
    f32, _ = mlx_lm.load(model)
    f32.set_dtype(mx.float32)
    x = mx.array([IDS])
    theirs = np.array(ref(x)[0].astype(mx.float32))
    exact = np.array(f32(x)[0].astype(mx.float32))
    on, off = gomlx_logits(model, True), gomlx_logits(model, False)
    worst, top_on, top_off = 0.0, 0, 0
    for p in range(len(IDS)):
        scale = np.abs(exact[p]).max()
        rel = lambda a: np.abs(a[p] - exact[p]).max() / scale
        worst = max(worst, rel(on) / max(rel(off), 1e-9))
        top_on += int(np.argmax(on[p]) == np.argmax(exact[p]))
        top_off += int(np.argmax(off[p]) == np.argmax(exact[p]))
        print(f"  pos {p:2d}: to float32 logits: ours {rel(on):.2e}, off {rel(off):.2e}, "
              f"mlx-lm bf16 {rel(theirs):.2e}", flush=True)
    print(f"{Path(model).name}: worst ratio on/off {worst:.2f}; top token as float32's: "
          f"on {top_on}/{len(IDS)}, off {top_off}/{len(IDS)}", flush=True)
    return worst <= 1.5 and top_on >= top_off


def main():
    ok = all([check(m) for m in sys.argv[1:]])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
