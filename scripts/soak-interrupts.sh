#!/usr/bin/env bash
# Interrupts one training run N times at random moments, with SIGKILL, SIGTERM and SIGINT
# mixed, resuming after each, then lets it finish; checks that its final weights are those of
# the same run never interrupted (bit for bit), and that metrics.csv has every epoch once.
#
#   scripts/soak-interrupts.sh N [SEED]
#
# The run: configs/smoke.toml in windows mode, 40 epochs, a checkpoint every 7 steps, 256
# hidden units (so epochs last long enough to be hit). Prints one line per interruption and a
# summary; exits 1 if the checks fail.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: $0 N [SEED]}
seed=${2:-1}
cargo build --release -p trainer >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$n" "$seed" <<'PY'
import os, random, signal, subprocess, sys, time
work, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
trainer = "target/release/trainer"
settings = ["--config", "configs/smoke.toml", "--no-tui", "--set", 'data.mode="windows"',
            "--set", "training.epochs=40", "--set", "training.checkpoint_every=7",
            "--set", "model.hidden_dim=256"]
rng = random.Random(seed)

def train(run, resume):
    args = [trainer, *settings, "--run", run] + (["--resume"] if resume else [])
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

def complete_checkpoint(run):
    for folder in [f"{run}/checkpoint", f"{run}/checkpoint/steps"]:
        names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        keys = {name.split("-")[1] for name in names if name.endswith(".bpk") and "-" in name}
        if any(all(f"{kind}-{key}" in names for kind in ("model", "optim", "scheduler")) for key in keys):
            return True
    return False

def export(run, name):
    out = f"{work}/{name}.safetensors"
    subprocess.run([trainer, "export", "--run", run, "--safetensors", out, "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    return open(out, "rb").read()

whole, soaked = f"{work}/whole", f"{work}/soaked"
train(whole, False).wait()
signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
counts = {s.name: 0 for s in signals}
finished_early = 0
for i in range(1, n + 1):
    resume = complete_checkpoint(soaked)
    process = train(soaked, resume)
    time.sleep(rng.uniform(0.3, 1.5))
    if process.poll() is not None:
        finished_early += 1
        stderr = process.stderr.read()
        if process.returncode != 0:
            sys.exit(f"interruption {i}: the run failed on its own: {stderr.strip()}")
        print(f"{i:3}: the run had finished")
        continue
    sig = rng.choice(signals)
    process.send_signal(sig)
    code = process.wait()
    stderr = process.stderr.read().strip()
    counts[sig.name] += 1
    expected = {signal.SIGKILL: -9, signal.SIGTERM: 130, signal.SIGINT: 130}[sig]
    if code != expected:
        sys.exit(f"interruption {i}: {sig.name} gave exit code {code}, expected {expected}: {stderr}")
    print(f"{i:3}: {sig.name:7} after {'resuming' if resume else 'starting'}, exit {code}")
final = train(soaked, complete_checkpoint(soaked))
if final.wait() != 0:
    sys.exit(f"the last resume failed: {final.stderr.read().strip()}")
epochs = [int(line.split(",")[0]) for line in open(f"{soaked}/metrics.csv").read().splitlines()[1:]]
same = export(whole, "whole") == export(soaked, "soaked")
print(f"{n} interruptions ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
      f"{finished_early} found the run finished); metrics.csv epochs {epochs[0]}..{epochs[-1]}, "
      f"each once: {epochs == list(range(1, 41))}; final weights equal the uninterrupted run's: {same}")
sys.exit(0 if same and epochs == list(range(1, 41)) else 1)
PY
