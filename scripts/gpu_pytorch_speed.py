"""The default model (embedding 256, 2 x 512 LSTM, seq_len 50, Adam 1e-3, gradient-norm
clipping 5) with PyTorch on a CUDA GPU (cuDNN's LSTM), for scripts/gpu-bench.sh.

    python3 scripts/gpu_pytorch_speed.py TEXT --batch 32 [--steps 20] [--sample-length 500]

Prints one JSON object, the same quantities `trainer bench` reports: the median training step
and characters per second; one 512-unit layer's LSTM alone over the batch (cuDNN's forward,
and its backward as forward-and-backward less the forward; cuDNN's layer includes the input
projection, ours is timed without it); the wall time per kernel of 1,000 one-element
additions; sampling of one stream and of 32 at temperature 0.8, characters per second.
"""
import argparse, json, time

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("text")
p.add_argument("--batch", type=int, default=32)
p.add_argument("--seq", type=int, default=50)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--sample-length", type=int, default=500)
a = p.parse_args()

# CUDA; the CPU only to check the script itself on a machine without a GPU.
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
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
    sync(); t0 = time.perf_counter()
    opt.zero_grad()
    loss = ce(m(win[:, :-1]).reshape(-1, V), win[:, 1:].reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(m.parameters(), 5.0)
    opt.step(); loss.item()
    sync(); times.append(time.perf_counter() - t0)
med = sorted(times[5:])[len(times[5:]) // 2]


def median_ms(work, rounds):
    """Median wall time of `work` in ms, after 5 untimed rounds, the GPU synchronized."""
    times = []
    for i in range(5 + rounds):
        sync(); t0 = time.perf_counter()
        work()
        sync(); times.append(time.perf_counter() - t0)
    return sorted(times[5:])[len(times[5:]) // 2] * 1000


layer = nn.LSTM(512, 512, 1, batch_first=True).to(dev)
x = torch.randn(a.batch, a.seq, 512, device=dev, requires_grad=True)
forward_ms = median_ms(lambda: layer(x)[0].sum(), a.steps)
both_ms = median_ms(lambda: layer(x)[0].sum().backward(), a.steps)

y = torch.zeros(1, device=dev)
def tiny():
    global y
    for _ in range(1000):
        y = y + 1.0
launch_us = median_ms(tiny, 5)  # ms for 1,000 launches: us per launch


@torch.no_grad()
def sampling_speed(streams, length):
    m.eval()
    x, state = torch.zeros(streams, 1, dtype=torch.long, device=dev), None
    sync(); t0 = time.perf_counter()
    for _ in range(length):
        out, state = m.lstm(m.emb(x), state)
        probs = torch.softmax(m.fc(out[:, -1]) / 0.8, dim=-1)
        x = torch.multinomial(probs, 1)
        x.cpu()
    return streams * length / (time.perf_counter() - t0)


print(json.dumps({"pytorch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                  "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "none (CPU)", "batch_size": a.batch,
                  "train_step_ms_median": round(med * 1000, 2),
                  "train_chars_per_s": round(a.batch * a.seq / med),
                  "recurrence": {"forward_ms": round(forward_ms, 3),
                                 "backward_ms": round(max(both_ms - forward_ms, 0), 3)},
                  "launch_overhead_us": round(launch_us, 2),
                  "sample_chars_per_s": round(sampling_speed(1, a.sample_length)),
                  "sample32_chars_per_s": round(sampling_speed(32, a.sample_length // 4))}))
