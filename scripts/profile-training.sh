#!/usr/bin/env bash
# Where a training step's CPU time goes: `perf record` over `trainer bench` (default model
# size, tiny-shakespeare, sampling kept to one character), then the symbols with the largest
# share of the samples, and the share of the process's main thread with its largest items:
# Burn's own ops run there while the other cores wait (our ops' parallel work runs on rayon's
# threads). Then the page faults of a 20-step bench.
#
#   scripts/profile-training.sh [STEPS]      (default 40 timed steps)
#
# Needs `perf` (linux-perf) and ../shared/datasets/tinyshakespeare.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40}
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -p trainer >&2
perf record -q -o "$work/perf.data" target/release/trainer bench --config configs/default.toml \
    --set "data.path=\"$text\"" --set data.valid_fraction=0.1 \
    --steps "$steps" --warmup 3 --sample-length 1 >/dev/null
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | awk 'NR <= 20' | cut -c1-120
perf script -i "$work/perf.data" -F pid,tid,ip,sym 2>/dev/null | tr '/' ' ' \
    | awk '$1 == $2 { main++; $1 = $2 = $3 = ""; sub(/^ +/, ""); n[$0]++ } { all++ }
           END { printf "main thread (Burn'"'"'s ops outside ours): %.1f%% of %d samples\n", 100 * main / all, all
                 print "its largest items (share of all samples):"
                 for (s in n) printf "%8.2f%%  %s\n", 100 * n[s] / all, s | "sort -rn | head -5 | cut -c1-120" }'
# Page faults of a 20-step bench as scripts/bench-vs-pytorch.sh runs it (without the
# burn::nn::Lstm baseline): the allocator setting in crates/trainer/src/allocator.rs keeps them low.
perf stat -x, -e page-faults -o "$work/faults" target/release/trainer bench \
    --config configs/default.toml --set "data.path=\"$text\"" --set data.valid_fraction=0.1 \
    --steps 20 >/dev/null
awk -F, '/page-faults/ { print "page faults, 20-step bench: " $1 }' "$work/faults"
