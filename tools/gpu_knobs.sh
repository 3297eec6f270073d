#!/usr/bin/env bash
# A GPU knob's whole check in one call, after `source tools/gpu_env.sh
# WHEELS` on a CUDA machine with our binaries in build/: for each setting
# (CONFIGS: '|'-separated, each a space-separated list of VAR=VALUE; an
# empty one is the defaults) test_cuda_layer and test_cuda_qmv, then
# bench_cuda_layer's layer time and phases (600 keys, GOMLX_CUDA_LAYER_TIMING=1)
# on its four shapes, then, with MODEL_DIRs, decode alternating the
# settings (tools/gpu_ab.sh, ROUNDS rounds). A test's log is kept in OUT
# when it fails.
# Usage: tools/gpu_knobs.sh OUT ROUNDS "CONFIGS" [MODEL_DIR...]
#   e.g. tools/gpu_knobs.sh gpu-work/k 2 "|GOMLX_CUDA_LAYER_TCW=0|GOMLX_CUDA_LAYER_LOP=0" gpu-work/models/*-4bit
set -uo pipefail
OUT=$1 ROUNDS=$2 CONFIGS=$3
shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/build"
mkdir -p "$OUT"
IFS='|' read -r -a SETTINGS <<< "$CONFIGS"
[ ${#SETTINGS[@]} -gt 0 ] || SETTINGS=("")
for i in "${!SETTINGS[@]}"; do
  read -r -a env_i <<< "${SETTINGS[$i]}"
  for t in test_cuda_layer test_cuda_qmv; do
    start=$(date +%s)
    env "${env_i[@]}" "$B/$t" > "$OUT/$t-c$i.log" 2>&1
    rc=$?
    echo "$t [${SETTINGS[$i]}] rc=$rc $(( $(date +%s) - start ))s: $(tail -n 1 "$OUT/$t-c$i.log")"
    [ $rc -eq 0 ] && rm -f "$OUT/$t-c$i.log"
  done
done
for shape in Llama Qwen Gemma Mistral; do
  for i in "${!SETTINGS[@]}"; do
    read -r -a env_i <<< "${SETTINGS[$i]}"
    log="$OUT/bench-$shape-c$i.log"
    env "${env_i[@]}" GOMLX_CUDA_LAYER_TIMING=1 "$B/bench_cuda_layer" 600 "$shape" > "$log" 2>&1
    printf '%-8s %-44s %s | %s\n' "$shape" "[${SETTINGS[$i]}]" \
      "$(grep -o '[0-9.]* in one kernel' "$log" || tail -n 1 "$log")" \
      "$(grep -o 'one kernel, its second layer:.*' "$log" | cut -c31-)"
  done
done
[ $# -gt 0 ] && AB_CONFIGS="$CONFIGS" "$ROOT/tools/gpu_ab.sh" "$OUT/ab" "$ROUNDS" "$@"
exit 0
