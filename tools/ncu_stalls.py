"""Where the layer kernel's warps spend their time, from Nsight Compute's
per-instruction source counters (tools/gpu_ncu.sh writes them:
`ncu -i REPORT --page source --csv --print-source sass`, gzipped or not).

Prints the warp-state samples by stall reason over the whole kernel, the
wait at each grid barrier (the samples on the instruction after the block
barrier that ends it: the block's warps wait there while thread 0 polls
the count), the samples between grid barriers (the phases, each barrier's
wait counted with the phase before it) and the instructions with the most
samples. A grid barrier is told from a block barrier by the poll before
it: a strong load of the count and a NANOSLEEP within 48 instructions. In
the layer kernel the first grid barrier in code is the one at the top of
every layer but the first, so span 0's wait is the last phase's (E's).

Usage: python3 tools/ncu_stalls.py SASS.csv[.gz] [--top N]"""
import argparse
import csv
import gzip
from collections import Counter

SAMPLES = "Warp Stall Sampling (All Samples)"


def read_rows(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = list(csv.reader(f))
    # The first row names the kernel; the second holds the column names.
    head = next(i for i, r in enumerate(rows) if "Address" in r and "Source" in r)
    cols = {name: i for i, name in enumerate(rows[head])}
    return cols, [r for r in rows[head + 1:] if len(r) == len(rows[head])]


def number(text):
    try:
        return int(text.replace(",", ""))
    except ValueError:
        return 0


def grid_barrier_ends(code):
    """Indices of the instructions after each grid barrier's closing BAR.SYNC."""
    ends = []
    for i, ins in enumerate(code):
        if not ins.startswith("BAR.SYNC"):
            continue
        window = code[max(0, i - 48):i]
        if any(w.startswith("NANOSLEEP") for w in window) and any("STRONG.GPU" in w and w.startswith("LDG")
                                                                   for w in window):
            ends.append(i + 1)
    return ends


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    cols, rows = read_rows(args.csv)
    stalls = [c for c in cols if c.startswith("stall_") and "Not Issued" not in c]
    code = [r[cols["Source"]].strip() for r in rows]
    samples = [number(r[cols[SAMPLES]]) for r in rows]
    total = sum(samples) or 1

    by_reason = Counter()
    for r in rows:
        for c in stalls:
            by_reason[c[len("stall_"):]] += number(r[cols[c]])
    print(f"warp-state samples: {total}")
    for reason, n in by_reason.most_common(10):
        print(f"  {reason:18s} {n:8d} {100 * n / total:5.1f}%")

    base = int(rows[0][cols["Address"]], 16)
    offset = [int(r[cols["Address"]], 16) - base for r in rows]
    barrier = [number(r[cols["stall_barrier"]]) for r in rows]
    ends = grid_barrier_ends(code)
    # A barrier's wait lands on the first few instructions after it (the
    # ones its warps cannot issue yet): its barrier samples up to 8 on.
    waits = [sum(barrier[e:min(e + 8, len(rows))]) for e in ends]
    print(f"\ngrid barriers: {len(ends)} (the block's wait after each, in code order)")
    for k, (e, w) in enumerate(zip(ends, waits)):
        print(f"  barrier {k} at +0x{offset[e - 1]:05x}: {w:7d} {100 * w / total:5.1f}%")
    # Spans between barrier ends; each barrier's wait moves to the span before it.
    bounds = [0] + ends + [len(rows)]
    spans = [sum(samples[a:b]) for a, b in zip(bounds, bounds[1:])]
    for k, w in enumerate(waits):
        spans[k + 1] -= w
        spans[k] += w
    print("\nsamples between grid barriers (code order; each barrier's wait with the span before it):")
    for k, n in enumerate(spans):
        print(f"  span {k}: {n:8d} {100 * n / total:5.1f}%")

    print(f"\ntop {args.top} instructions:")
    order = sorted(range(len(rows)), key=lambda i: -samples[i])[:args.top]
    for i in order:
        top = sorted(((number(rows[i][cols[c]]), c[len('stall_'):]) for c in stalls), reverse=True)[:2]
        why = ", ".join(f"{name} {n}" for n, name in top if n)
        print(f"  +0x{offset[i]:05x} {samples[i]:7d}  {code[i][:56]:56s} {why}")


if __name__ == "__main__":
    main()
