"""GGUF loading against transformers: the tiny Llama files of testdata/gguf/
(made by tools/make_gguf_fixtures.py) through the gomlx binary.

What is proven, per file:
 - logits for 16 fixed ids against transformers on the same file;
 - 32 greedy tokens (KV cache, EOS ignored);
 - `gomlx info` notes say what was re-quantized, and the weights in memory
   are what that conversion should give (exact byte count);
and the SentencePiece-style "llama" vocabulary of llama-spm-q2_k tokenizes
as transformers' GGUF tokenizer does. Bad GGUF files (a tensor type the
engine refuses, an unknown type id, an unsupported architecture, k-quant
rows that do not fill their blocks, a 1-D k-quant, sizes that are not whole
numbers an int holds, reals past a float, float64 metadata) fail with a message
naming the problem. (Missing, garbage and truncated GGUF files are covered
by tests/c/test_bad_inputs.c and tests/c/test_mx.c.)

Tolerances. MLX turns Q4_0/Q4_1/Q8_0 into affine triples exactly; the
engine turns k-quants into MLX affine, group 32 (src/io/gguf.c):
 - Q4_K keeps its own grid (each 32-value sub-block is an affine group);
   only its scales/mins are rounded to float16: measured at most 0.016 of a
   Q4_K step (conversion_study.json, tensors in <name>.json).
 - Q6_K → 6 bits and Q2_K → 4 bits are lossy (16-value sub-blocks: one
   affine group of 32 spans two scales): on these random models the logits
   move by up to 0.84 (3.2% relative norm, llama-q4_k_m's Q6_K output layer)
   and 4.3 (21%, llama-spm-q2_k's Q2_K everywhere); this is recorded in
   each .json (engine_conversion) with the per-tensor cost.
So the engine is held to two references: transformers with the conversion's
values swapped in (logits_engine_conversion.npy) within ENGINE_TOL, which
is float32 arithmetic only (measured 2.6e-5 and 6.1e-5 max abs), with the
same 32 greedy tokens; and transformers on the file itself within the
conversion's recorded cost + ENGINE_TOL (the triangle inequality). Where
nothing lossy is converted (llama-q8_0, and llama-q4_k_m's greedy run) the
two references agree and the tokens equal transformers' on the file.
"""
import json
import os
import re
import struct

import numpy as np
import pytest

from conftest import ROOT, run_gomlx

DIR = os.path.join(ROOT, "testdata", "gguf")
FIXTURES = ["llama-q4_k_m", "llama-q8_0", "llama-spm-q2_k"]
ENGINE_TOL = 5e-4          # max abs logits vs the engine-conversion reference
ENGINE_REL_TOL = 1e-5      # relative Frobenius norm, same comparison
# MLX affine width per GGML type as the engine converts (Q4_0/Q4_1/Q8_0 by
# MLX's reader, k-quants by src/io/gguf.c); a group of 32 adds a float16
# scale and bias: 1 bit per weight.
AFFINE_BITS = {"Q4_0": 4, "Q4_1": 4, "Q8_0": 8, "Q2_K": 4, "Q4_K": 4, "Q6_K": 6}
KQUANTS = ("Q2_K", "Q4_K", "Q6_K")


def fixture(name):
    with open(os.path.join(DIR, name + ".json"), encoding="utf-8") as f:
        ref = json.load(f)
    ref["path"] = os.path.join(DIR, ref["gguf"])
    ref["logits"] = np.load(os.path.join(DIR, name + ".logits.npy"))
    conv = os.path.join(DIR, name + ".logits_engine_conversion.npy")
    # absent where the conversion changes nothing: the file's logits are it
    ref["logits_engine"] = np.load(conv) if os.path.exists(conv) else ref["logits"]
    return ref


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


@pytest.fixture(scope="module", params=FIXTURES)
def ref(request):
    return fixture(request.param)


def gomlx_logits(ref, tmp_path):
    out = os.path.join(tmp_path, "logits.npy")
    run_gomlx(["logits", ref["path"], "--ids", ids_arg(ref["input_ids"]), "--out", out])
    got = np.load(out).astype(np.float32)
    return got.reshape(ref["logits"].shape)


def test_logits_match_engine_conversion(ref, tmp_path):
    got = gomlx_logits(ref, tmp_path)
    want = ref["logits_engine"]
    diff = np.abs(got - want)
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert diff.max() <= ENGINE_TOL and rel <= ENGINE_REL_TOL, \
        "%s: max abs %.3g (position %d), relative norm %.3g" % (
            ref["gguf"], diff.max(), int(np.argmax(diff.max(-1))), rel)
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_logits_match_file_within_conversion_cost(ref, tmp_path):
    got = gomlx_logits(ref, tmp_path)
    cost = ref["engine_conversion"]["logits_max_abs_vs_file"]
    diff = np.abs(got - ref["logits"]).max()
    assert diff <= cost + ENGINE_TOL, "%s: %.4g from transformers on the file; conversion costs %.4g" % (
        ref["gguf"], diff, cost)
    rel = np.linalg.norm(got - ref["logits"]) / np.linalg.norm(ref["logits"])
    assert rel <= ref["engine_conversion"]["logits_rel_norm_vs_file"] + ENGINE_REL_TOL


def test_greedy_tokens(ref):
    p = run_gomlx(["run", ref["path"], "--ids", ids_arg(ref["input_ids"]), "--temp", "0",
                   "--max-tokens", "32", "--ignore-eos", "--json"])
    got = json.loads(p.stdout)["tokens"]
    assert got == ref["greedy_tokens_engine_conversion"]
    same = ref["greedy_same_prefix"]
    assert got[:same] == ref["greedy_tokens"][:same]
    if ref["engine_conversion"]["logits_max_abs_vs_file"] == 0:
        assert got == ref["greedy_tokens"]


def test_greedy_tokens_under_memory_limits(ref):
    """A memory limit below the weights (MLX then waits for queued work
    before every allocation) and no buffer cache: slower, the same tokens
    as without."""
    p = run_gomlx(["run", ref["path"], "--ids", ids_arg(ref["input_ids"]), "--temp", "0",
                   "--max-tokens", "8", "--ignore-eos", "--json",
                   "--memory-limit", "64MiB", "--cache-limit", "0"])
    assert json.loads(p.stdout)["tokens"] == ref["greedy_tokens_engine_conversion"][:8]


@pytest.mark.parametrize("flag,value,message", [
    ("--memory-limit", "0", "a memory limit of 0 bytes"),
    ("--memory-limit", "6Gx", "bad --memory-limit 6Gx"),
    ("--memory-limit", "99999999999TiB", "bad --memory-limit"),
    ("--cache-limit", "-1", "bad --cache-limit -1"),
])
def test_bad_memory_limits(ref, flag, value, message):
    p = run_gomlx(["run", ref["path"], flag, value, "hi"], check=False)
    assert p.returncode == 1 and message in p.stderr, p.stderr


def tensor_bytes(qtype, shape):
    """Bytes of one weight as the engine keeps it."""
    n = int(np.prod(shape))
    if qtype in AFFINE_BITS:
        return n * (AFFINE_BITS[qtype] + 1) // 8
    if qtype == "BF16":
        return 2 * n if len(shape) == 2 else 4 * n  # norms widen to float32
    if qtype == "F16":
        return 2 * n
    return 4 * n


def expected_weight_bytes(ref):
    """Bytes of every weight as the engine keeps it."""
    return sum(tensor_bytes(qtype, shape) for _, qtype, shape in ref["tensors"])


def expected_step_weight_bytes(ref):
    """What a decoded token reads: every weight, but of an input embedding
    table the output projection does not share only its one row."""
    total = expected_weight_bytes(ref)
    if not any(name == "output.weight" for name, _, _ in ref["tensors"]):
        return total  # tied: the unembedding reads the whole table
    _, qtype, shape = next(t for t in ref["tensors"] if t[0] == "token_embd.weight")
    embed = tensor_bytes(qtype, shape)
    return total - (embed - embed // shape[0])


def test_info_reports_conversion_and_memory(ref):
    info = run_gomlx(["info", ref["path"]]).stdout
    notes = re.search(r"^notes:\s*(.*)$", info, re.M)
    notes = notes.group(1) if notes else ""
    counts = {}
    for _, qtype, shape in ref["tensors"]:
        if qtype in KQUANTS and len(shape) == 2:
            counts[qtype] = counts.get(qtype, 0) + 1
    for qtype, n in counts.items():
        assert "%d %s → %d-bit affine g32" % (n, qtype, AFFINE_BITS[qtype]) in notes, notes
    assert ("re-quantized from GGUF" in notes) == bool(counts), notes
    n_bf16 = sum(1 for _, t, _ in ref["tensors"] if t == "BF16")
    if n_bf16:
        assert "%d BF16 tensor" % n_bf16 in notes, notes
    if any(name == "rope_freqs.weight" for name, _, _ in ref["tensors"]):
        assert "rope_freqs.weight" in notes, notes

    p = run_gomlx(["bench", ref["path"], "--prompt-tokens", "4", "--gen", "1", "--runs", "1", "--json"])
    weight_bytes = json.loads(p.stdout)["weight_bytes"]
    assert weight_bytes == expected_weight_bytes(ref)
    assert json.loads(p.stdout)["step_weight_bytes"] == expected_step_weight_bytes(ref)
    # Close to the file: a float16 scale and bias per 32 weights is 0.5 bit
    # more than Q4_K/Q8_0 and 0.44 more than Q6_K. Q2_K (2.6 bits) becomes
    # 4-bit (5 with scales): about twice its size, the price of keeping it
    # accurate (conversion_study.json).
    limit = 1.9 if any(t == "Q2_K" for _, t, _ in ref["tensors"]) else 1.12
    assert weight_bytes <= limit * ref["tensor_bytes"], (weight_bytes, ref["tensor_bytes"])


def test_spm_tokenizer_matches_transformers():
    ref = fixture("llama-spm-q2_k")
    with open(os.path.join(DIR, "llama-spm-q2_k.tokens.json"), encoding="utf-8") as f:
        toks = json.load(f)
    lines = [r["text"] for r in toks["lines"]]
    assert any(any(ord(c) > 127 for c in l) for l in lines)  # byte fallback is exercised
    data = "\n".join(lines) + "\n"
    for key, extra in (("plain", []), ("special", ["--special"])):
        p = run_gomlx(["tokenize", ref["path"]] + extra, stdin=data)
        got = [json.loads(x) for x in p.stdout.splitlines()]
        assert len(got) == len(lines)
        bad = [(r["text"], r[key], g) for r, g in zip(toks["lines"], got) if r[key] != g]
        assert not bad, "%s: %d of %d lines differ, first: %r" % (key, len(bad), len(lines), bad[0])


# ---------------------------------------------------------------------------
# Bad files, written here byte by byte (the test venv has no gguf-py)
# ---------------------------------------------------------------------------

def gguf_file(path, arch, tensors, meta=None):
    """A minimal GGUF v3: general.architecture plus the Llama sizes, and
    tensors given as (name, row-major shape, GGML type id, data bytes);
    meta: {key after "<arch>.": (GGUF value type id, packed value)} to
    replace or add."""
    def s(x):
        b = x.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    values = {key: (4, struct.pack("<I", val)) for key, val in (
        ("embedding_length", 256), ("block_count", 1), ("attention.head_count", 4), ("feed_forward_length", 512))}
    values.update(meta or {})
    kv = [("general.architecture", 8, s(arch))]
    for key, (vtype, val) in values.items():
        kv.append(("%s.%s" % (arch, key), vtype, val))
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, val in kv:
        out += s(key) + struct.pack("<I", vtype) + val
    offset, blobs = 0, b""
    for name, shape, gtype, data in tensors:
        out += s(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", gtype, offset)
        pad = (-len(data)) % 32
        blobs += data + b"\0" * pad
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % 32) + blobs
    with open(path, "wb") as f:
        f.write(out)
    return path


def load_error(path):
    p = run_gomlx(["info", path], check=False)
    assert p.returncode != 0, "loaded a bad file: %s" % path
    return p.stderr


def test_refused_tensor_type_is_named(tmp_path):
    # Q5_K (13): 176 bytes per 256 values; MLX's reader cannot convert it.
    path = gguf_file(os.path.join(tmp_path, "q5k.gguf"), "llama",
                     [("blk.0.ffn_down.weight", [1, 256], 13, bytes(176))])
    err = load_error(path)
    assert "Q5_K" in err and "blk.0.ffn_down.weight" in err, err
    # An IQ type, same story.
    path = gguf_file(os.path.join(tmp_path, "iq4nl.gguf"), "llama",
                     [("token_embd.weight", [1, 32], 20, bytes(18))])
    assert "IQ4_NL" in load_error(path)


def test_unknown_tensor_type(tmp_path):
    path = gguf_file(os.path.join(tmp_path, "t99.gguf"), "llama",
                     [("token_embd.weight", [1, 4], 99, bytes(16))])
    err = load_error(path)
    assert "unknown GGML type 99" in err, err


def test_kquant_rows_must_fill_blocks(tmp_path):
    # 128 values a row cannot hold a 256-value Q4_K super-block.
    path = gguf_file(os.path.join(tmp_path, "short.gguf"), "llama",
                     [("blk.0.attn_q.weight", [2, 128], 12, bytes(144))])
    err = load_error(path)
    assert "does not fill its blocks" in err, err


def test_kquant_must_be_a_matrix(tmp_path):
    # llama.cpp never quantizes 1-D tensors; MLX's float16 of a Q4_K would be wrong.
    path = gguf_file(os.path.join(tmp_path, "norm.gguf"), "llama",
                     [("output_norm.weight", [256], 12, bytes(144))])
    err = load_error(path)
    assert "output_norm.weight is a 1-D Q4_K" in err, err


def test_unsupported_architecture(tmp_path):
    path = gguf_file(os.path.join(tmp_path, "mamba.gguf"), "mamba",
                     [("token_embd.weight", [2, 4], 0, bytes(32))])
    err = load_error(path)
    assert '"mamba"' in err and "not supported" in err, err


# GGUF value types: 6 float32, 9 array, 10 uint64, 12 float64.
@pytest.mark.parametrize("key,vtype,value,shown", [
    ("embedding_length", 6, struct.pack("<f", float("nan")), "embedding_length is nan"),
    ("block_count", 6, struct.pack("<f", 2.5), "block_count is 2.5"),
    ("context_length", 10, struct.pack("<Q", 1 << 40), "context_length is 1.09951e+12"),
    ("attention.head_count_kv", 6, struct.pack("<f", 1e30), "attention.head_count_kv is 1e+30"),
    ("attention.layer_norm_rms_epsilon", 6, struct.pack("<f", float("nan")), "attention.layer_norm_rms_epsilon is nan"),
    ("rope.freq_base", 6, struct.pack("<f", float("inf")), "rope.freq_base is inf"),
])
def test_sizes_and_reals_the_engine_cannot_take(tmp_path, key, vtype, value, shown):
    # A C cast of NaN or 1e30 to int, or of infinity to float, is undefined: each is named instead.
    path = gguf_file(os.path.join(tmp_path, "bad.gguf"), "llama", [("token_embd.weight", [2, 4], 0, bytes(32))],
                     meta={key: (vtype, value)})
    err = load_error(path)
    assert "llama." + shown in err, err


@pytest.mark.parametrize("value", [struct.pack("<d", 1e-5), struct.pack("<IQ", 12, 2) + struct.pack("<dd", 1, 2)],
                         ids=["float64", "array-of-float64"])
def test_float64_metadata_is_refused(tmp_path, value):
    # MLX's GGUF reader does not step over a float64 and crashed on the keys after it.
    vtype = 12 if len(value) == 8 else 9
    path = gguf_file(os.path.join(tmp_path, "f64.gguf"), "llama", [("token_embd.weight", [2, 4], 0, bytes(32))],
                     meta={"attention.layer_norm_rms_epsilon": (vtype, value)})
    err = load_error(path)
    assert "llama.attention.layer_norm_rms_epsilon holds a float64" in err, err
