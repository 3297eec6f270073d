"""The CUDA C our GPU kernels are built from compiles, on a machine without a GPU.

The kernels (src/mlx/cuda_*_source.h) are compiled with NVRTC when a model
first runs on an NVIDIA GPU, so a mistake in them would otherwise show only
there. Here NVRTC from the pinned nvidia-cuda-nvrtc wheel compiles the same
source, with the defines cuda_layer_variant.cpp and cuda_qmv.cpp pass, for the
variants the benchmark shapes pick and for the edges of each define: SASS
for sm_90 (H100/H200) and sm_80, and the compute_75 PTX every GPU falls back
to; likewise `gomlx bench`'s memory read probe (cuda_read_probe.cpp). Whether the kernels compute the right thing is test_cuda_layer's and
test_cuda_qmv's job on a GPU.
"""
import ctypes
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "mlx"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="NVIDIA's NVRTC wheels are for Linux only"
)


def cuda_source(header, name):
    text = (SRC / header).read_text()
    m = re.search(name + r' = R"CUDA\((.*?)\)CUDA"', text, re.S)
    assert m, f"{name} not found in {header}"
    return m.group(1)


@pytest.fixture(scope="module")
def nvrtc():
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    assert spec and spec.submodule_search_locations, "nvidia-cuda-nvrtc-cu12 is not installed (requirements/test.txt)"
    lib_dir = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return ctypes.CDLL(str(lib_dir / "libnvrtc.so.12"))


def compile_cuda(lib, source, arch, defines, options=(), cubin=False):
    """NVRTC's result code and log for source compiled for arch (and, with
    cubin, the cubin, or None where it failed; tools/sass_loops.py)."""
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"k.cu", 0, None, None) == 0
    opts = [f"--gpu-architecture={arch}", "--std=c++17", "-DKERNEL_NAME=k"] + list(options)
    opts += [f"-D{d}" for d in defines]
    arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    code = None
    if cubin and rc == 0:
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetCUBIN(prog, buf)
        code = buf.raw
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    text = log.value.decode(errors="replace")
    return (rc, text, code) if cubin else (rc, text)


# The layer kernel's defines as variant_defines() (cuda_layer_variant.cpp) writes
# them; "llama-3.2-3b", "qwen2.5-3b", "gemma-2-2b" and "mistral-7b" are what the benchmark shapes pick on an H200.
LAYER_BASE = dict(XT=0, GS=64, HD=128, REP=3, HAS_BIAS=0, ROPE_TRAD=0, LT=512, DOT_U=1, ROWS_A=4, ROWS_D=4,
                  KC=32, KK=3, HS=1, RH=3, TIMING=0, TC=0, TS=2, TCA=0, TSA=1, TCR_C=0, TCR_E=0, GEMMA=0,
                  KVP=0, DEAL_A=0, DEAL_C=0, DEAL_E=0, TCI=1, LOP=1, NIB0=0, TCW_H=0, TCW_Q=0, TCW_F=0,
                  NWP=1, RES0=1, LN=0, HALF=0, HALF_A=0)
LAYER_VARIANTS = {
    "llama-3.2-3b": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_C=8, TCR_E=8, TCW_H=1, TCW_Q=1, TCW_F=1, LN=1, HALF=1,
                         HALF_A=1),
    "qwen2.5-3b": dict(NL=36, REP=8, HAS_BIAS=1, ROWS_A=2, HS=4, RH=2, TC=1, TS=1, TCR_C=8, TCR_E=16, KVP=1, TCW_H=1,
                       LN=1, DEAL_A=1),
    "gemma-2-2b": dict(NL=26, HD=256, KK=2, REP=2, HS=2, RH=1, TC=1, TS=1, TCA=1, TSA=8, TCR_C=8, TCR_E=8, GEMMA=1,
                       KVP=1, TCW_F=1, HALF=1),
    "gemma-2-2b-halves-everywhere": dict(NL=26, HD=256, KK=2, REP=2, HS=2, RH=1, TC=1, TS=1, TCA=1, TSA=8, TCR_C=8,
                                         TCR_E=8, GEMMA=1, KVP=1, TCW_F=1, HALF=1, HALF_A=1),
    "gemma-2-2b-fma-residuals": dict(NL=26, HD=256, KK=2, REP=2, HS=2, RH=1, TC=1, TS=1, TCA=1, TSA=8, GEMMA=1, KVP=1,
                                     DEAL_C=1, DEAL_E=1),
    "qwen2.5-3b-tca-halves": dict(NL=36, REP=8, HAS_BIAS=1, ROWS_A=2, HS=4, RH=2, TC=1, TS=1, TCA=1, TSA=8, TCR_C=8,
                                  TCR_E=16, KVP=1, TCW_H=1, LN=1, HALF_A=1),
    "llama-3.2-3b-whole-tiles": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_C=8, TCR_E=8, TCW_H=1, TCW_Q=1, TCW_F=1,
                                     LN=1),
    "mistral-7b": dict(NL=32, REP=4, RH=4, TC=1, TS=1, TCA=1, TSA=4, TCR_C=8, TCR_E=8, TCW_H=1, TCW_Q=1, TCW_F=1,
                       LN=1),
    "mistral-7b-windows-checked": dict(NL=32, REP=4, RH=4, TC=1, TS=1, TCA=1, TSA=4, TCR_C=8, TCR_E=8),
    "mistral-7b-tc-residual-teams": dict(NL=32, REP=4, RH=4, TC=1, TS=1, TCA=1, TSA=4, TCR_C=8, TCR_E=2, KVP=1),
    "float16-g32-traditional-rope-timing": dict(NL=1, XT=1, GS=32, HD=64, REP=1, RH=1, ROPE_TRAD=1, TIMING=2, TCA=1, TSA=2,
                                                DOT_U=2, ROWS_D=2),
    "g128-teams-of-4-tc-residuals": dict(NL=2, GS=128, HD=192, KK=2, REP=6, RH=6, TC=1, TS=4, TCA=1, TSA=1, TCR_C=8, TCR_E=16,
                                         TIMING=1, KVP=1, TCI=0),
    "llama-3.2-3b-contiguous-shares": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_E=8, TCI=0),
    "llama-3.2-3b-two-lop3": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_C=8, TCR_E=8, LOP=0),
    "llama-3.2-3b-nibbles-at-0": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_C=8, TCR_E=8, NIB0=1),
    "gemma-2-2b-whole-windows": dict(NL=26, HD=256, KK=2, REP=2, HS=2, RH=1, TC=1, TS=1, TCA=1, TSA=8, TCR_C=8, TCR_E=8,
                                     GEMMA=1, KVP=1, TCW_Q=1, TCW_F=1),
    "float16-whole-windows": dict(NL=2, XT=1, REP=4, RH=4, TC=1, TS=1, TCA=1, TSA=4, TCR_C=8, TCR_E=2, TCW_H=1, TCW_Q=1,
                                  TCW_F=1),
    "float16-two-lop3": dict(NL=2, XT=1, REP=4, RH=4, TC=1, TS=1, TCA=1, TSA=4, TCR_C=8, TCR_E=2, LOP=0),
    "qwen2.5-3b-fma-o-proj": dict(NL=36, REP=8, HAS_BIAS=1, ROWS_A=2, HS=4, RH=2, TC=1, TS=1, TCR_E=16, KVP=1, DEAL_C=1),
    "llama-3.2-3b-late-loads": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_C=8, TCR_E=8, TCW_H=1, TCW_Q=1, TCW_F=1,
                                    NWP=0, RES0=0),
    "gemma-2-2b-late-loads": dict(NL=26, HD=256, KK=2, REP=2, HS=2, RH=1, TC=1, TS=1, TCA=1, TSA=8, TCR_C=8, TCR_E=8,
                                  GEMMA=1, KVP=1, TCW_F=1, NWP=0, RES0=0),
    "llama-3.2-3b-early-norm": dict(NL=28, TC=1, TS=2, TCA=1, TSA=4, TCR_C=8, TCR_E=8, TCW_H=1, TCW_Q=1, TCW_F=1),
    "qwen2.5-3b-early-norm": dict(NL=36, REP=8, HAS_BIAS=1, ROWS_A=2, HS=4, RH=2, TC=1, TS=1, TCR_C=8, TCR_E=16, KVP=1,
                                  TCW_H=1),
    "late-norm-fma": dict(NL=2, TC=0, LN=1),
    "gemma-float16-fma": dict(NL=3, XT=1, HD=256, KK=2, REP=2, RH=2, GEMMA=1, TC=0, KVP=1, DEAL_A=1),
}


def layer_source(nl):
    params = "".join(f" , const void *a{i}" for i in range(2 * nl))
    parts = [("cuda_common_source.h", "kCudaCommonSource"), ("cuda_layer_sync_source.h", "kCudaLayerSyncSource"),
             ("cuda_layer_x_source.h", "kCudaLayerXSource"), ("cuda_layer_dot_source.h", "kCudaLayerDotSource"),
             ("cuda_layer_source.h", "kCudaLayerSource")]  # in cuda_layer.cpp's layers_source() order
    return f"#define LAYER_ARRAYS{params}\n" + "".join(cuda_source(h, n) for h, n in parts)


LAYER_CASES = [(v, "sm_90") for v in LAYER_VARIANTS] + [
    (v, arch) for v in ("llama-3.2-3b", "gemma-2-2b") for arch in ("sm_80", "compute_75")]


@pytest.mark.parametrize("variant,arch", LAYER_CASES)
def test_layer_kernel_compiles(nvrtc, variant, arch):
    defines = {**LAYER_BASE, **LAYER_VARIANTS[variant]}
    rc, log = compile_cuda(nvrtc, layer_source(defines["NL"]), arch, [f"{k}={v}" for k, v in defines.items()])
    assert rc == 0, f"{variant} for {arch}:\n{log}"


@pytest.mark.parametrize("xt,gs,rows,unroll,lop", [(0, 64, 2, 1, 0), (1, 32, 4, 1, 0), (0, 128, 4, 2, 1),
                                                    (1, 64, 2, 4, 1)])
def test_qmv_kernel_compiles(nvrtc, xt, gs, rows, unroll, lop):
    source = cuda_source("cuda_common_source.h", "kCudaCommonSource") + cuda_source("cuda_qmv_source.h",
                                                                                    "kCudaQmvSource")
    for arch in ("sm_90", "compute_75"):
        rc, log = compile_cuda(nvrtc, source, arch, [f"XT={xt}", f"QMV_GS={gs}", f"QMV_R={rows}", f"QMV_U={unroll}",
                                                     f"LOP={lop}"])
        assert rc == 0, f"XT={xt} GS={gs} R={rows} U={unroll} LOP={lop} for {arch}:\n{log}"


def test_read_probe_kernel_compiles(nvrtc):
    source = cuda_source("cuda_read_probe_source.h", "kCudaReadProbeSource")
    for arch in ("sm_90", "compute_75"):
        rc, log = compile_cuda(nvrtc, source, arch, [])
        assert rc == 0, f"read probe for {arch}:\n{log}"


def test_sync_probe_kernel_compiles(nvrtc):
    """tools/gpu_sync_probe.py's kernels (sm_90 only: the copy engine's bulk copies and mbarriers)."""
    spec = importlib.util.spec_from_file_location("gpu_sync_probe", ROOT / "tools" / "gpu_sync_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    rc, log = compile_cuda(nvrtc, probe.SOURCE, "sm_90", [])
    assert rc == 0, f"sync probe for sm_90:\n{log}"


# The mat-vec on tensor cores with the defines cuda_qmv.cpp's tc_defines() gives it: the layer kernel's parts
# (tc_dot) and its own kernel, for both dtypes, every group size, whole windows or not, and 1-3 blocks an SM.
@pytest.mark.parametrize("xt,gs,whole,blocks", [(0, 64, 1, 2), (0, 32, 0, 2), (1, 128, 1, 2), (1, 64, 0, 3),
                                                (0, 128, 0, 1)])
def test_qmv_tc_kernel_compiles(nvrtc, xt, gs, whole, blocks):
    parts = [("cuda_common_source.h", "kCudaCommonSource"), ("cuda_layer_sync_source.h", "kCudaLayerSyncSource"),
             ("cuda_layer_x_source.h", "kCudaLayerXSource"), ("cuda_layer_dot_source.h", "kCudaLayerDotSource"),
             ("cuda_qmv_tc_source.h", "kCudaQmvTcSource")]
    source = "".join(cuda_source(h, n) for h, n in parts)
    defines = [f"XT={xt}", f"GS={gs}", f"QMV_WHOLE={whole}", "LT=256", f"QMV_BLOCKS={blocks}", "LOP=1", "NIB0=0",
               "TC=1", "TCA=0", "TCR_C=0", "TCR_E=0", "TCI=1", "DOT_U=1", "GEMMA=0", "TIMING=0"]
    for arch in ("sm_90", "sm_80", "compute_75"):
        rc, log = compile_cuda(nvrtc, source, arch, defines)
        assert rc == 0, f"{defines} for {arch}:\n{log}"
