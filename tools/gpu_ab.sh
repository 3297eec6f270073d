#!/usr/bin/env bash
# A/B of our GPU pieces with `gomlx bench`, alternating, on models made by
# tools/make_bench_models.py. By default one switch on (=1) and off (=0):
# AB_VAR names it, GOMLX_CUDA_QMV (our 4-bit mat-vec against MLX's) unless
# set, e.g. AB_VAR=GOMLX_CUDA_FUSED (the fused decode step). AB_CONFIGS
# instead lists whole settings separated by '|', each a space-separated
# list of VAR=VALUE (e.g. "GOMLX_CUDA_LAYER_TCW=0|GOMLX_CUDA_LAYER_TCW=7
# GOMLX_CUDA_LAYER_LOP=0"); every round runs them all, in reverse order
# every other round, so that none always runs first. Run after
# `source tools/gpu_env.sh WHEELS`.
# Usage: [AB_VAR=NAME | AB_CONFIGS=...] tools/gpu_ab.sh OUT_DIR ROUNDS MODEL_DIR...
set -euo pipefail
OUT=$1 ROUNDS=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR=${AB_VAR:-GOMLX_CUDA_QMV}
IFS='|' read -r -a CONFIGS <<< "${AB_CONFIGS:-$VAR=0|$VAR=1}"
mkdir -p "$OUT"
for m in "$@"; do
  for r in $(seq "$ROUNDS"); do
    order=$(seq 0 $((${#CONFIGS[@]} - 1)))
    [ $((r % 2)) -eq 0 ] && order=$(echo "$order" | tac)
    for i in $order; do
      read -r -a setting <<< "${CONFIGS[$i]}"
      f="$OUT/ab-$(basename "$m")-c$i-r$r.json"
      env "${setting[@]}" "$ROOT/build/gomlx" bench "$m" --device gpu --json --gen 32,128 --runs 3 > "$f"
      python3 - "$f" "${CONFIGS[$i]}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rs = "  ".join(f"gen {r['gen']}: decode {r['decode_tps']:.1f} tok/s, prompt {r['prompt_tps']:.0f}, "
               f"host {r['host_ms_per_token']:.3f} dispatch {r['dispatch_ms_per_token']:.3f} "
               f"wait {r['wait_ms_per_token']:.3f} ms/tok" for r in d["results"])
print(f"{d['model']:24s} [{sys.argv[2]}]  {rs}", flush=True)
PY
    done
  done
done
