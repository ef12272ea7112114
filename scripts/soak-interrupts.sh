#!/usr/bin/env bash
# Interrupts one training run N times at random moments, with SIGKILL, SIGTERM and SIGINT
# mixed, resuming after each, then lets it finish; checks that its final weights are those of
# the same run never interrupted (bit for bit), and that metrics.csv has every epoch once.
#
#   scripts/soak-interrupts.sh N [SEED]
#
# The run: configs/smoke.toml in windows mode, 4 N epochs (40 at least), a checkpoint every 7
# steps, 256 hidden units. Each interruption comes at a random moment within 1.6 T / N of its
# start, T being the uninterrupted run's time, so the N of them fall all through the run, in
# start-up, resumption, steps and checkpoint writes alike. Prints one line per interruption and
# a summary; exits 1 if the checks fail.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: $0 N [SEED]}
seed=${2:-1}
cargo build --release -p trainer >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$n" "$seed" <<'PY'
import json, os, random, signal, subprocess, sys, time
work, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
trainer = "target/release/trainer"
epochs = max(40, 4 * n)
settings = ["--config", "configs/smoke.toml", "--no-tui", "--set", 'data.mode="windows"',
            "--set", f"training.epochs={epochs}", "--set", "training.checkpoint_every=7",
            "--set", "model.hidden_dim=256"]
rng = random.Random(seed)

def train(run, resume):
    args = [trainer, *settings, "--run", run] + (["--resume"] if resume else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def resumed_from(stdout):
    """Where the trainer said it resumed: `step N (epoch E, batch B of 10)` or `epoch E`."""
    lines = [line for line in stdout.splitlines() if line.startswith("resuming ")]
    return lines[0].split(" after ", 1)[1] if lines else "before its first line"

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
    return tensors(open(out, "rb").read())

def tensors(safetensors):
    """Each tensor's name, dtype, shape and bytes (the header's order of names varies)."""
    size = int.from_bytes(safetensors[:8], "little")
    header = json.loads(safetensors[8:8 + size])
    data = safetensors[8 + size:]
    return {name: (t["dtype"], t["shape"], data[t["data_offsets"][0]:t["data_offsets"][1]])
            for name, t in header.items() if name != "__metadata__"}

whole, soaked = f"{work}/whole", f"{work}/soaked"
started = time.monotonic()
whole_run = train(whole, False)
_, stderr = whole_run.communicate()
if whole_run.returncode != 0:
    sys.exit(f"the uninterrupted run failed: {stderr.strip()}")
longest_wait = 1.6 * (time.monotonic() - started) / n
signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
counts = {s.name: 0 for s in signals}
finished_early = 0
for i in range(1, n + 1):
    resume = complete_checkpoint(soaked)
    process = train(soaked, resume)
    time.sleep(rng.uniform(0.05, longest_wait))
    if process.poll() is not None:
        finished_early += 1
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            sys.exit(f"interruption {i}: the run failed on its own: {stderr.strip()}")
        print(f"{i:3}: the run had finished")
        continue
    sig = rng.choice(signals)
    process.send_signal(sig)
    stdout, stderr = process.communicate()
    code, stderr = process.returncode, stderr.strip()
    counts[sig.name] += 1
    expected = {signal.SIGKILL: -9, signal.SIGTERM: 130, signal.SIGINT: 130}[sig]
    if code != expected:
        sys.exit(f"interruption {i}: {sig.name} gave exit code {code}, expected {expected}: {stderr}")
    start = f"resuming after {resumed_from(stdout)}" if resume else "starting"
    print(f"{i:3}: {sig.name:7} after {start}, exit {code}")
final = train(soaked, complete_checkpoint(soaked))
stdout, stderr = final.communicate()
if final.returncode != 0:
    sys.exit(f"the last resume failed: {stderr.strip()}")
print(f"  the last resume: after {resumed_from(stdout)}")
recorded = [int(line.split(",")[0]) for line in open(f"{soaked}/metrics.csv").read().splitlines()[1:]]
every_epoch_once = recorded == list(range(1, epochs + 1))
same = export(whole, "whole") == export(soaked, "soaked")
print(f"{n} interruptions ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
      f"{finished_early} found the run finished); metrics.csv epochs {recorded[0]}..{recorded[-1]}, "
      f"each once: {every_epoch_once}; final weights equal the uninterrupted run's: {same}")
sys.exit(0 if same and every_epoch_once else 1)
PY
