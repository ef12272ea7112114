#!/usr/bin/env bash
# Training step of two commits on this machine, alternating: builds each commit's trainer (in a
# temporary worktree, sharing this checkout's target directory, so only our crates compile),
# then runs `trainer bench --with-nn-lstm` (default model size, tiny-shakespeare) ROUNDS times
# (default 4) for each, one after the other, and prints each run's step times and the medians.
# `burn::nn::Lstm`'s step shows whether the two commits ran on a machine in the same state.
# MEASURE=sampling compares sampling instead: one stream and 32 streams, in characters per
# second (`trainer bench`'s own sample length, one training step). MEASURE=recurrence compares
# one layer's recurrence alone (`trainer bench`'s `recurrence`: forward and backward, in ms).
#
#   [TEXT=file] [ROUNDS=n] [MEASURE=training|sampling|recurrence] scripts/compare-commits.sh BEFORE AFTER
#   e.g. scripts/compare-commits.sh HEAD~1 HEAD
#
# Needs ../shared/datasets/tinyshakespeare.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE AFTER (two commits)" >&2; exit 2; }
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
[ -f "$text" ] || { echo "$0: no text at $text (set TEXT)" >&2; exit 2; }
text=$(realpath "$text")
repo=$(pwd)
work=$(mktemp -d)
trap 'git -C "$repo" worktree prune; rm -rf "$work"' EXIT

for side in 1 2; do
    rev=${!side}
    git worktree add -q --detach "$work/tree$side" "$rev"
    (cd "$work/tree$side" && CARGO_TARGET_DIR="$repo/target" cargo build -q --release -p trainer)
    cp target/release/trainer "$work/trainer$side"
    rm -rf "$work/tree$side"
done
# The last build replaced this checkout's binary: build it again from the working tree.
cargo build -q --release -p trainer

case "${MEASURE:-training}" in
    training|sampling|recurrence) ;;
    *) echo "$0: MEASURE=$MEASURE: expected training, sampling or recurrence" >&2; exit 2 ;;
esac
python3 - "$work" "$text" "${ROUNDS:-4}" "${MEASURE:-training}" "$1" "$2" <<'PY'
import json, statistics, subprocess, sys
work, text, rounds, measure, names = (sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4],
                                      sys.argv[5:])
if measure == "training":
    flags = ["--steps", "10", "--warmup", "2", "--sample-length", "1", "--with-nn-lstm"]
    columns = {"step": lambda r: r["train_step_ms_median"],
               "burn::nn::Lstm": lambda r: 32 * 50 * 1000 / r["nn_lstm_train_chars_per_s"]}
    unit = "ms"
elif measure == "recurrence":
    flags = ["--steps", "10", "--warmup", "2", "--sample-length", "1"]
    columns = {"forward": lambda r: r["recurrence"]["forward_ms"],
               "backward": lambda r: r["recurrence"]["backward_ms"]}
    unit = "ms"
else:
    flags = ["--steps", "1", "--warmup", "0"]
    columns = {"1 stream": lambda r: r["sample_chars_per_s"],
               "32 streams": lambda r: r["sample32_chars_per_s"]}
    unit = "chars/s"
values = {name: {column: [] for column in columns} for name in names}
for n in range(1, rounds + 1):
    for side, name in enumerate(names, 1):
        out = subprocess.run([f"{work}/trainer{side}", "bench", "--config", "configs/default.toml",
                              "--set", f"data.path={json.dumps(text)}", "--set",
                              "data.valid_fraction=0.1", *flags],
                             check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        for column, read in columns.items():
            values[name][column].append(read(result))
        print(f"round {n}, {name}: " + ", ".join(
            f"{column} {values[name][column][-1]:.1f} {unit}" for column in columns))
for name, by_column in values.items():
    print(f"median, {name}: " + ", ".join(
        f"{column} {statistics.median(v):.1f} {unit}" for column, v in by_column.items()))
PY
