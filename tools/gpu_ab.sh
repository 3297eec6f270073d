#!/usr/bin/env bash
# A/B of one of our GPU pieces on (=1, the default) and off (=0) with
# `gomlx bench`, alternating, on models made by tools/make_bench_models.py:
# AB_VAR names the switch, GOMLX_CUDA_QMV (our 4-bit mat-vec against MLX's)
# unless set, e.g. AB_VAR=GOMLX_CUDA_FUSED (the fused decode step). Run
# after `source tools/gpu_env.sh WHEELS`.
# Usage: [AB_VAR=NAME] tools/gpu_ab.sh OUT_DIR ROUNDS MODEL_DIR...
set -euo pipefail
OUT=$1 ROUNDS=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR=${AB_VAR:-GOMLX_CUDA_QMV}
mkdir -p "$OUT"
for m in "$@"; do
  for r in $(seq "$ROUNDS"); do
    order="0 1"
    [ $((r % 2)) -eq 0 ] && order="1 0" # so neither setting always runs first
    for v in $order; do
      f="$OUT/ab-$(basename "$m")-$VAR$v-r$r.json"
      env "$VAR=$v" "$ROOT/build/gomlx" bench "$m" --device gpu --json --gen 32,128 --runs 3 > "$f"
      python3 - "$f" "$VAR=$v" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rs = "  ".join(f"gen {r['gen']}: decode {r['decode_tps']:.1f} tok/s, prompt {r['prompt_tps']:.0f}, "
               f"host {r['host_ms_per_token']:.3f} dispatch {r['dispatch_ms_per_token']:.3f} "
               f"wait {r['wait_ms_per_token']:.3f} ms/tok" for r in d["results"])
print(f"{d['model']:24s} {sys.argv[2]}  {rs}", flush=True)
PY
    done
  done
done
