#!/usr/bin/env python3
"""Generate the tiny random model fixtures and their reference outputs.

For each architecture family this script:
  1. trains a small byte-level BPE tokenizer (HF `tokenizers`, deterministic),
  2. writes a Hugging Face style checkpoint with seeded random float32 weights
     into a temporary directory (never committed),
  3. converts it with mlx-lm's own `convert` (dense float32 and quantized
     variants) into testdata/models/<name>/, so the files are exactly what
     mlx-lm writes,
  4. records references in testdata/models/<name>/reference/:
       logits_mlx.npy        mlx-lm logits, float32 [T, vocab], whole prompt, no cache
       logits_hf.npy         transformers logits (dense models; eager attention)
       logits_hf_dequant.npy transformers logits on mlx-lm's dequantized weights
                             (quantized models)
       greedy.json           prompt ids, 40 greedy tokens from mlx-lm's generate
                             loop (KV cache, EOS ignored) and from transformers
                             (full recompute each step), top-1 margins.
A seed is accepted only if the generations are not degenerate (no short loops)
and every greedy step has a comfortable top-1 margin, so a correct engine
cannot flip a token through rounding.

Run through tools/make_fixtures.sh (creates the pinned tools venv).
"""

import argparse
import gc
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import mlx.core as mx  # noqa: E402
import mlx_lm  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.convert import convert as mlx_convert  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.utils import MODEL_REMAPPING, dequantize_model  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers  # noqa: E402
from tokenizers import processors, trainers  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

torch.set_num_threads(1)
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
mx.set_default_device(mx.cpu)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata" / "models"

PROMPT_LEN = 24
GEN_TOKENS = 40
MIN_MARGIN = 0.05        # smallest accepted top-1 minus top-2 logit gap
MIN_DISTINCT = 12        # distinct tokens among the 40 generated
MAX_SEED_TRIES = 40

# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------

# Split patterns of the Llama 3 and Qwen2 byte-level BPE pre-tokenizers.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Our own small training text: prose, numbers, code, punctuation, a little
# non-ASCII, so the merges cover the usual byte classes.
CORPUS = """\
The river runs past the old mill, and every morning the baker opens her shop
before the sun climbs over the hills. She sells bread, small cakes and coffee
to the people who walk to the station. On rainy days the queue is shorter,
but the regulars still come: the teacher, the nurse, the two students who
always argue about music, and the man with the grey dog.
In the afternoon the town is quiet. Children play near the water, the library
fills with readers, and the market closes at five o'clock. The mayor says the
new bridge will open next year; nobody believes him, because he said the same
thing last year and the year before that.
What is the capital of France? Paris is the capital of France.
What is the capital of Italy? Rome is the capital of Italy.
Write a short poem about the sea: the sea is wide, the sea is deep, the waves
are singing me to sleep.
List three prime numbers: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41.
In 1969 people walked on the moon; in 2024 they still talk about it.
The temperature was 21.5 degrees at 10:30 and 18 degrees at 22:45.
def add(a, b):
    return a + b

for i in range(10):
    print(i, add(i, i * 2))

if (x > 0 && y < 100) { count += 1; } else { count = 0; }
{"name": "tiny", "layers": 3, "heads": 4, "ok": true}
Hello, world! How are you today? I'm fine, thanks. We'll see, they've said.
Grüße aus München. Café, naïve, façade, déjà vu. Ça va très bien.
Numbers like 3.14159 and 2.71828 are famous; so is 1.41421.
Good models should answer questions, write stories, explain ideas, and help
people learn new things. They should be honest when they do not know.
""" * 3


def _bpe_tokenizer(pattern, ignore_merges, normalizer):
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                 use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def _train(tok, vocab_size, special_first):
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=special_first,
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer)


def _bos_post_processor(tok, bos):
    bos_id = tok.token_to_id(bos)
    return processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, bos_id)]),
    ])


LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim"
    " + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)


def make_tokenizer(flavor):
    """Returns (tokenizers.Tokenizer, info) for one tokenizer flavor.

    info holds the special token strings and ids and the transformers
    keyword arguments for tokenizer_config.json.
    """
    if flavor == "llama3":
        # Llama 3 layout: BPE first, special tokens appended at the end.
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                    "<|end_header_id|>", "<|eot_id|>"]
        tok = _bpe_tokenizer(LLAMA3_PATTERN, True, None)
        _train(tok, 512 - len(specials), [])
        tok.add_special_tokens(specials)
        tok.post_processor = _bos_post_processor(tok, "<|begin_of_text|>")
        kw = dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                  chat_template=LLAMA3_TEMPLATE)
    elif flavor == "qwen2":
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = _bpe_tokenizer(QWEN2_PATTERN, False, normalizers.NFC())
        _train(tok, 512 - len(specials), [])
        tok.add_special_tokens(specials)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        kw = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>",
                  chat_template=CHATML_TEMPLATE)
    elif flavor == "gemma":
        # Gemma layout: <pad>=0, <eos>=1, <bos>=2, <unk>=3, turn markers next.
        specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>",
                    "<end_of_turn>"]
        tok = _bpe_tokenizer(LLAMA3_PATTERN, False, None)
        _train(tok, 512, specials)
        tok.post_processor = _bos_post_processor(tok, "<bos>")
        kw = dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                  unk_token="<unk>", chat_template=GEMMA_TEMPLATE)
    elif flavor == "mistral":
        specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
        tok = _bpe_tokenizer(LLAMA3_PATTERN, False, None)
        _train(tok, 512, specials)
        tok.post_processor = _bos_post_processor(tok, "<s>")
        kw = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                  chat_template=MISTRAL_TEMPLATE)
    else:
        raise ValueError(flavor)
    ids = {s: tok.token_to_id(s) for s in specials}
    assert all(v is not None for v in ids.values())
    return tok, {"specials": specials, "ids": ids, "kwargs": kw}


def save_tokenizer(tok, info, dst):
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=4096,
        clean_up_tokenization_spaces=False, **info["kwargs"])
    fast.save_pretrained(str(dst))


# ---------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------

COMMON = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
              torch_dtype="float32", initializer_range=0.02, use_cache=True)


def llama_config(tok_info, layers, tied, scaling):
    ids = tok_info["ids"]
    cfg = dict(COMMON, model_type="llama", architectures=["LlamaForCausalLM"],
               num_hidden_layers=layers, vocab_size=512, rms_norm_eps=1e-5,
               hidden_act="silu", attention_bias=False, mlp_bias=False,
               tie_word_embeddings=tied, rope_theta=500000.0,
               bos_token_id=ids["<|begin_of_text|>"])
    if scaling:
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 64}
        # Llama 3.1 lists several EOS ids; the tied variant keeps a single int.
        cfg["eos_token_id"] = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    else:
        cfg["rope_scaling"] = None
        cfg["eos_token_id"] = ids["<|eot_id|>"]
    gen = {"bos_token_id": cfg["bos_token_id"],
           "eos_token_id": [ids["<|end_of_text|>"], ids["<|eot_id|>"]],
           "do_sample": False}
    return cfg, gen


def qwen2_config(tok_info):
    ids = tok_info["ids"]
    # Like real Qwen2 checkpoints, vocab_size is padded past the tokenizer.
    cfg = dict(COMMON, model_type="qwen2", architectures=["Qwen2ForCausalLM"],
               num_hidden_layers=2, vocab_size=520, rms_norm_eps=1e-6,
               hidden_act="silu", tie_word_embeddings=True, rope_theta=1000000.0,
               use_sliding_window=False, sliding_window=None, max_window_layers=2,
               rope_scaling=None,
               bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])
    cfg.pop("head_dim")  # Qwen2 derives head_dim = hidden / heads
    gen = {"bos_token_id": ids["<|endoftext|>"],
           "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
           "pad_token_id": ids["<|endoftext|>"], "do_sample": False}
    return cfg, gen


def mistral_config(tok_info):
    ids = tok_info["ids"]
    cfg = dict(COMMON, model_type="mistral", architectures=["MistralForCausalLM"],
               num_hidden_layers=2, vocab_size=512, rms_norm_eps=1e-5,
               hidden_act="silu", tie_word_embeddings=False, rope_theta=1000000.0,
               sliding_window=None, bos_token_id=ids["<s>"], eos_token_id=ids["</s>"])
    gen = {"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "do_sample": False}
    return cfg, gen


def gemma2_config(tok_info):
    ids = tok_info["ids"]
    layers = 4
    cfg = dict(COMMON, model_type="gemma2", architectures=["Gemma2ForCausalLM"],
               num_hidden_layers=layers, vocab_size=512, rms_norm_eps=1e-6,
               hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
               tie_word_embeddings=True, rope_theta=10000.0,
               # Deliberately not head_dim (16) nor hidden/heads, so a wrong
               # attention scale shows up.
               query_pre_attn_scalar=24,
               attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
               sliding_window=8,
               layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                            for i in range(layers)],
               attention_bias=False, attention_dropout=0.0,
               bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"],
               pad_token_id=ids["<pad>"])
    gen = {"bos_token_id": ids["<bos>"],
           "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
           "pad_token_id": ids["<pad>"], "do_sample": False}
    return cfg, gen


# name -> (tokenizer flavor, config builder, base seed, quantized variants, init)
# A variant is (suffix, bits, group_size, per-layer override or None).
# init scales the blocks' output projections: with tied embeddings the
# residual stream must move away from the input embedding, or the model just
# repeats its input token.
Q4 = ("-q4", 4, 32, None)
OUT_GAIN = 3.0
FAMILIES = {
    "llama-tiny": ("llama3", lambda t: llama_config(t, 3, False, True), 1000,
                   [Q4, ("-q8", 8, 64, None),
                    # lm_head and embeddings at 8 bits, group 64; the rest 4-bit.
                    ("-q4-mixed", 4, 32, {"bits": 8, "group_size": 64,
                                          "layers": ("lm_head", "model.embed_tokens")})],
                   {}),
    "llama-tiny-tied": ("llama3", lambda t: llama_config(t, 2, True, False), 2000, [Q4],
                        {"out_gain": OUT_GAIN}),
    "qwen2-tiny": ("qwen2", qwen2_config, 3000, [Q4], {"out_gain": 2 * OUT_GAIN}),
    "mistral-tiny": ("mistral", mistral_config, 4000, [Q4], {}),
    # Gemma scales the input embedding by sqrt(hidden) and normalizes each
    # block's output (post norms): a small embedding, post-norm weights that
    # carry the blocks' gain, and a final norm that restores the logit scale.
    "gemma2-tiny": ("gemma", gemma2_config, 5000, [Q4],
                    {"post_norm": 3.0, "embed_std": 0.075, "final_norm": 7.0}),
}

# mlx-lm 0.32.2's gemma2 has no sliding-window attention (every layer attends
# to the full context), so for a window of 8 its outputs are not the Gemma 2
# math. transformers is the reference there.
MLX_LM_INEXACT = {"gemma2": "mlx-lm 0.32.2 gemma2 ignores sliding_window "
                            "(all layers attend globally); transformers is the reference"}


def random_weights(cfg, rng, out_gain=1.0, post_norm=0.0, embed_std=0.6, final_norm=0.0):
    """Seeded random float32 weights with the names and shapes mlx-lm expects."""
    mt = MODEL_REMAPPING.get(cfg["model_type"], cfg["model_type"])
    arch = importlib.import_module(f"mlx_lm.models.{mt}")
    model = arch.Model(arch.ModelArgs.from_dict(cfg))
    gemma = cfg["model_type"] == "gemma2"
    tok_vocab = 512
    weights = {}
    for name, p in tree_flatten(model.parameters()):
        shape = tuple(p.shape)
        if name.endswith("norm.weight"):
            # Gemma scales by (1 + w); others by w. Perturb so norms matter.
            base = 0.0 if gemma else 1.0
            if "post_attention_layernorm" in name or "post_feedforward_layernorm" in name:
                base += post_norm
            if name == "model.norm.weight":
                base += final_norm
            w = base + 0.1 * rng.standard_normal(shape)
        elif "embed_tokens" in name or name == "lm_head.weight":
            w = embed_std * rng.standard_normal(shape)
            if shape[0] > tok_vocab:
                # Padded rows (no token): small, as in real checkpoints, so they
                # are valid inputs but never the greedy choice.
                w[tok_vocab:] *= 0.05
        elif name.endswith(".bias"):
            w = 0.3 * rng.standard_normal(shape)
        elif name.endswith(".weight"):
            fan_in = shape[-1]
            gain = 1.0
            if "q_proj" in name or "k_proj" in name:
                gain = 1.3      # attention scores of a few units, not uniform
            elif "o_proj" in name or "down_proj" in name:
                gain = out_gain
            w = gain / np.sqrt(fan_in) * rng.standard_normal(shape)
        else:
            raise ValueError(f"unexpected parameter {name}")
        weights[name] = w.astype(np.float32)
    if cfg.get("tie_word_embeddings") is False:
        assert "lm_head.weight" in weights
    return weights


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------

def make_prompt(cfg, tok_info, rng):
    """24 fixed ids: BOS where the family has one, ids near the vocab end."""
    vocab = cfg["vocab_size"]
    ids = rng.integers(0, 512, size=PROMPT_LEN).tolist()
    bos = cfg.get("bos_token_id")
    if bos is not None and cfg["model_type"] != "qwen2":
        ids[0] = bos
    ids[5] = vocab - 1
    ids[11] = vocab - 2
    ids[17] = 511          # last tokenizer id
    ids[20] = 300
    return [int(i) for i in ids]


def greedy_sampler(logprobs):
    return mx.argmax(logprobs, axis=-1)


def margin(row):
    top2 = np.sort(np.asarray(row, dtype=np.float64))[-2:]
    return float(top2[1] - top2[0])


def mlx_reference(path, prompt):
    model, _ = mlx_lm.load(str(path))
    logits = model(mx.array(prompt)[None])
    logits = np.array(logits[0].astype(mx.float32))
    tokens, margins = [], []
    for tok, logprobs in generate_step(mx.array(prompt), model, max_tokens=GEN_TOKENS,
                                       sampler=greedy_sampler):
        tokens.append(int(tok))
        margins.append(margin(np.array(logprobs.astype(mx.float32))))
    del model
    gc.collect()
    return logits, tokens, margins


def hf_reference(path, prompt, **overrides):
    config = transformers.AutoConfig.from_pretrained(str(path))
    for k, v in overrides.items():
        setattr(config, k, v)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), config=config, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0].float().numpy()
        seq = list(prompt)
        tokens, margins = [], []
        # Full recompute each step: the plain definition, no cache involved.
        for _ in range(GEN_TOKENS):
            last = model(torch.tensor([seq])).logits[0, -1].float().numpy()
            t = int(np.argmax(last))
            tokens.append(t)
            margins.append(margin(last))
            seq.append(t)
    del model
    gc.collect()
    return logits, tokens, margins


def degenerate(tokens):
    """True when a generation is an obvious loop."""
    if len(set(tokens)) < MIN_DISTINCT:
        return True
    tail = tokens[-16:]
    for period in (1, 2, 3, 4):
        if all(tail[i] == tail[i - period] for i in range(period, len(tail))):
            return True
    return False


def write_hf_copy(src_hf, mlx_path, dst):
    """An HF checkpoint of mlx-lm's dequantized weights (for quantized models)."""
    model, _ = mlx_lm.load(str(mlx_path))
    model = dequantize_model(model)
    weights = {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.parameters())}
    dst.mkdir(parents=True)
    for f in ("config.json", "generation_config.json"):
        shutil.copy(src_hf / f, dst / f)
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    del model
    gc.collect()


def max_abs(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def rel_norm(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def rope_scaling_effect(cfg):
    """Fraction of rotary frequencies that llama3 scaling changes (0 = no-op)."""
    rs = cfg.get("rope_scaling")
    if not rs:
        return 0.0
    d = cfg["head_dim"]
    inv = cfg["rope_theta"] ** (-np.arange(0, d, 2) / d)
    wavelen = 2 * np.pi / inv
    high = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    return float(np.mean(wavelen > high))


def build_family(name, spec, tmp, report):
    flavor, make_cfg, base_seed, variants, init = spec
    tok, tok_info = make_tokenizer(flavor)
    cfg, gen = make_cfg(tok_info)
    assert cfg["vocab_size"] >= tok.get_vocab_size(with_added_tokens=True)
    if cfg.get("rope_scaling"):
        eff = rope_scaling_effect(cfg)
        print(f"[{name}] llama3 rope scaling changes {eff:.0%} of the frequencies")
        assert 0 < eff < 1

    for attempt in range(MAX_SEED_TRIES):
        seed = base_seed + attempt
        work = Path(tmp) / f"{name}-{seed}"
        hf_dir = work / "hf"
        hf_dir.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        weights = random_weights(cfg, rng, **init)
        save_file(weights, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
        (hf_dir / "config.json").write_text(json.dumps(cfg, indent=2))
        (hf_dir / "generation_config.json").write_text(json.dumps(gen, indent=2))
        save_tokenizer(tok, tok_info, hf_dir)
        prompt = make_prompt(cfg, tok_info, np.random.default_rng(seed + 7))

        results = {}
        ok = True
        for suffix, bits, group, override in [("", None, None, None)] + variants:
            vname = name + suffix
            out = work / "mlx" / vname
            predicate = None
            if override is not None:
                layers = override["layers"]
                params = {"group_size": override["group_size"], "bits": override["bits"],
                          "mode": "affine"}
                predicate = (lambda p, m, _l=layers, _p=params:
                             dict(_p) if p in _l else True)
            with contextlib_quiet():
                mlx_convert(str(hf_dir), str(out), quantize=bits is not None,
                            q_group_size=group, q_bits=bits, quant_predicate=predicate)
            r = {"path": out, "quantized": bits is not None}
            r["logits_mlx"], r["mlx_tokens"], r["mlx_margins"] = mlx_reference(out, prompt)
            ref_dir = hf_dir
            if bits is not None:
                ref_dir = work / "hf-dequant" / vname
                write_hf_copy(hf_dir, out, ref_dir)
            r["logits_hf"], r["hf_tokens"], r["hf_margins"] = hf_reference(ref_dir, prompt)
            results[vname] = r

            # Where mlx-lm is not the reference, only transformers' run counts.
            m = min(r["hf_margins"])
            bad = degenerate(r["hf_tokens"])
            if cfg["model_type"] not in MLX_LM_INEXACT:
                m = min(m, min(r["mlx_margins"]))
                bad = bad or degenerate(r["mlx_tokens"])
            std = float(np.std(r["logits_hf"]))
            print(f"[{vname}] seed {seed}: logits std {std:.2f}, min top-1 margin "
                  f"{m:.3f}, distinct {len(set(r['hf_tokens']))}, loop {bad}")
            if bad or m < MIN_MARGIN or not (1.5 < std < 8):
                ok = False
                break
        if ok:
            break
        shutil.rmtree(work)
    else:
        raise RuntimeError(f"{name}: no seed in {MAX_SEED_TRIES} tries gave good fixtures")

    arch = cfg["model_type"]
    mlx_exact = arch not in MLX_LM_INEXACT
    if not mlx_exact:
        # Show that the only difference is the window: transformers with a
        # window longer than the sequence reproduces mlx-lm.
        glob, _, _ = hf_reference(hf_dir, prompt, sliding_window=4096)
        d = max_abs(glob, results[name]["logits_mlx"])
        print(f"[{name}] transformers without sliding window vs mlx-lm: max abs {d:.2e}")
        assert d < 1e-3, d

    for vname, r in results.items():
        dst = OUT / vname
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(r["path"], dst)
        (dst / "README.md").unlink(missing_ok=True)  # empty model card from mlx-lm
        ref = dst / "reference"
        ref.mkdir()
        np.save(ref / "logits_mlx.npy", r["logits_mlx"].astype(np.float32))
        hf_key = "logits_hf_dequant.npy" if r["quantized"] else "logits_hf.npy"
        np.save(ref / hf_key, r["logits_hf"].astype(np.float32))
        d_abs = max_abs(r["logits_mlx"], r["logits_hf"])
        d_rel = rel_norm(r["logits_mlx"], r["logits_hf"])
        same = r["mlx_tokens"] == r["hf_tokens"]
        hf_tok_key = "hf_dequant_tokens" if r["quantized"] else "hf_tokens"
        greedy = {
            "prompt_ids": prompt,
            "mlx_tokens": r["mlx_tokens"],
            hf_tok_key: r["hf_tokens"],
            "min_top1_margin": round(min(r["mlx_margins"]), 6),
            "hf_min_top1_margin": round(min(r["hf_margins"]), 6),
            "mlx_lm_exact": mlx_exact,
            "seed": seed,
            "mlx_vs_hf_max_abs": d_abs,
        }
        if not mlx_exact:
            greedy["note"] = MLX_LM_INEXACT[arch]
        (ref / "greedy.json").write_text(json.dumps(greedy, indent=1) + "\n")
        line = (f"{vname}: mlx-lm vs transformers{' (dequantized)' if r['quantized'] else ''}"
                f" max abs {d_abs:.2e}, rel norm {d_rel:.2e}, greedy tokens "
                f"{'identical' if same else 'DIFFER'}")
        print(line)
        report.append(line)
        if mlx_exact:
            assert d_abs < 1e-3, line
            if not same:
                print(f"WARNING: {vname}: greedy tokens differ between mlx-lm and transformers")
        size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
        assert size < 1_000_000, f"{vname} is {size} bytes"


class contextlib_quiet:
    """Silences mlx-lm's [INFO] prints during convert."""

    def __enter__(self):
        self._stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")

    def __exit__(self, *exc):
        sys.stdout.close()
        sys.stdout = self._stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="families to build (default: all)")
    args = ap.parse_args()
    names = args.names or list(FAMILIES)
    print("versions: mlx", mx.__version__, "mlx-lm", mlx_lm.__version__,
          "transformers", transformers.__version__, "torch", torch.__version__,
          "tokenizers", tokenizers.__version__, "numpy", np.__version__)
    OUT.mkdir(parents=True, exist_ok=True)
    report = []
    with tempfile.TemporaryDirectory(prefix="gomlx-fixtures-") as tmp:
        for name in names:
            build_family(name, FAMILIES[name], tmp, report)
    print("\nsummary:")
    for line in report:
        print("  " + line)


if __name__ == "__main__":
    main()
