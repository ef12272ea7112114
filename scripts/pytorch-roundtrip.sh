#!/usr/bin/env bash
# A model trained by the PyTorch tutorial code, brought over and back:
#   1. PyTorch trains the tutorial model (Embedding -> LSTM -> Linear) briefly on TEXT and
#      saves its state_dict, and computes its loss on TEXT in stream and windows mode;
#   2. `trainer import` makes a run of it, `trainer eval` computes both losses, and they must
#      match PyTorch's to 1e-4; `trainer generate` samples from it;
#   3. `trainer export` writes SafeTensors, PyTorch loads them and must give the same logits.
#
#   scripts/pytorch-roundtrip.sh [TEXT]      (default: datasets/smoke.txt; needs torch, safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:-datasets/smoke.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -p trainer >&2
trainer=target/release/trainer

python3 - "$text" "$work" <<'PY'
import json, sys, torch
from torch import nn
text, work = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2]
chars = sorted(set(text)); stoi = {c: i for i, c in enumerate(chars)}; V = len(chars)
data = torch.tensor([stoi[c] for c in text])
torch.manual_seed(0)

class Model(nn.Module):  # the tutorial's model and names
    def __init__(s):
        super().__init__()
        s.embedding = nn.Embedding(V, 64); s.lstm = nn.LSTM(64, 96, 2, batch_first=True); s.fc = nn.Linear(96, V)
    def forward(s, x, h=None):
        o, h = s.lstm(s.embedding(x), h); return s.fc(o), h

m = Model(); opt = torch.optim.Adam(m.parameters(), lr=1e-2); seq = 50
for step in range(150):
    idx = torch.randint(0, len(data) - seq - 1, (32,))
    x = torch.stack([data[i:i + seq] for i in idx]); y = torch.stack([data[i + 1:i + seq + 1] for i in idx])
    loss = nn.functional.cross_entropy(m(x)[0].reshape(-1, V), y.reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
torch.save(m.state_dict(), f"{work}/tutorial.pt")
m.eval(); ce = nn.functional.cross_entropy
with torch.no_grad():
    tot = n = 0; h = None
    for i in range(0, len(data) - 1, 1000):
        x = data[i:i + 1000][None]; y = data[i + 1:i + 1 + x.shape[1]][None]; x = x[:, :y.shape[1]]
        out, h = m(x, h); tot += ce(out.reshape(-1, V), y.reshape(-1), reduction="sum").item(); n += y.numel()
    stream = tot / n
    starts = range(0, len(data) - seq - 1, seq)
    x = torch.stack([data[j:j + seq] for j in starts]); y = torch.stack([data[j + 1:j + seq + 1] for j in starts])
    windows = ce(m(x)[0].reshape(-1, V), y.reshape(-1)).item()
    json.dump({"stream": stream, "windows": windows}, open(f"{work}/pytorch.json", "w"))
print(f"PyTorch: stream {stream:.6f}, windows {windows:.6f} nats/char")
PY

$trainer import --pytorch "$work/tutorial.pt" --vocab-text "$text" --run "$work/run"
for mode in stream windows; do
  $trainer eval --run "$work/run" --text "$text" --mode $mode --json > "$work/ours-$mode.json"
done
$trainer generate --run "$work/run" --prompt "$(head -c 4 "$text")" --length 120 --seed 7
$trainer export --run "$work/run" --safetensors "$work/exported.safetensors"

python3 - "$text" "$work" <<'PY'
import json, sys, torch
from safetensors.torch import load_file
text, work = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2]
ref = json.load(open(f"{work}/pytorch.json"))
for mode in ["stream", "windows"]:
    ours = json.load(open(f"{work}/ours-{mode}.json"))["loss"]
    print(f"{mode}: ours {ours:.6f}, PyTorch {ref[mode]:.6f}, |difference| {abs(ours - ref[mode]):.1e}")
    assert abs(ours - ref[mode]) < 1e-4
state = load_file(f"{work}/exported.safetensors")
original = torch.load(f"{work}/tutorial.pt")
assert state.keys() == original.keys(), (state.keys(), original.keys())
worst = max((state[k] - original[k]).abs().max().item() for k in state)
print(f"export: the same {len(state)} tensors as the state_dict, max |difference| {worst:.1e}")
assert worst == 0.0
PY
echo "round trip OK"
