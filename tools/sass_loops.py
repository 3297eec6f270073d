"""The layer kernel's SASS, on a machine without a GPU: registers, spills and
the inner loops' instruction counts of the benchmark shapes' variants.

A decode step's product phases are bound by issuing their instructions
(docs/GPU.md), so a change to the kernel's source can be judged here
before a GPU run: how many instructions a tensor-core window (32 HMMA) or
an FMA-loop chunk takes, and whether ptxas spills. The variants and their
defines are tests/py/test_cuda_sources.py's; NVRTC is the pinned wheel of
requirements/test.txt, and the disassembler comes from two more wheels:

    .venv/bin/pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
    .venv/bin/python tools/sass_loops.py [--variants llama-3.2-3b,...] [DEFINE=VALUE ...]

DEFINE=VALUE pairs override the variants' defines (e.g. LOP=1), so that two
runs compare a change.
"""
import argparse
import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))
import test_cuda_sources as sources  # noqa: E402

SHAPES = ["llama-3.2-3b", "qwen2.5-3b", "gemma-2-2b", "mistral-7b"]


def wheel_dir(module):
    spec = importlib.util.find_spec(module)
    if not spec or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def nvrtc_lib():
    d = wheel_dir("nvidia.cuda_nvrtc")
    if not d:
        sys.exit("nvidia-cuda-nvrtc-cu12 is not installed (requirements/test.txt)")
    return ctypes.CDLL(str(d / "lib" / "libnvrtc.so.12"))


def cubin_and_log(lib, source, defines):
    rc, log, cubin = sources.compile_cuda(lib, source, "sm_90", [f"{k}={v}" for k, v in defines.items()],
                                          options=["--ptxas-options=-v"], cubin=True)
    if rc:
        sys.exit(log)
    return cubin, log


def disassemble(cubin):
    """(address, instruction) of the cubin's SASS, by cuobjdump and nvdisasm."""
    dump = wheel_dir("nvidia.cu13")
    tools = {name: next(iter(dump.rglob(name)), None) if dump else None for name in ("cuobjdump", "nvdisasm")}
    if not all(tools.values()):
        sys.exit("cuobjdump/nvdisasm not found: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        env = dict(os.environ, PATH=f"{tools['nvdisasm'].parent}:{os.environ.get('PATH', '')}")
        disasm = subprocess.run([str(tools["cuobjdump"]), "-sass", f.name], capture_output=True, text=True,
                                env=env, check=True).stdout
    ins = []
    for line in disasm.splitlines():
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m:
            ins.append((int(m.group(1), 16), m.group(2).strip()))
    return ins


def opcode(text):
    parts = text.split()
    return parts[1] if parts[0].startswith("@") and len(parts) > 1 else parts[0]


# The pipe an opcode issues to, as public microbenchmarks of sm_80/sm_90
# describe them (NVIDIA documents none): integer logic, shifts, adds and
# compares on the ALU pipe, IMAD and float arithmetic on the FMA pipes,
# both at 16 lanes a cycle per scheduler for 32-bit integer work, so an
# ALU-heavy loop is bound by that pipe before the issue slot (docs/GPU.md).
PIPE_PREFIXES = {
    "alu": ("LOP3", "SHF", "IADD3", "LEA", "SEL", "ISETP", "VIMNMX", "VIADD", "PRMT", "PLOP3", "FSEL", "FSETP", "IABS",
            "FLO", "POPC", "BMSK", "IMNMX", "FMNMX"),
    "fma": ("IMAD", "IMUL", "FFMA", "FMUL", "FADD", "HFMA2", "HADD2", "HMUL2"),
    "tensor": ("HMMA", "IMMA"),
    "memory": ("LD", "ST", "ATOM", "RED"),
}


def pipe_counts(ops):
    """Instructions of `ops` (opcode counts) by pipe; the rest as other."""
    out = Counter()
    for op, n in ops.items():
        pipe = next((p for p, pre in PIPE_PREFIXES.items() if op.startswith(pre)), "other")
        out[pipe] += n
    return out


def inner_loops(ins):
    """Loops (a backward branch and what it jumps over) holding no other loop
    of 30+ instructions: (start, length, opcode counts)."""
    index = {a: i for i, (a, _) in enumerate(ins)}
    loops = []
    for i, (a, t) in enumerate(ins):
        m = re.search(r"BRA .*?0x([0-9a-f]+)", t)
        if m and int(m.group(1), 16) < a and int(m.group(1), 16) in index:
            loops.append((index[int(m.group(1), 16)], i))
    inner = [(s, e) for s, e in loops
             if e - s >= 30 and not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) and e2 - s2 >= 30 for s2, e2 in loops)]
    return [(ins[s][0], e - s + 1, Counter(opcode(t) for _, t in ins[s:e + 1])) for s, e in inner]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(SHAPES), help="test_cuda_sources.py variant names")
    ap.add_argument("defines", nargs="*", help="DEFINE=VALUE overrides")
    a = ap.parse_args()
    extra = dict(d.split("=", 1) for d in a.defines)
    lib = nvrtc_lib()
    for name in a.variants.split(","):
        defines = {**sources.LAYER_BASE, **sources.LAYER_VARIANTS[name], **extra}
        cubin, log = cubin_and_log(lib, sources.layer_source(int(defines["NL"])), defines)
        regs = re.search(r"Used (\d+) registers", log)
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
        ins = disassemble(cubin)
        print(f"{name}: {len(ins)} instructions, {regs.group(1) if regs else '?'} registers, "
              f"spills {spills.group(1)}/{spills.group(2)} bytes (stores/loads)")
        for start, n, ops in inner_loops(ins):
            mma = sum(v for k, v in ops.items() if k.startswith(PIPE_PREFIXES["tensor"]))
            ffma = ops.get("FFMA", 0)
            if mma >= 16 or ffma >= 32:
                top = ", ".join(f"{k} {v}" for k, v in ops.most_common(4))
                kind = f"{mma} {'IMMA' if any(k.startswith('IMMA') for k in ops) else 'HMMA'}" if mma else f"{ffma} FFMA"
                pipes = pipe_counts(ops)
                print(f"  loop at {start:#07x}: {n} instructions, {kind} ({top}); pipes: ALU {pipes['alu']}, "
                      f"FMA {pipes['fma']}, memory {pipes['memory']}, other {pipes['other']}")


if __name__ == "__main__":
    main()
