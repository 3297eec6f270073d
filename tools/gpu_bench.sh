#!/usr/bin/env bash
# Benchmarks gomlx against mlx-lm on an NVIDIA GPU with the mlx-cuda-13
# wheel, on a machine without internet: everything comes from WHEELS (the
# cp3XX mlx wheel, mlx-cuda-13, mlx-lm) and the CUDA 13 libraries that
# PyTorch's own wheels installed. The Go API's overhead is measured with
# build/gomlx.test where there is one (built where Go is: go test -c -o
# build/gomlx.test .), else with go test if the machine has Go. Usage:
#   tools/gpu_bench.sh WHEELS_DIR OUT_DIR [model names for make_bench_models.py]
set -euo pipefail
WHEELS=$1 OUT=$2
shift 2
MODELS=${*:-qwen2.5-3b llama-3.2-3b mistral-7b}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/tools/gpu_env.sh" "$WHEELS"
PY=python3
$PY -c 'import mlx.core as mx; print("MLX", mx.__version__, mx.default_device(), mx.cuda.is_available() if hasattr(mx, "cuda") else "")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY "$ROOT/tools/make_bench_models.py" --out "$ROOT/gpu-work/models" $MODELS
DIRS=()
for m in $MODELS; do DIRS+=("$ROOT/gpu-work/models/$m-4bit"); done
GO_TEST=()
[ -x "$ROOT/build/gomlx.test" ] && GO_TEST=(--go-test "$ROOT/build/gomlx.test")
export LD_LIBRARY_PATH="$ROOT/build:$LD_LIBRARY_PATH"
$PY "$ROOT/tools/bench.py" --gomlx "$ROOT/build/gomlx" --device gpu --models "${DIRS[@]}" "${GO_TEST[@]}" ${BENCH_ARGS:-} \
  --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.txt"
