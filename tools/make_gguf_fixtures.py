#!/usr/bin/env python3
"""Tiny Llama GGUF files and their transformers references (testdata/gguf/).

The engine reads GGUF through MLX, which hands over Q4_0/Q4_1/Q8_0 as affine
triples; k-quants (Q2_K, Q4_K, Q6_K) src/io/gguf.c reads from the file's
blocks itself and converts to MLX affine, group 32 (MLX would give dense
float16, and its Q4_K decoding is wrong). These fixtures prove that path
against an independent reference: Hugging Face transformers loading the same
file (gguf-py dequantizes every block to float32).

Three files, each a 2-layer Llama (hidden 256, MLP 512, 4 heads, 2 KV heads,
head_dim 64, vocabulary 512; 256-wide rows so k-quant super-blocks fit):

  llama-q4_k_m.gguf   Llama 3.1-style Q4_K_M mix: Q4_K everywhere (token_embd
                      too) but Q6_K for output and for layer 0's attn_v and
                      ffn_down; rope_freqs.weight (llama3 scaling factors);
                      byte-level BPE ("gpt2") vocabulary.
  llama-q8_0.gguf     Q8_0 attention and tied token_embd, Q4_0 MLP, plain
                      rope; "gpt2" vocabulary.
  llama-spm-q2_k.gguf Q2_K attention and gate/up, Q4_K ffn_down and output,
                      BF16 token_embd; a SentencePiece-style "llama"
                      vocabulary (scores, token types, <0x00>..<0xFF> byte
                      tokens) built from Llama 2's pieces.

gguf-py (0.19) writes the files but cannot quantize k-quants, so Q2_K, Q4_K
and Q6_K blocks are built here from their documented layouts; every encoding
must decode, through gguf.quants.dequantize (the reference decoder), to
exactly the values the encoder chose. Q and K weights are permuted as
llama.cpp's converter does (the engine then uses interleaved rope,
transformers un-permutes).

References, per file (testdata/gguf/<name>.*):
  .logits.npy          transformers' float32 logits [16, 512] for input_ids
  .logits_engine_conversion.npy (where it differs from .logits.npy)
                       the same with each converted tensor holding the values
                       the engine's conversion gives it (engine_conversion()):
                       Q4_K keeps its grid (float16 scales), Q6_K and Q2_K
                       are mx.quantize'd at 6 and 4 bits. Q6_K/Q2_K
                       conversion is lossy, so the engine is held tightly to
                       this and to the file's logits within the cost.
  .json                input_ids, 32 greedy tokens of both references (KV
                       cache, EOS ignored) with top-1 margins, the
                       conversion's cost per tensor and on the logits
  .tokens.json         (llama-spm-q2_k) ids from AutoTokenizer on the GGUF
                       for 50 lines spread over testdata/tokenizer_corpus.txt
conversion_study.json: on a normal sample, the error of each k-quant and of
converting it at 2..8 bits, which is how the widths were chosen.

Run in the tools venv (transformers, torch, gguf, mlx):
    python tools/make_gguf_fixtures.py [fixture names]
Deterministic: a second run writes identical files.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata" / "gguf"
BPE_TOKENIZER = REPO / "testdata" / "models" / "llama-tiny" / "tokenizer.json"
LLAMA2 = REPO / "assets" / "node_modules" / "@lenml" / "tokenizer-llama2" / "models" / "tokenizer.json"
CORPUS = REPO / "testdata" / "tokenizer_corpus.txt"

HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, VOCAB = 256, 512, 2, 4, 2, 512
HEAD_DIM = HIDDEN // HEADS
RMS_EPS = 1e-5
N_IDS, GEN_TOKENS, TOKENIZER_LINES = 16, 32, 50
MIN_MARGIN = 0.05      # smallest accepted top-1 minus top-2 logit gap (greedy steps)
MIN_DISTINCT = 12      # distinct tokens among the 32 generated
MAX_SEED_TRIES = 60

# Llama 3.1-style rope scaling, as in testdata/models/llama-tiny: with
# head_dim 64 and original context 64, three frequencies are kept, three
# blended and the rest stretched, all within the 48 positions the tests use.
LLAMA3_ROPE = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=64)

# Tied embeddings need blocks with a strong output (out_gain) and sharp
# attention (qk_gain), or the model repeats its input token; untied models
# decode varied text with plain 1/sqrt(fan_in) weights, which also keeps
# them less sensitive to small weight changes (the conversion's cost shows
# up less amplified).
FIXTURES = [
    dict(name="llama-q4_k_m", vocab="bpe", rope_theta=500000.0, llama3_rope=True, tied=False,
         default=Q.Q4_K, embed=Q.Q4_K, output=Q.Q6_K,
         overrides={"blk.0.attn_v": Q.Q6_K, "blk.0.ffn_down": Q.Q6_K},
         file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M, out_gain=1.0, qk_gain=1.0, seed0=100),
    dict(name="llama-q8_0", vocab="bpe", rope_theta=10000.0, llama3_rope=False, tied=True,
         default=Q.Q8_0, embed=Q.Q8_0, output=None,
         overrides={"ffn_gate": Q.Q4_0, "ffn_up": Q.Q4_0, "ffn_down": Q.Q4_0},
         file_type=gguf.LlamaFileType.MOSTLY_Q8_0, out_gain=4.0, qk_gain=2.0, seed0=200),
    dict(name="llama-spm-q2_k", vocab="spm", rope_theta=10000.0, llama3_rope=False, tied=False,
         default=Q.Q2_K, embed=Q.BF16, output=Q.Q4_K,
         overrides={"ffn_down": Q.Q4_K},
         file_type=gguf.LlamaFileType.MOSTLY_Q2_K, out_gain=1.0, qk_gain=1.0, seed0=300),
]

# ---------------------------------------------------------------------------
# k-quant encoders (block layouts from ggml's documentation of each type)
# ---------------------------------------------------------------------------


def _f16(x):
    """Rounds to float16 and back: the super-block scales are stored as fp16."""
    return x.astype(np.float16).astype(np.float32)


def _div(a, b):
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _affine_subblocks(b, qmax, code_max):
    """The k-quant affine form shared by Q4_K and Q2_K: per sub-block (last
    axis of b, super-blocks first) value = d*sc*q - dmin*m, with quants q in
    0..qmax and sub-block codes sc, m in 0..code_max under float16 d, dmin."""
    lo = np.minimum(b.min(-1), 0.0)
    hi = b.max(-1)
    scale, mins = (hi - lo) / float(qmax), -lo
    d, dmin = _f16(scale.max(-1) / float(code_max)), _f16(mins.max(-1) / float(code_max))
    sc = np.clip(np.rint(_div(scale, d[:, None])), 0, code_max).astype(np.uint8)
    m = np.clip(np.rint(_div(mins, dmin[:, None])), 0, code_max).astype(np.uint8)
    step = (d[:, None] * sc)[..., None]
    off = (dmin[:, None] * m)[..., None]
    q = np.clip(np.rint(_div(b + off, np.broadcast_to(step, b.shape))), 0, qmax).astype(np.uint8)
    return d, dmin, sc, m, q, step, off


def encode_q4_k(x):
    """Q4_K, 144 bytes per 256 values: fp16 d, fp16 dmin, 12 bytes of 6-bit
    scales and mins for eight 32-value sub-blocks, 128 bytes of 4-bit quants.
    Value = d*sc*q - dmin*m."""
    b = x.reshape(-1, 8, 32).astype(np.float32)
    d, dmin, sc, m, q, step, off = _affine_subblocks(b, 15, 63)
    packed = np.zeros((b.shape[0], 12), np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    # 32 bytes per pair of sub-blocks: the even one in the low nibbles.
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             dmin.astype(np.float16).view(np.uint8).reshape(-1, 2), packed, qs], axis=1)
    return blocks.reshape(x.shape[0], -1), (q * step - off).reshape(x.shape)


def encode_q6_k(x):
    """Q6_K, 210 bytes per 256 values: 128 bytes of low 4 bits, 64 bytes of
    high 2 bits, 16 int8 scales (one per 16 values), fp16 d.
    Value = d*sc*(q - 32)."""
    b = x.reshape(-1, 16, 16).astype(np.float32)
    s = np.abs(b).max(-1) / 31.0
    d = _f16(s.max(-1) / 127.0)
    sc = np.clip(np.rint(_div(s, d[:, None])), -128, 127).astype(np.int8)
    step = (d[:, None] * sc.astype(np.float32))[..., None]
    q = np.clip(np.rint(_div(b, np.broadcast_to(step, b.shape))) + 32, 0, 63).astype(np.uint8)
    values = ((q.astype(np.float32) - 32) * step).reshape(x.shape)
    q = q.reshape(-1, 2, 4, 32)  # two halves of 128, each four runs of 32
    lo, hi = q & 0x0F, q >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=2)
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    blocks = np.concatenate([ql.reshape(-1, 128), qh.reshape(-1, 64), sc.view(np.uint8),
                             d.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    return blocks.reshape(x.shape[0], -1), values


def encode_q2_k(x):
    """Q2_K, 84 bytes per 256 values: 16 bytes of 4-bit scale | 4-bit min
    (one pair per 16 values), 64 bytes of 2-bit quants, fp16 d, fp16 dmin.
    Value = d*sc*q - dmin*m."""
    b = x.reshape(-1, 16, 16).astype(np.float32)
    d, dmin, sc, m, q, step, off = _affine_subblocks(b, 3, 15)
    values = (q * step - off).reshape(x.shape)
    q = q.reshape(-1, 2, 4, 32)  # halves of 128, four 2-bit planes of 32 values
    qs = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    blocks = np.concatenate([sc | (m << 4), qs.reshape(-1, 64),
                             d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             dmin.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    return blocks.reshape(x.shape[0], -1), values


ENCODERS = {Q.Q4_K: encode_q4_k, Q.Q6_K: encode_q6_k, Q.Q2_K: encode_q2_k}


def quantize(x, qtype):
    """Bytes of x [rows, cols] in qtype (gguf-py for what it implements)."""
    if qtype not in ENCODERS:
        return gguf.quants.quantize(x.astype(np.float32), qtype)
    raw, values = ENCODERS[qtype](x)
    # The reference decoder must read back exactly the values the encoder
    # chose (this checks the packing), and those must be near the input.
    back = gguf.quants.dequantize(raw, qtype)
    assert np.array_equal(back, values.astype(np.float32)), "%s packing" % qtype.name
    sub = 32 if qtype == Q.Q4_K else 16
    assert np.all(np.abs(back - x).reshape(-1, sub).max(1) <= np.ptp(x.reshape(-1, sub), axis=1) / 2 + 1e-6), \
        "%s round trip" % qtype.name
    return raw


def self_test_encoders():
    """Packing checks on a normal sample, and the noise of each encoder no
    larger than a uniform quantizer's (step/sqrt(12), step = range/levels)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1024)).astype(np.float32)
    for qtype, (bits, sub) in {Q.Q2_K: (2, 16), Q.Q4_K: (4, 32), Q.Q6_K: (6, 16)}.items():
        back = gguf.quants.dequantize(quantize(x, qtype), qtype)
        rms = np.sqrt(np.mean((back - x) ** 2))
        uniform = np.mean(np.ptp(x.reshape(-1, sub), axis=1)) / (2 ** bits - 1) / np.sqrt(12)
        print("  %s encoder: rms error %.4f (uniform quantizer %.4f)" % (qtype.name, rms, uniform))
        assert rms < 1.5 * uniform, qtype.name


# ---------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------


def bpe_vocab():
    """The byte-level BPE of testdata/models/llama-tiny (Llama 3 split
    pattern, special tokens at 507..511) as GGUF "gpt2" arrays."""
    tj = json.loads(BPE_TOKENIZER.read_text(encoding="utf-8"))
    tokens = [None] * VOCAB
    for piece, i in tj["model"]["vocab"].items():
        tokens[i] = piece
    types = [gguf.TokenType.NORMAL] * VOCAB
    for t in tj["added_tokens"]:
        tokens[t["id"]] = t["content"]
        types[t["id"]] = gguf.TokenType.CONTROL
    assert None not in tokens
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    return dict(model="gpt2", pre="llama-bpe", tokens=tokens, types=types, merges=merges,
                bos=507, eos=508, eot=511, add_bos=True)


def spm_vocab():
    """A 512-piece SentencePiece-style vocabulary: <unk> <s> </s>, the 256
    byte tokens, then Llama 2's single characters for printable ASCII and
    '▁', then Llama 2's earliest merged pieces made only of those. Scores
    are minus the Llama 2 id, so merge priorities stay Llama 2's."""
    tj = json.loads(LLAMA2.read_text(encoding="utf-8"))
    l2 = tj["model"]["vocab"]
    by_id = sorted(l2.items(), key=lambda kv: kv[1])
    chars = set(chr(c) for c in range(33, 127)) | {"\u2581"}
    singles = [(p, i) for p, i in by_id if len(p) == 1 and p in chars]
    budget = VOCAB - 3 - 256 - len(singles)
    merged = [(p, i) for p, i in by_id if i >= 259 and len(p) > 1 and set(p) <= chars][:budget]
    pieces = sorted(singles + merged, key=lambda kv: kv[1])
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
        [gguf.TokenType.BYTE] * 256
    scores = [0.0] * len(tokens)
    for p, i in pieces:
        tokens.append(p)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-float(i))
    assert len(tokens) == VOCAB, len(tokens)
    return dict(model="llama", tokens=tokens, types=types, scores=scores,
                bos=1, eos=2, unk=0, add_bos=True, add_space_prefix=True)


# ---------------------------------------------------------------------------
# Weights and the GGUF file
# ---------------------------------------------------------------------------


def permute_qk(w, n_head):
    """llama.cpp's converter order for Q/K rows: within each head, the two
    rotate-half halves interleaved, so pairs (2i, 2i+1) rotate together."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(theta):
    """Per-frequency divisors of llama3 rope scaling, what llama.cpp's
    converter stores as rope_freqs.weight."""
    r = LLAMA3_ROPE
    old = r["original_max_position_embeddings"]
    low_wavelen = old / r["low_freq_factor"]
    high_wavelen = old / r["high_freq_factor"]
    out = []
    for i in range(0, HEAD_DIM, 2):
        wavelen = 2 * np.pi * theta ** (i / HEAD_DIM)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(r["factor"])
        else:
            smooth = (old / wavelen - r["low_freq_factor"]) / (r["high_freq_factor"] - r["low_freq_factor"])
            out.append(1.0 / ((1 - smooth) / r["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def random_weights(seed, out_gain, qk_gain):
    """HF-layout float32 weights; scaled so logits spread by a few units."""
    rng = np.random.default_rng(seed)

    def lin(out, inp, gain=1.0):
        return (rng.standard_normal((out, inp)) * gain / np.sqrt(inp)).astype(np.float32)

    w = {"token_embd": (rng.standard_normal((VOCAB, HIDDEN)) * 0.35).astype(np.float32),
         "output": lin(VOCAB, HIDDEN, 5.0),
         "output_norm": (1.0 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)}
    for i in range(LAYERS):
        p = "blk.%d." % i
        w[p + "attn_norm"] = (1.0 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        w[p + "ffn_norm"] = (1.0 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        w[p + "attn_q"] = lin(HIDDEN, HIDDEN, qk_gain)
        w[p + "attn_k"] = lin(KV_HEADS * HEAD_DIM, HIDDEN, qk_gain)
        w[p + "attn_v"] = lin(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "attn_output"] = lin(HIDDEN, HIDDEN, out_gain)
        w[p + "ffn_gate"] = lin(INTER, HIDDEN)
        w[p + "ffn_up"] = lin(INTER, HIDDEN)
        w[p + "ffn_down"] = lin(HIDDEN, INTER, out_gain)
    return w


def tensor_type(fx, stem):
    if stem in fx["overrides"]:
        return fx["overrides"][stem]
    part = stem.split(".", 2)[-1]
    if part in fx["overrides"]:
        return fx["overrides"][part]
    if stem == "token_embd":
        return fx["embed"]
    if stem == "output":
        return fx["output"]
    return fx["default"]


def write_gguf(path, fx, weights):
    """Writes the file as llama.cpp's converter would; returns {name: type}."""
    vocab = bpe_vocab() if fx["vocab"] == "bpe" else spm_vocab()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("gomlx tiny %s" % fx["name"])
    w.add_file_type(int(fx["file_type"]))
    w.add_vocab_size(VOCAB)
    w.add_context_length(2048)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(INTER)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(fx["rope_theta"])
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_tokenizer_model(vocab["model"])
    if "pre" in vocab:
        w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types([int(t) for t in vocab["types"]])
    if "scores" in vocab:
        w.add_token_scores(vocab["scores"])
    if "merges" in vocab:
        w.add_token_merges(vocab["merges"])
    w.add_bos_token_id(vocab["bos"])
    w.add_eos_token_id(vocab["eos"])
    if "eot" in vocab:
        w.add_eot_token_id(vocab["eot"])
    if "unk" in vocab:
        w.add_unk_token_id(vocab["unk"])
    w.add_add_bos_token(vocab["add_bos"])
    if "add_space_prefix" in vocab:
        w.add_add_space_prefix(vocab["add_space_prefix"])

    types = {}
    if fx["llama3_rope"]:
        w.add_tensor("rope_freqs.weight", llama3_factors(fx["rope_theta"]))
        types["rope_freqs.weight"] = Q.F32
    for stem, x in weights.items():
        if stem == "output" and fx["tied"]:
            continue
        name = stem + ".weight"
        if x.ndim == 1:
            w.add_tensor(name, x)
            types[name] = Q.F32
            continue
        if stem.endswith("attn_q"):
            x = permute_qk(x, HEADS)
        elif stem.endswith("attn_k"):
            x = permute_qk(x, KV_HEADS)
        qtype = tensor_type(fx, stem)
        raw = quantize(x, qtype)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        types[name] = qtype
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------


# The widths src/io/gguf.c gives each k-quant when it converts it to MLX
# affine, group 32 (Q4_K exactly, from its own scales; the others through
# mx.quantize of the decoded values); scales and biases end in float16.
ENGINE_BITS = {Q.Q4_K: 4, Q.Q6_K: 6, Q.Q2_K: 4}


def engine_conversion(raw, qtype):
    """The float32 values the engine computes with for a 2-D tensor of the
    file, as src/io/gguf.c documents its conversion. Rows are converted
    independently, so the Q/K row permutation does not change this."""
    import mlx.core as mx
    vals = gguf.quants.dequantize(raw, qtype).astype(np.float32)
    if qtype not in ENGINE_BITS or vals.ndim != 2:
        return vals
    if qtype == Q.Q4_K:
        blocks = np.ascontiguousarray(raw).reshape(-1, 144)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
        sc, m = gguf.quants.Q4_K.get_scale_min(blocks[:, 4:16].copy())
        scale = (d * sc.astype(np.float32)).reshape(-1)
        bias = -(dmin * m.astype(np.float32)).reshape(-1)
        g = vals.reshape(-1, 32)
        q = np.rint(_div(g - bias[:, None], np.broadcast_to(scale[:, None], g.shape)))
        assert np.array_equal(q * scale[:, None] + bias[:, None], g), "Q4_K groups are affine"
        out = q * _f16(scale)[:, None] + _f16(bias)[:, None]
        return out.reshape(vals.shape).astype(np.float32)
    bits = ENGINE_BITS[qtype]
    w, sc, b = mx.quantize(mx.array(vals), group_size=32, bits=bits)
    sc = sc.astype(mx.float16).astype(mx.float32)
    b = b.astype(mx.float16).astype(mx.float32)
    return np.array(mx.dequantize(w, sc, b, group_size=32, bits=bits))


def load_reference(path, fx, engine=False):
    """transformers on the GGUF (every block dequantized to float32 by
    gguf-py); rope_freqs.weight applied as llama.cpp does, since
    transformers' GGUF loader ignores it. engine=True swaps in the values
    of the engine's conversion (engine_conversion) for gguf-py's."""
    import torch
    import transformers

    plain = gguf.dequantize
    if engine:
        gguf.dequantize = engine_conversion
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager")
    finally:
        gguf.dequantize = plain
    model.eval()
    if fx["llama3_rope"]:
        reader = gguf.GGUFReader(str(path))
        t = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
        factors = np.asarray(t.data, dtype=np.float64)
        theta = fx["rope_theta"]
        inv = 1.0 / (theta ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM) * factors)
        rot = model.model.rotary_emb
        # The same numbers as transformers' own llama3 rope, so the file's
        # factors mean what Llama 3.1's config says.
        cfg = transformers.LlamaConfig(hidden_size=HIDDEN, num_attention_heads=HEADS,
                                       rope_parameters=dict(rope_type="llama3", rope_theta=theta,
                                                            **LLAMA3_ROPE))
        own = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding(cfg).inv_freq.double().numpy()
        assert np.allclose(own, inv, rtol=1e-6), (own, inv)
        rot.inv_freq = torch.tensor(inv, dtype=torch.float32)
        rot.original_inv_freq = rot.inv_freq.clone()
    return model


def top2_margin(row):
    import torch
    top = torch.topk(row.double(), 2).values
    return float(top[0] - top[1])


def greedy(model, ids):
    """Greedy continuation with the KV cache, EOS ignored."""
    import torch
    out, margins = [], []
    with torch.no_grad():
        res = model(torch.tensor([ids]), use_cache=True)
        past, last = res.past_key_values, res.logits[0, -1]
        for _ in range(GEN_TOKENS):
            t = int(torch.argmax(last))
            out.append(t)
            margins.append(top2_margin(last))
            res = model(torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past, last = res.past_key_values, res.logits[0, -1]
    return out, margins


def input_ids(vocab, seed):
    """BOS, the last and second-to-last ids, then seeded ordinary ids."""
    rng = np.random.default_rng(seed)
    rest = rng.integers(3, VOCAB - 8, N_IDS - 3).tolist()
    return [vocab["bos"], VOCAB - 1, VOCAB - 2] + rest


def conversion_cost(path):
    """Per converted tensor: how far the engine's values are from the
    file's (max abs, rms), relative to the tensor's rms and to the
    k-quant's own step (median smallest gap between a sub-block's levels)."""
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        qtype = Q(t.tensor_type)
        if qtype not in ENGINE_BITS or len(t.shape) != 2:
            continue
        ref = gguf.quants.dequantize(t.data, qtype).astype(np.float32)
        err = engine_conversion(t.data, qtype) - ref
        sub = 32 if qtype == Q.Q4_K else 16
        gaps = [np.diff(np.unique(r)).min() for r in ref.reshape(-1, sub)[:2048] if len(np.unique(r)) > 1]
        step = float(np.median(gaps))
        out[t.name] = dict(type=qtype.name, bits=ENGINE_BITS[qtype],
                           max_abs=float(np.abs(err).max()),
                           rms_rel=float(np.sqrt(np.mean(err ** 2) / np.mean(ref ** 2))),
                           max_in_steps=round(float(np.abs(err).max()) / step, 4))
    return out


def conversion_study():
    """Why each k-quant gets the width it gets: for a normal sample, the
    error of the file's k-quant and of converting it to MLX affine at each
    width (relative rms, against the file's values and against the original
    floats), with the memory each costs. Written to conversion_study.json."""
    import mlx.core as mx
    rng = np.random.default_rng(7)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    rel = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))  # noqa: E731
    study = {}
    for qtype in (Q.Q2_K, Q.Q4_K, Q.Q6_K):
        raw = quantize(x, qtype)
        v = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        bpw = gguf.GGML_QUANT_SIZES[qtype][1] * 8 / gguf.GGML_QUANT_SIZES[qtype][0]
        row = {"file_bits_per_weight": round(bpw, 4), "file_vs_float": round(rel(v, x), 5), "affine_g32": {}}
        for bits in (2, 3, 4, 5, 6, 8):
            if qtype == Q.Q4_K and bits == 4:
                c = engine_conversion(raw, qtype)
            else:
                w, sc, b = mx.quantize(mx.array(v), group_size=32, bits=bits)
                sc, b = sc.astype(mx.float16).astype(mx.float32), b.astype(mx.float16).astype(mx.float32)
                c = np.array(mx.dequantize(w, sc, b, group_size=32, bits=bits))
            row["affine_g32"][bits] = {"bits_per_weight": bits + 1, "vs_file": round(rel(c, v), 5),
                                       "vs_float": round(rel(c, x), 5)}
        study[qtype.name] = row
        print("  %s (%.2f bits/weight, %.4f from float): " % (qtype.name, bpw, row["file_vs_float"]) +
              ", ".join("%d-bit %.4f/%.4f" % (b, r["vs_file"], r["vs_float"]) for b, r in row["affine_g32"].items()))
    return study


def tokenizer_reference(path):
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    # Every n-th line, so English, other scripts, code, emoji and whitespace
    # runs all come up (bytes split on "\n" only, as the tests feed them).
    corpus = CORPUS.read_bytes().decode("utf-8").split("\n")[:-1]
    lines = corpus[::len(corpus) // TOKENIZER_LINES][:TOKENIZER_LINES]
    recs = []
    for line in lines:
        plain = tok(line, add_special_tokens=False)["input_ids"]
        special = tok(line, add_special_tokens=True)["input_ids"]
        recs.append({"text": line, "plain": plain, "special": special})
    return {"transformers": transformers.__version__, "lines": recs}


def logits_of(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def make_fixture(fx, tmp):
    import torch
    import transformers

    vocab = bpe_vocab() if fx["vocab"] == "bpe" else spm_vocab()
    path = Path(tmp) / (fx["name"] + ".gguf")
    for tries in range(MAX_SEED_TRIES):
        seed = fx["seed0"] + tries
        types = write_gguf(path, fx, random_weights(seed, fx["out_gain"], fx["qk_gain"]))
        ids = input_ids(vocab, seed)
        file_model = load_reference(path, fx)
        logits = logits_of(file_model, ids)
        tokens, margins = greedy(file_model, ids)
        engine_model = load_reference(path, fx, engine=True)
        logits_engine = logits_of(engine_model, ids)
        tokens_engine, margins_engine = greedy(engine_model, ids)
        distinct = len(set(tokens))
        print("  %s seed %d: logits std %.2f, min greedy margin %.3f (engine's conversion %.3f), "
              "%d distinct, conversion changes logits by %.4f, greedy %s"
              % (fx["name"], seed, float(logits.std()), min(margins), min(margins_engine), distinct,
                 float((logits_engine - logits).abs().max()),
                 "same" if tokens == tokens_engine else "differs"))
        # Neither reference may sit on a near-tie that float rounding could
        # flip. Where the engine's conversion is lossy (Q6_K, Q2_K) it does
        # flip greedy tokens of a random model: its logits move by a few
        # percent of their spread, more than 32 steps of top-1 margins
        # survive. The tests then hold the engine to the reference with the
        # conversion applied, and to the file's logits within the cost.
        if min(margins) >= MIN_MARGIN and min(margins_engine) >= MIN_MARGIN and distinct >= MIN_DISTINCT \
                and len(set(tokens_engine)) >= MIN_DISTINCT:
            break
    else:
        sys.exit("%s: no seed gave stable greedy decoding" % fx["name"])

    OUT.mkdir(parents=True, exist_ok=True)
    dst = OUT / path.name
    dst.write_bytes(path.read_bytes())
    np.save(OUT / (fx["name"] + ".logits.npy"), logits.numpy().astype(np.float32))
    conv_path = OUT / (fx["name"] + ".logits_engine_conversion.npy")
    if torch.equal(logits_engine, logits):
        conv_path.unlink(missing_ok=True)  # nothing lossy converted: the file's logits are it
    else:
        np.save(conv_path, logits_engine.numpy().astype(np.float32))
    counts = {}
    for t in types.values():
        counts[t.name] = counts.get(t.name, 0) + 1
    diff = (logits_engine - logits).double()
    ref = {
        "gguf": dst.name,
        "seed": seed,
        "reference": "transformers %s, torch %s: AutoModelForCausalLM from the GGUF "
                     "(gguf-py dequantizes to float32), eager attention%s"
                     % (transformers.__version__, torch.__version__,
                        "; rope inv_freq from rope_freqs.weight" if fx["llama3_rope"] else ""),
        "tensor_types": counts,
        "tensor_bytes": int(sum(t.n_bytes for t in gguf.GGUFReader(str(dst)).tensors)),
        "tensors": [[t.name, Q(t.tensor_type).name, [int(d) for d in reversed(t.shape)]]
                    for t in gguf.GGUFReader(str(dst)).tensors],
        "input_ids": ids,
        "logits_min_top1_margin": round(min(top2_margin(r) for r in logits), 5),
        "greedy_tokens": tokens,
        "greedy_margins": [round(m, 5) for m in margins],
        "greedy_tokens_engine_conversion": tokens_engine,
        "greedy_margins_engine_conversion": [round(m, 5) for m in margins_engine],
        "greedy_same_prefix": next((i for i, (a, b) in enumerate(zip(tokens, tokens_engine)) if a != b),
                                   GEN_TOKENS),
        "engine_conversion": {
            "what": "logits_engine_conversion.npy: the same model with each converted tensor holding "
                    "the values src/io/gguf.c gives it (Q4_K: its own scales/mins as float16 scales/"
                    "biases; Q6_K/Q2_K: mx.quantize at 6/4 bits, group 32, float16 scales)",
            "logits_max_abs_vs_file": round(float(diff.abs().max()), 6),
            "logits_rel_norm_vs_file": round(float(diff.norm() / logits.double().norm()), 7),
            "tensors": conversion_cost(dst),
        },
    }
    (OUT / (fx["name"] + ".json")).write_text(json.dumps(ref, indent=1) + "\n")
    if fx["vocab"] == "spm":
        (OUT / (fx["name"] + ".tokens.json")).write_text(
            json.dumps(tokenizer_reference(dst), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print("wrote %s (%d bytes); engine's conversion moves logits by at most %.4f (relative norm %.2e)"
          % (dst, dst.stat().st_size, ref["engine_conversion"]["logits_max_abs_vs_file"],
             ref["engine_conversion"]["logits_rel_norm_vs_file"]))


def main():
    import torch
    import transformers

    torch.set_num_threads(2)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    self_test_encoders()
    print("conversion study (error vs the file / vs the original floats):")
    study = conversion_study()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "conversion_study.json").write_text(json.dumps(study, indent=1) + "\n")
    only = set(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        for fx in FIXTURES:
            if not only or fx["name"] in only:
                make_fixture(fx, tmp)


if __name__ == "__main__":
    main()
