#!/usr/bin/env bash
# The time of a cold `cargo build --release -p trainer` (what a newcomer's first
# `cargo run --release -p trainer` compiles), of this checkout or of commit REV, in a target
# directory of its own, with the crates already downloaded (the download is the network's
# time, not the build's); then the crates that took longest, from Cargo's --timings report.
#
#   scripts/cold-build.sh [REV]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'git worktree prune; rm -rf "$work"' EXIT
tree=.
if [ $# -gt 0 ]; then
    git worktree add -q --detach "$work/tree" "$1"
    tree=$work/tree
fi
(cd "$tree" && cargo fetch -q)
start=$SECONDS
(cd "$tree" && CARGO_TARGET_DIR="$work/target" cargo build -q --release -p trainer --timings)
echo "cold release build of ${1:-this checkout} on $(nproc) cores: $((SECONDS - start)) s"
python3 - "$work/target/cargo-timings/cargo-timing.html" <<'PY'
import json, re, sys
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);", open(sys.argv[1]).read(), re.S).group(1))
units.sort(key=lambda u: -u["duration"])
print("longest crates (seconds of one core each):",
      ", ".join(f"{u['name']} {u['duration']:.0f}" for u in units[:12]))
PY
