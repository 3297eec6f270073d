#!/usr/bin/env bash
# cpu_perf_ab.sh - two builds of a CPU workload compared by where their
# cycles go: perf samples per function, runs alternating A B A B ...
#
# On a shared VM the tok/s of one run moves 5-20% with the neighbours and
# with where the two vCPUs land (docs/CPU_KERNELS.md, "Benchmark"); the
# samples a function collects for a fixed amount of work move much less,
# so a change to one kernel shows in its own row even when the totals
# drown it. Needs perf (linux-perf).
#
#   tools/cpu_perf_ab.sh [-n ROUNDS] [-t TOP] BIN_A BIN_B -- ARGS...
#
# e.g. tools/cpu_perf_ab.sh old/gomlx build/gomlx -- bench MODEL --runs 1 --gen 1024
set -euo pipefail
rounds=2 top=8
while getopts "n:t:" o; do
  case $o in
    n) rounds=$OPTARG ;;
    t) top=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -lt 3 ] || [ "$3" != "--" ]; then
  echo "usage: $0 [-n ROUNDS] [-t TOP] BIN_A BIN_B -- ARGS..." >&2
  exit 2
fi
a=$1 b=$2
shift 3
command -v perf >/dev/null || { echo "$0: perf not found" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  for side in A B; do
    bin=$a
    [ $side = B ] && bin=$b
    perf record -q -o "$tmp/perf.data" -- "$bin" "$@" >/dev/null 2>&1
    # "samples symbol" for the hottest functions of this run
    perf report -i "$tmp/perf.data" --stdio --no-children -n 2>/dev/null |
      awk -v top="$top" '/^ +[0-9.]+%/ && ++k <= top { print $2, $NF }' >"$tmp/$side$r"
    total=$(perf report -i "$tmp/perf.data" --stdio --no-children -n 2>/dev/null |
      awk '/^# Samples:/ && !seen++ { print $3 }')
    echo "$side (round $r, $total samples in all):"
    sed 's/^/  /' "$tmp/$side$r"
  done
done
