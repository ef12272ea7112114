#!/usr/bin/env bash
# Training and sampling throughput of the default model size (embedding 256, 2 x 512, batch 32,
# seq_len 50) on tiny-shakespeare: ours (`trainer bench`) and the PyTorch reference back to
# back on this machine, then the ratios and both processes' peak resident memory; ROUNDS times
# (default 3), alternating, then the median of each ratio over the rounds.
#
#   scripts/bench-vs-pytorch.sh [extra `trainer bench` flags, e.g. --backend ndarray]
#
# Needs ../shared (tiny-shakespeare, the PyTorch reference) and `pip install torch numpy`.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
steps=${STEPS:-20}

cargo build --release -p trainer >&2
python3 - "$text" "$steps" "${ROUNDS:-3}" "$@" <<'PY'
import json, resource, statistics, subprocess, sys
text, steps, rounds, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]

def run(cmd):
    """Runs cmd; its JSON line and its peak RSS in bytes (Linux reports KiB), where it set a new
    high for this script's children (so only the first round's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(out.strip().splitlines()[-1]), (peak if peak > before else None)

ratios = {"training x PyTorch": [], "training x burn::nn::Lstm": [], "sampling x PyTorch": [],
          "32 streams x single-stream PyTorch": []}
for n in range(1, rounds + 1):
    ours, ours_rss = run(["target/release/trainer", "bench", "--config", "configs/default.toml",
                          "--set", f"data.path={json.dumps(text)}", "--set", "data.valid_fraction=0.1",
                          "--steps", steps, "--with-nn-lstm", *extra])
    torch, torch_rss = run(["python3", "../shared/bench/pytorch_reference.py", "speed", text,
                            "--steps", steps])
    print(f"round {n} of {rounds}")
    print("ours:   ", json.dumps(ours))
    print("pytorch:", json.dumps(torch))
    values = [ours["train_chars_per_s"] / torch["train_chars_per_s"],
              ours["train_chars_per_s"] / ours["nn_lstm_train_chars_per_s"],
              ours["sample_chars_per_s"] / torch["sample_chars_per_s"],
              ours["sample32_chars_per_s"] / torch["sample_chars_per_s"]]
    for name, value in zip(ratios, values):
        ratios[name].append(value)
    print(f"training: {ours['train_chars_per_s']:.0f} vs {torch['train_chars_per_s']:.0f} chars/s = "
          f"{values[0]:.2f}x PyTorch, {values[1]:.2f}x burn::nn::Lstm "
          f"({ours['nn_lstm_train_chars_per_s']:.0f} chars/s)")
    print(f"sampling, 1 stream: {ours['sample_chars_per_s']:.0f} vs "
          f"{torch['sample_chars_per_s']:.0f} chars/s = {values[2]:.1f}x PyTorch")
    print(f"sampling, 32 streams: {ours['sample32_chars_per_s']:.0f} chars/s = "
          f"{values[3]:.1f}x single-stream PyTorch")
    if ours_rss and torch_rss:
        print(f"peak RSS after training steps: ours {ours['peak_rss_bytes'] / 2**20:.0f} MiB; "
              f"whole processes: ours {ours_rss / 1024:.0f} MiB, PyTorch {torch_rss / 1024:.0f} MiB")
print(f"median of {rounds} rounds (ours and PyTorch alternate, so load that drifts meets both):")
for name, values in ratios.items():
    print(f"  {name}: {statistics.median(values):.2f} (from {min(values):.2f} to {max(values):.2f})")
PY
