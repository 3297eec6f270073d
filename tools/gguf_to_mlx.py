#!/usr/bin/env python3
"""A Llama GGUF file as an MLX model folder that mlx-lm loads, for
benchmarking mlx-lm and gomlx on the very same weights.

MLX's GGUF reader turns Q4_0/Q4_1/Q8_0 blocks into affine triples with
groups of 32; we rename llama.cpp's tensors to Hugging Face names and mark
the config rope_traditional, because llama.cpp stores Q/K permuted for
interleaved rotary pairs. The tokenizer.json is built from the GGUF's
vocabulary with HF tokenizers.

    python tools/gguf_to_mlx.py models/SmolLM2-135M-Instruct.Q4_1.gguf bench-models/smollm2-135m-q4_1
"""
import json
import re
import sys
from pathlib import Path

import mlx.core as mx

NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
         "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(name: str) -> str:
    stem, suffix = name.rsplit(".", 1)
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if m:
        return f"model.layers.{m[1]}.{NAMES[m[2]]}.{suffix}"
    return {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}[stem] + "." + suffix


def scalar(v):
    return v.item() if isinstance(v, mx.array) else v


def write_tokenizer(meta, out: Path) -> None:
    """tokenizer.json from the GGUF's byte-level BPE vocabulary, built with
    HF tokenizers (GPT-2 split, as transformers converts "gpt2" vocabularies)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    assert meta["tokenizer.ggml.model"] == "gpt2", "only byte-level BPE vocabularies"
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    types = [int(t) for t in meta["tokenizer.ggml.token_type"].tolist()]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    tok.save(str(out / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast",
           "bos_token": tokens[int(scalar(meta["tokenizer.ggml.bos_token_id"]))],
           "eos_token": tokens[int(scalar(meta["tokenizer.ggml.eos_token_id"]))]}
    if "tokenizer.chat_template" in meta:
        cfg["chat_template"] = meta["tokenizer.chat_template"]
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))


def main(src: str, dest: str) -> int:
    weights, meta = mx.load(src, return_metadata=True)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    arch = meta["general.architecture"]
    assert arch == "llama", f"only llama GGUF files, not {arch}"
    w = {hf_name(k): v for k, v in weights.items()}
    quant = {"group_size": 32, "bits": 4}
    for k, v in w.items():
        if k.endswith(".scales"):
            base = k[: -len(".scales")]
            bits = w[base + ".weight"].shape[1] * 32 // (v.shape[1] * 32)
            if bits != 4:
                quant[base] = {"group_size": 32, "bits": bits}
    heads = int(scalar(meta[f"{arch}.attention.head_count"]))
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "hidden_size": int(scalar(meta[f"{arch}.embedding_length"])),
        "intermediate_size": int(scalar(meta[f"{arch}.feed_forward_length"])),
        "num_hidden_layers": int(scalar(meta[f"{arch}.block_count"])),
        "num_attention_heads": heads,
        "num_key_value_heads": int(scalar(meta.get(f"{arch}.attention.head_count_kv", heads))),
        "rms_norm_eps": float(scalar(meta[f"{arch}.attention.layer_norm_rms_epsilon"])),
        "rope_theta": float(scalar(meta.get(f"{arch}.rope.freq_base", 10000.0))),
        "rope_traditional": True,
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "max_position_embeddings": int(scalar(meta[f"{arch}.context_length"])),
        "tie_word_embeddings": "lm_head.weight" not in w,
        "bos_token_id": int(scalar(meta["tokenizer.ggml.bos_token_id"])),
        "eos_token_id": int(scalar(meta["tokenizer.ggml.eos_token_id"])),
        "quantization": quant,
    }
    mx.save_safetensors(str(out / "model.safetensors"), w, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    write_tokenizer(meta, out)
    print(f"{out}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
