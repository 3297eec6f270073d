"""`gomlx bench`'s bandwidth roofline: the weight bytes a decoded token reads
(every weight once, but an untied input embedding table only its one row),
checked against the tensors the model files list, and the roofline derived
from the measured read rate the way the JSON says.

The MLX-format fixtures are read through their safetensors headers (not the
engine); the GGUF fixtures' share of this is in test_gguf.py.
"""
import json
import os
import struct

import pytest

from conftest import ROOT, run_gomlx

MODELS = os.path.join(ROOT, "testdata", "models")
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "U8": 1, "I8": 1}


def safetensors_bytes(path):
    """{tensor name: bytes} from a safetensors file's header."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in t["shape"]:
            count *= d
        assert count * DTYPE_BYTES[t["dtype"]] == t["data_offsets"][1] - t["data_offsets"][0], name
        out[name] = count * DTYPE_BYTES[t["dtype"]]
    return out


def bench_json(model, *extra):
    p = run_gomlx(["bench", model, "--prompt-tokens", "4", "--gen", "2", "--runs", "1", "--json", *extra])
    return json.loads(p.stdout)


@pytest.mark.parametrize("name", ["llama-tiny", "llama-tiny-q4", "llama-tiny-tied-q4", "qwen2-tiny-q4"])
def test_step_weight_bytes_match_the_files(name):
    d = os.path.join(MODELS, name)
    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tensors = safetensors_bytes(os.path.join(d, "model.safetensors"))
    total = sum(tensors.values())
    embed = sum(b for k, b in tensors.items() if k.startswith("model.embed_tokens."))
    untied = any(k.startswith("lm_head.") for k in tensors)
    assert untied == (not cfg.get("tie_word_embeddings", False))
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "llama3":
        total += 4 * cfg["head_dim"] // 2  # the engine's float32 table of RoPE frequencies
    got = bench_json(d, "--no-bandwidth")
    assert got["weight_bytes"] == total
    want = total - (embed - embed // cfg["vocab_size"]) if untied else total
    assert got["step_weight_bytes"] == want
    assert got["read_gbps"] is None and got["roofline_tps"] is None
    assert all(r["roofline_pct"] is None for r in got["results"])


def test_roofline_is_decode_over_measured_bandwidth():
    got = bench_json(os.path.join(MODELS, "llama-tiny-q4"))
    assert got["read_probe"].startswith("cpu, ")
    gbps = got["read_gbps"]
    assert gbps > 0.1, got["read_probe"]
    roof = gbps * 1e9 / got["step_weight_bytes"]
    assert got["roofline_tps"] == pytest.approx(roof, rel=1e-3)
    for r in got["results"]:
        assert r["roofline_pct"] == pytest.approx(100 * r["decode_tps"] / got["roofline_tps"], rel=1e-3, abs=0.01)
