#!/usr/bin/env bash
# Training step of two commits on this machine, alternating: builds each commit's trainer (in a
# temporary worktree, sharing this checkout's target directory, so only our crates compile),
# then runs `trainer bench --with-nn-lstm` (default model size, tiny-shakespeare) ROUNDS times
# (default 4) for each, one after the other, and prints each run's step times and the medians.
# `burn::nn::Lstm`'s step shows whether the two commits ran on a machine in the same state.
#
#   scripts/compare-commits.sh BEFORE AFTER      e.g. scripts/compare-commits.sh HEAD~1 HEAD
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

python3 - "$work" "$text" "${ROUNDS:-4}" "$1" "$2" <<'PY'
import json, statistics, subprocess, sys
work, text, rounds, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
steps = {name: ([], []) for name in names}
for n in range(1, rounds + 1):
    for side, name in enumerate(names, 1):
        out = subprocess.run([f"{work}/trainer{side}", "bench", "--config", "configs/default.toml",
                              "--set", f"data.path={json.dumps(text)}", "--set",
                              "data.valid_fraction=0.1", "--steps", "10", "--warmup", "2",
                              "--sample-length", "1", "--with-nn-lstm"],
                             check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        ours = result["train_step_ms_median"]
        nn_lstm = 32 * 50 * 1000 / result["nn_lstm_train_chars_per_s"]
        steps[name][0].append(ours)
        steps[name][1].append(nn_lstm)
        print(f"round {n}, {name}: step {ours:.1f} ms, burn::nn::Lstm {nn_lstm:.0f} ms")
for name, (ours, nn_lstm) in steps.items():
    print(f"median, {name}: step {statistics.median(ours):.1f} ms, "
          f"burn::nn::Lstm {statistics.median(nn_lstm):.0f} ms")
PY
