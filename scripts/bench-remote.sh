#!/usr/bin/env bash
# Training through `trainer serve` on this machine against training here: starts a server of
# one device of BACKEND (default flex) on a loopback port, then alternates `trainer bench` of
# CONFIG (default the smoke config) on that backend here and with `--backend remote` for ROUNDS
# rounds (default 3); prints each round's step times and the medians. The server hosts our ops
# as custom operations of its device (the fused CPU ops on flex, the GPU recurrence and Adam on
# wgpu), so the remote step is the local step plus what travels; `--lstm composed` steps, here
# and through the server, are beside them for scale (a build before the ops were hosted composed
# the LSTM from Burn's tensor ops there).
#
#   scripts/bench-remote.sh                                   (BIN, BACKEND, CONFIG, ROUNDS, STEPS)
#   CONFIG=configs/default.toml STEPS=5 scripts/bench-remote.sh
#   BACKEND=wgpu scripts/bench-remote.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/trainer}
config=${CONFIG:-configs/smoke.toml}
[ -x "$bin" ] || cargo build --release -p trainer >&2
work=$(mktemp -d)
head -c 24 /dev/urandom | base64 > "$work/token"
backend=${BACKEND:-flex}
"$bin" serve --backend "$backend" --port 0 --token-file "$work/token" > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
until grep -q 'ws://' "$work/serve.log"; do sleep 0.1; done
url=$(grep -o 'ws://[0-9.:]*' "$work/serve.log" | head -1)
bench() {
  "$bin" bench --config "$config" --steps "${STEPS:-20}" --warmup 3 --sample-length 200 "$@" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["train_step_ms_median"], r["sample_chars_per_s"], r["simd"])'
}
fused=() composed=() remote=() remote_composed=()
for round in $(seq "${ROUNDS:-3}"); do
  read -r ms chars simd < <(bench --backend "$backend") && fused+=("$ms")
  read -r ms _ _ < <(bench --backend "$backend" --lstm composed) && composed+=("$ms")
  there=(--backend remote --remote "$url" --token-file "$work/token")
  read -r ms rchars _ < <(bench "${there[@]}") && remote+=("$ms")
  read -r ms _ _ < <(bench "${there[@]}" --lstm composed) && remote_composed+=("$ms")
  echo "round $round: here ${fused[-1]} ms (composed ${composed[-1]} ms), through $url ${remote[-1]} ms (composed ${remote_composed[-1]} ms) per step; sampling here $chars, there $rchars chars/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median ms per step of $config on $backend: here $(median "${fused[@]}") (composed $(median "${composed[@]}")), through trainer serve $(median "${remote[@]}") (composed $(median "${remote_composed[@]}")) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $simd)"
