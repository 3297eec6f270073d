#!/usr/bin/env python3
"""Record Hugging Face transformers references for the SmolLM2 GGUF model.

Loads models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by `make setup`) with
transformers, which dequantizes every tensor to float32, and writes
testdata/smollm2/:
  logits.json                 the 16 input ids and what the arrays below hold
  logits_hf_last.npy          float32 [vocab]: full logits of the last position
  logits_hf_top50_values.npy  float32 [16, 50]: the 50 largest logits per position
  logits_hf_top50_indices.npy int32   [16, 50]: their token ids (descending)
  greedy.json                 three ChatML prompts: text, prompt ids (HF tokenizer
                              from the same GGUF), 40 greedy tokens (EOS ignored),
                              per-step top-1 margins and the decoded text.
Full [16, vocab] float32 logits would be 3 MB, so only the top 50 per position
plus the complete last row are kept (about 200 kB in all).

Run through tools/make_fixtures.sh (creates the pinned tools venv).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

torch.set_num_threads(2)
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = REPO / "testdata" / "smollm2"

TOP_K = 50
GEN_TOKENS = 40
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]
# BOS and a plain-text sentence with two ids from the end of the vocabulary
# placed early, so the embedding rows there are exercised while the last position
# still reads natural text.
LOGITS_TEXT = "The capital of France is Paris, and the capital of Germany is"
LOGITS_LEN = 16


def chatml(user):
    """The SmolLM2 chat format for one user turn, without a system message."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def top2_margin(row):
    top2 = torch.topk(row.double(), 2).values
    return float(top2[0] - top2[1])


def greedy(model, ids):
    """Greedy decoding with the KV cache, EOS ignored."""
    out, margins = [], []
    with torch.no_grad():
        res = model(torch.tensor([ids]), use_cache=True)
        past = res.past_key_values
        last = res.logits[0, -1]
        for _ in range(GEN_TOKENS):
            t = int(torch.argmax(last))
            out.append(t)
            margins.append(top2_margin(last))
            res = model(torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past = res.past_key_values
            last = res.logits[0, -1]
    return out, margins


def main():
    path = MODEL_DIR / GGUF
    if not path.exists():
        sys.exit(f"{path} is missing: run `make setup` first")
    print("versions: transformers", transformers.__version__, "torch", torch.__version__)
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL_DIR), gguf_file=GGUF)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(MODEL_DIR), gguf_file=GGUF, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    vocab = model.config.vocab_size
    OUT.mkdir(parents=True, exist_ok=True)

    # Logits for a fixed 16-id input.
    ids = tok(LOGITS_TEXT, add_special_tokens=False)["input_ids"]
    ids = [tok.eos_token_id if tok.bos_token_id is None else tok.bos_token_id,
           vocab - 1, ids[0], vocab - 2] + ids[1:]
    assert len(ids) == LOGITS_LEN, ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    top = torch.topk(logits, TOP_K, dim=-1)
    np.save(OUT / "logits_hf_last.npy", logits[-1].numpy().astype(np.float32))
    np.save(OUT / "logits_hf_top50_values.npy", top.values.numpy().astype(np.float32))
    np.save(OUT / "logits_hf_top50_indices.npy", top.indices.numpy().astype(np.int32))
    margins = [top2_margin(r) for r in logits]
    meta = {
        "model": f"models/{GGUF}",
        "input_ids": ids,
        "input_text": "%s (the GGUF's bos id), vocab-1, first word, vocab-2, then the rest of: %s"
                      % (tok.convert_ids_to_tokens(ids[0]), LOGITS_TEXT),
        "vocab_size": vocab,
        "top_k": TOP_K,
        "top1_margins": [round(m, 5) for m in margins],
        "last_top1": int(torch.argmax(logits[-1])),
        "last_top1_text": tok.decode([int(torch.argmax(logits[-1]))]),
        "reference": f"transformers {transformers.__version__} (GGUF dequantized to float32, eager)",
    }
    (OUT / "logits.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"logits: last position top-1 {meta['last_top1']} {meta['last_top1_text']!r}, "
          f"min top-1 margin {min(margins):.4f}")

    # Greedy continuations of three chat prompts.
    entries = []
    for user in PROMPTS:
        text = chatml(user)
        pids = tok(text, add_special_tokens=False)["input_ids"]
        tokens, margins = greedy(model, pids)
        first_eos = next((i for i, t in enumerate(tokens) if t == tok.eos_token_id), None)
        entries.append({
            "user": user,
            "prompt_text": text,
            "prompt_ids": pids,
            "hf_tokens": tokens,
            "hf_text": tok.decode(tokens),
            "min_top1_margin_32": round(min(margins[:32]), 5),
            "min_top1_margin_40": round(min(margins), 5),
            "top1_margins": [round(m, 5) for m in margins],
            "first_eos_index": first_eos,
        })
        print(f"{user!r}: {tok.decode(tokens[:first_eos or GEN_TOKENS])!r}; "
              f"min margin over 32 steps {min(margins[:32]):.4f}")
    greedy_json = {
        "model": f"models/{GGUF}",
        "reference": f"transformers {transformers.__version__} (GGUF dequantized to float32, "
                     "eager attention, KV cache), greedy, EOS ignored",
        "eos_token_id": tok.eos_token_id,
        "prompts": entries,
    }
    (OUT / "greedy.json").write_text(json.dumps(greedy_json, indent=1) + "\n")


if __name__ == "__main__":
    main()
