#!/usr/bin/env bash
# What dropout costs a training step: `trainer bench` on the default model size (tiny-shakespeare,
# embedding 256, 2 x 512, batch 32, seq_len 50) without dropout, with dropout 0.5 between the
# layers, and with 0.5 before the output layer too, alternating ROUNDS times (the machine is
# noisy), then the median step time of each.
#
#   scripts/bench-dropout.sh
#
# Needs ../shared's tiny-shakespeare.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
rounds=${ROUNDS:-3}

cargo build --release -p trainer >&2
python3 - "$text" "$rounds" <<'PY'
import json, statistics, subprocess, sys
text, rounds = sys.argv[1], int(sys.argv[2])
variants = {
    "no dropout": [],
    "dropout 0.5": ["--set", "model.dropout=0.5"],
    "dropout 0.5 + output 0.5": ["--set", "model.dropout=0.5", "--set", "model.output_dropout=0.5"],
}
times = {name: [] for name in variants}
for _ in range(rounds):
    for name, sets in variants.items():
        cmd = ["target/release/trainer", "bench", "--config", "configs/default.toml",
               "--set", f"data.path={json.dumps(text)}", "--set", "data.valid_fraction=0.1", *sets]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        times[name].append(json.loads(out.strip().splitlines()[-1])["train_step_ms_median"])
base = statistics.median(times["no dropout"])
for name, ms in times.items():
    median = statistics.median(ms)
    print(f"{name:26} {median:7.1f} ms per step ({median - base:+.1f} ms)   runs: {ms}")
PY
