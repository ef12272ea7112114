"""Training throughput of the default model (embedding 256, 2 x 512 LSTM, seq_len 50, Adam 1e-3,
gradient-norm clipping 5) with PyTorch on a CUDA GPU (cuDNN's LSTM), for scripts/gpu-bench.sh.

    python3 scripts/gpu_pytorch_speed.py TEXT --batch 32 [--steps 20]

Prints one JSON object: the median step time after warm-up and the characters per second.
"""
import argparse, json, time

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("text")
p.add_argument("--batch", type=int, default=32)
p.add_argument("--seq", type=int, default=50)
p.add_argument("--steps", type=int, default=20)
a = p.parse_args()

dev = torch.device("cuda")
text = open(a.text, encoding="utf-8").read()
chars = sorted(set(text))
data = torch.tensor([chars.index(c) for c in text[:200_000]], dtype=torch.long, device=dev)
V = len(chars)


class Model(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb, s.lstm, s.fc = nn.Embedding(V, 256), nn.LSTM(256, 512, 2, batch_first=True), nn.Linear(512, V)

    def forward(s, x):
        return s.fc(s.lstm(s.emb(x))[0])


torch.manual_seed(0)
m = Model().to(dev)
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
ce = nn.CrossEntropyLoss()
times = []
for i in range(5 + a.steps):
    idx = torch.randint(0, len(data) - a.seq - 1, (a.batch,), device=dev)
    offsets = torch.arange(a.seq + 1, device=dev)
    win = data[idx[:, None] + offsets]
    torch.cuda.synchronize(); t0 = time.perf_counter()
    opt.zero_grad()
    loss = ce(m(win[:, :-1]).reshape(-1, V), win[:, 1:].reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(m.parameters(), 5.0)
    opt.step(); loss.item()
    torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
med = sorted(times[5:])[len(times[5:]) // 2]
print(json.dumps({"pytorch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                  "gpu": torch.cuda.get_device_name(), "batch_size": a.batch,
                  "train_step_ms_median": round(med * 1000, 2),
                  "train_chars_per_s": round(a.batch * a.seq / med)}))
