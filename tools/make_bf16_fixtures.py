"""Half-precision quantized fixtures: mlx-lm's own bfloat16/float16 4-bit
conversions of tiny float32 fixtures, with mlx-lm's logits and greedy tokens
as the reference (mlx-community's models are bfloat16; MLX rounds every
intermediate to that dtype, and so must we).

For each source fixture under testdata/models/ this writes
testdata/models-half/<name>-q4-<dtype>/ (MLX model + reference/):
  logits_f32.npy        mlx-lm's logits for the prompt with the same
                        quantized weights (bfloat16/float16 scales, exactly
                        widened) computed in float32: the math of this
                        model without half-precision activations
  logits_mlx.npy        mlx-lm's logits in the model's dtype on the CPU
  greedy.json           prompt ids; 40 greedy tokens with their top-1
                        margins from mlx-lm in half precision and in
                        float32; how far mlx-lm's half-precision logits are
                        from float32

MLX's CPU quantized matmul accumulates in the activation dtype (a sum of
hundreds of bfloat16 roundings); its GPU kernels and ours accumulate in
float32 and round once. So mlx-lm on the CPU is not the yardstick for
half-precision error: the float32 computation is, and an engine should be
no further from it than mlx-lm is.

Run with the tools venv (tools/make_fixtures.sh has it):
  .tools-venv/bin/python tools/make_bf16_fixtures.py
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import mlx.core as mx
import mlx_lm
from mlx_lm.convert import convert as mlx_convert
from mlx_lm.generate import generate_step
from mlx.utils import tree_flatten

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "testdata" / "models"
OUT = REPO / "testdata" / "models-half"
GEN_TOKENS = 40
# llama: llama3 rope scaling, untied; qwen2: q/k/v bias, tied embeddings.
SOURCES = [("llama-tiny", "bfloat16"), ("qwen2-tiny", "bfloat16"), ("llama-tiny", "float16")]


def margin(row):
    top2 = np.sort(np.asarray(row, dtype=np.float64))[-2:]
    return float(top2[1] - top2[0])


def widened(model):
    """The same model with every floating array (quantization scales and
    biases included: widening is exact) in float32."""
    params = tree_flatten(model.parameters())
    model.load_weights([(k, v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v)
                        for k, v in params])
    return model


def reference(path, prompt):
    model, _ = mlx_lm.load(str(path))
    full = np.array(model(mx.array(prompt)[None])[0].astype(mx.float32))
    wide = widened(mlx_lm.load(str(path))[0])
    f32 = np.array(wide(mx.array(prompt)[None])[0])
    return full, f32, greedy(model, prompt), greedy(wide, prompt)


def greedy(model, prompt):
    tokens, margins = [], []
    for tok, logprobs in generate_step(mx.array(prompt), model, max_tokens=GEN_TOKENS,
                                       sampler=lambda lp: mx.argmax(lp, axis=-1)):
        tokens.append(int(tok))
        margins.append(round(margin(np.array(logprobs.astype(mx.float32))), 6))
    return tokens, margins


def build(src_name, dtype):
    src = SRC / src_name
    name = f"{src_name}-q4-{dtype}"
    prompt = json.loads((src / "reference" / "greedy.json").read_text())["prompt_ids"]
    with tempfile.TemporaryDirectory(prefix="gomlx-half-") as tmp:
        hf = Path(tmp) / "hf"
        shutil.copytree(src, hf, ignore=shutil.ignore_patterns("reference", "README.md"))
        out = Path(tmp) / name
        sys.stdout = open(os.devnull, "w")
        try:
            mlx_convert(str(hf), str(out), quantize=True, q_group_size=32, q_bits=4, dtype=dtype)
        finally:
            sys.stdout.close()
            sys.stdout = sys.__stdout__
        full, f32, (tokens, margins), (f32_tokens, f32_margins) = reference(out, prompt)
        dst = OUT / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(out, dst)
        (dst / "README.md").unlink(missing_ok=True)
    ref = dst / "reference"
    ref.mkdir()
    np.save(ref / "logits_mlx.npy", full.astype(np.float32))
    np.save(ref / "logits_f32.npy", f32.astype(np.float32))
    err = float(np.max(np.abs(full.astype(np.float64) - f32)))
    record = {"prompt_ids": prompt, "mlx_tokens": tokens, "mlx_margins": margins,
              "f32_tokens": f32_tokens, "f32_margins": f32_margins, "dtype": dtype,
              "mlx_vs_f32_max_abs": err,
              "logits_max_abs": float(np.max(np.abs(f32)))}
    (ref / "greedy.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: logits up to {record['logits_max_abs']:.2f}, mlx-lm ({dtype}, CPU) vs float32 "
          f"max abs {err:.4f}, min greedy margin {min(margins):.4f}")


def main():
    print("versions: mlx", mx.__version__, "mlx-lm", mlx_lm.__version__)
    OUT.mkdir(parents=True, exist_ok=True)
    for src_name, dtype in SOURCES:
        build(src_name, dtype)


if __name__ == "__main__":
    main()
