#!/usr/bin/env bash
# Where a training step's time goes, ours and PyTorch's side by side: `trainer bench`'s
# `train_step_ops` (each fused op's passes, per step, over 5 steps) and
# scripts/pytorch-step-breakdown.py (torch.profiler over 5 steps of the reference's model), for
# the default model size, alternating ROUNDS times (default 2).
#
#   [SIMD=avx512|avx2|portable] [TEXT=file] [ROUNDS=n] scripts/step-breakdown.sh
#
# SIMD puts both on one instruction set (scripts/same-isa.sh). Needs
# `pip install torch` and ../shared/datasets/tinyshakespeare.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
[ -f "$text" ] || { echo "$0: no text at $text (set TEXT)" >&2; exit 2; }
source scripts/same-isa.sh
cargo build -q --release -p trainer
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
    "($(grep -o -m1 avx512f /proc/cpuinfo || echo 'no avx512f'))"
python3 - "$text" "${ROUNDS:-2}" <<'PY'
import json, statistics, subprocess, sys
text, rounds = sys.argv[1], int(sys.argv[2])
bench = ["target/release/trainer", "bench", "--config", "configs/default.toml",
         "--set", f'data.path="{text}"', "--set", "data.valid_fraction=0.1",
         "--steps", "3", "--warmup", "2", "--sample-length", "1"]
runs = {"ours": [], "PyTorch": []}
for round in range(1, rounds + 1):
    report = json.loads(subprocess.run(bench, check=True, capture_output=True, text=True).stdout)
    ops = report["train_step_ops"]
    times = {op["op"]: op["ms"] for op in ops["ops"]}
    times.update({"outside the fused ops": ops["other_ms"], "step": ops["step_ms"]})
    runs["ours"].append(times)
    out = subprocess.run(["python3", "scripts/pytorch-step-breakdown.py", text], check=True,
                         capture_output=True, text=True).stdout
    runs["PyTorch"].append(json.loads(out.splitlines()[-1]))
    print(f"round {round}: ours {times['step']:.1f} ms, PyTorch {runs['PyTorch'][-1]['step']:.1f} ms",
          flush=True)
for side, all_times in runs.items():
    step = statistics.median(t["step"] for t in all_times)
    print(f"{side}: median step {step:.1f} ms (ms per step, medians of {rounds} rounds)")
    ops = sorted({op for t in all_times for op in t if op != "step"},
                 key=lambda op: -statistics.median(t.get(op, 0.0) for t in all_times))
    for op in ops[:10]:
        ms = statistics.median(t.get(op, 0.0) for t in all_times)
        print(f"  {op:40s} {ms:8.2f} ms {100 * ms / step:5.1f}%")
PY
