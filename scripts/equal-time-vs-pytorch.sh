#!/usr/bin/env bash
# Validation loss after equal wall time: our default-size model (embedding 256, 2 x 512, no
# dropout, Adam 1e-3, batch 32, seq_len 50, sliding windows) trained for MINUTES on
# tiny-shakespeare, against the PyTorch reference trained as long on the same machine, one after
# the other. Both are measured on the last 10% of the text, read as one stream.
#
#   scripts/equal-time-vs-pytorch.sh [MINUTES]      (default 10; needs ../shared and torch)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
text=../shared/datasets/tinyshakespeare.txt
run=runs/equal-time-${minutes}m
cargo build --release -p trainer >&2

# The validation text: the last 10% of the characters, as both programs split it.
valid=$(mktemp --suffix=.txt)
trap 'rm -f "$valid"' EXIT
python3 -c "import sys; t = open(sys.argv[1], encoding='utf-8').read(); open(sys.argv[2], 'w', encoding='utf-8').write(t[int(len(t) * 0.9):])" "$text" "$valid"

target/release/trainer --config configs/default.toml --run "$run" --force --no-tui \
  --set "data.path=\"$text\"" --set data.valid_fraction=0.1 --set training.epochs=1000 \
  --set "training.time_limit=\"${minutes}m\"" | grep -E "^(epoch [0-9]+/[0-9]+ done|training.time_limit|best epoch)" >&2
ours_stream=$(target/release/trainer eval --run "$run" --text "$valid" --mode stream --json)
ours_windows=$(target/release/trainer eval --run "$run" --text "$valid" --mode windows --json)
theirs=$(python3 ../shared/bench/pytorch_reference.py quality "$text" --seconds $((minutes * 60)))
echo "ours (stream):  $ours_stream"
echo "ours (windows): $ours_windows"
echo "pytorch:        $theirs"
python3 - "$ours_stream" "$ours_windows" "$theirs" <<'PY'
import json, sys
stream, windows, torch = (json.loads(a) for a in sys.argv[1:])
print(f"validation loss after equal time, stream: ours {stream['loss']:.4f} vs PyTorch {torch['valid_loss_stream']:.4f} nats/char; "
      f"windows: ours {windows['loss']:.4f} vs PyTorch {torch['valid_loss_windows']:.4f}")
PY
