#!/usr/bin/env bash
# A/B of our CUDA 4-bit mat-vec (GOMLX_CUDA_QMV=1, the default) against
# MLX's own kernel (=0) with `gomlx bench`, alternating, on models made by
# tools/make_bench_models.py. Run after `source tools/gpu_env.sh WHEELS`.
# Usage: tools/gpu_ab.sh OUT_DIR ROUNDS MODEL_DIR...
set -euo pipefail
OUT=$1 ROUNDS=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
for m in "$@"; do
  for r in $(seq "$ROUNDS"); do
    order="0 1"
    [ $((r % 2)) -eq 0 ] && order="1 0" # so neither setting always runs first
    for v in $order; do
      f="$OUT/ab-$(basename "$m")-qmv$v-r$r.json"
      GOMLX_CUDA_QMV=$v "$ROOT/build/gomlx" bench "$m" --device gpu --json --gen 32,128 --runs 3 > "$f"
      python3 - "$f" "$v" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rs = "  ".join(f"gen {r['gen']}: decode {r['decode_tps']:.1f} tok/s, prompt {r['prompt_tps']:.0f}, "
               f"host {r['host_ms_per_token']:.3f} dispatch {r['dispatch_ms_per_token']:.3f} "
               f"wait {r['wait_ms_per_token']:.3f} ms/tok" for r in d["results"])
print(f"{d['model']:24s} qmv={sys.argv[2]}  {rs}", flush=True)
PY
    done
  done
done
