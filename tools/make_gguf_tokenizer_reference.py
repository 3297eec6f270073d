#!/usr/bin/env python3
"""Writes testdata/smollm2_gguf_tokenizer_ids.jsonl.gz: the ids transformers'
GGUF tokenizer conversion gives for every line of
testdata/tokenizer_corpus.txt with SmolLM2-135M-Instruct's GGUF vocabulary
(byte-level BPE, tokenizer.ggml.pre = "smollm"), and the text its tokenizer
decodes them back to. tests/py/test_tokenizer.py compares `gomlx tokenize`
against it; transformers is not in the test venv, hence the fixture.

Needs transformers and gguf (the tools venv of scripts/setup.sh).
Run: python tools/make_gguf_tokenizer_reference.py [path/to/model.gguf]

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


def main():
    import transformers
    from transformers import AutoTokenizer

    gguf = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
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
    data = buf.getvalue().encode("utf-8")
    with open(OUT, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as z:
        z.write(data)
    print("wrote %s: %d lines, %d bytes" % (OUT, len(lines), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
