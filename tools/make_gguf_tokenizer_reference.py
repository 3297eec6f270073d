#!/usr/bin/env python3
"""Writes the GGUF tokenizer fixtures of tests/py/test_tokenizer.py: the ids
transformers' GGUF tokenizer conversion gives for every line of
testdata/tokenizer_corpus.txt, and the text its tokenizer decodes them to.
transformers is not in the test venv, hence committed fixtures.

 - testdata/smollm2_gguf_tokenizer_ids.jsonl.gz: SmolLM2-135M-Instruct's GGUF
   (byte-level BPE, tokenizer.ggml.pre = "smollm").
 - testdata/tokenizer_spm.gguf.gz + testdata/tokenizer_spm_ids.jsonl.gz: a
   GGUF with no weights and a SentencePiece-style "llama" vocabulary (tokens,
   scores and types, no merges), built here from the Llama 2 tokenizer.json
   of the npm assets, since no such model is fetched by setup.

Needs transformers and gguf (the tools venv of scripts/setup.sh).
Run: python tools/make_gguf_tokenizer_reference.py [path/to/smollm2.gguf]

Format: first line {"corpus_sha256", "gguf", "transformers"}, then one
record per corpus line: {"plain": ids, "special": ids (only when it differs),
"decoded": text of the plain ids}."""
import gzip
import hashlib
import io
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "testdata", "tokenizer_corpus.txt")
OUT = os.path.join(ROOT, "testdata", "smollm2_gguf_tokenizer_ids.jsonl.gz")
DEFAULT = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA2 = os.path.join(ROOT, "assets", "node_modules", "@lenml", "tokenizer-llama2", "models",
                      "tokenizer.json")
SPM_GGUF = os.path.join(ROOT, "testdata", "tokenizer_spm.gguf.gz")
SPM_OUT = os.path.join(ROOT, "testdata", "tokenizer_spm_ids.jsonl.gz")


def write_gz(path, data):
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as z:
        z.write(data)


def make_spm_gguf(path):
    """A weightless "llama" GGUF: Llama 2's pieces with SentencePiece-like
    scores (minus the id for ordinary pieces), types and special ids."""
    import gguf
    import numpy as np

    with open(LLAMA2, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    tokens = [None] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    types, scores = [], []
    for i, piece in enumerate(tokens):
        if i == 0:
            types.append(gguf.TokenType.UNKNOWN)
        elif i in (1, 2):
            types.append(gguf.TokenType.CONTROL)
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
        scores.append(0.0 if types[-1] != gguf.TokenType.NORMAL else -float(i))
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_tensor("token_embd.weight", np.zeros((1, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(gguf_path, out_path):
    import transformers
    from transformers import AutoTokenizer

    gguf = gguf_path
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    backend = tok.backend_tokenizer
    with open(CORPUS, "rb") as f:
        raw = f.read()
    lines = raw.decode("utf-8").split("\n")[:-1]
    buf = io.StringIO()
    buf.write(json.dumps({"corpus_sha256": hashlib.sha256(raw).hexdigest(),
                          "gguf": os.path.basename(gguf),
                          "transformers": transformers.__version__}) + "\n")
    for line in lines:
        plain = tok(line, add_special_tokens=False)["input_ids"]
        special = tok(line, add_special_tokens=True)["input_ids"]
        # The public call and the converted backend must agree, or the
        # fixture would test something transformers itself is unsure of.
        assert plain == backend.encode(line, add_special_tokens=False).ids, line
        rec = {"plain": plain}
        if special != plain:
            rec["special"] = special
        rec["decoded"] = backend.decode(plain, skip_special_tokens=False)
        buf.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    write_gz(out_path, buf.getvalue().encode("utf-8"))
    print("wrote %s: %d lines, %d bytes" % (out_path, len(lines), os.path.getsize(out_path)))


def main():
    import tempfile

    reference(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT), OUT)
    with tempfile.TemporaryDirectory() as tmp:
        spm = os.path.join(tmp, "tokenizer_spm.gguf")
        make_spm_gguf(spm)
        with open(spm, "rb") as f:
            write_gz(SPM_GGUF, f.read())
        print("wrote %s: %d bytes" % (SPM_GGUF, os.path.getsize(SPM_GGUF)))
        reference(spm, SPM_OUT)


if __name__ == "__main__":
    main()
