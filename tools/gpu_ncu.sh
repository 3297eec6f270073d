#!/usr/bin/env bash
# Nsight Compute on the layer kernel: one decode step of a shape's layers
# in one kernel (tools/c/bench_cuda_layer), full metric set, then its
# details page and per-instruction source counters, summarized by
# tools/ncu_stalls.py (stall reasons, the wait at each grid barrier, the
# warps' time by phase). Needs ncu (the CUDA toolkit's) on PATH and the
# built bench; run after `source tools/gpu_env.sh WHEELS`. ncu locks the SM
# clock at its base, so times read longer than unprofiled.
# Usage: tools/gpu_ncu.sh OUT_DIR SHAPE [KEYS]   (SHAPE: Llama, Qwen, Gemma, Mistral)
set -euo pipefail
OUT=$1 SHAPE=$2 KEYS=${3:-600}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
# The one-kernel chain's variant names its layer count (NL26..NL36); the
# kernel-a-layer variants are NL1. Skip the priming runs.
ncu --kernel-name 'regex:gomlx_layers_NL[1-9][0-9]_' --launch-skip 2 --launch-count 1 --set full \
    --import-source no -f -o "$OUT/$SHAPE" "$ROOT/build/bench_cuda_layer" "$KEYS" "$SHAPE" > "$OUT/$SHAPE-ncu.log" 2>&1
ncu -i "$OUT/$SHAPE.ncu-rep" --page details > "$OUT/$SHAPE-details.txt"
ncu -i "$OUT/$SHAPE.ncu-rep" --page source --csv --print-source sass | gzip > "$OUT/$SHAPE-sass.csv.gz"
python3 "$ROOT/tools/ncu_stalls.py" "$OUT/$SHAPE-sass.csv.gz" | tee "$OUT/$SHAPE-stalls.txt"
