"""Where a training step of the PyTorch reference's model goes on the CPU: the default model
(embedding 256, 2 x 512, batch 32, seq_len 50, gradient clipping at 5, Adam) on a text, 5 steps
under torch.profiler after 3 untimed ones; each op's CPU time per step (its own time with its
children's, so nested ops overlap: `aten::lstm` holds both layers' `aten::mkldnn_rnn_layer`), the
longest first, then the same as one line of JSON. The counterpart of `trainer bench`'s
`train_step_ops`; scripts/step-breakdown.sh runs the two side by side.

    [MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2] python3 scripts/pytorch-step-breakdown.py TEXT

Needs `pip install torch`.
"""
import json
import sys
import time

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

STEPS = 5
torch.set_num_threads(2)
torch.manual_seed(0)
text = open(sys.argv[1], encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
vocab = len(chars)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(vocab, 256)
        self.lstm = nn.LSTM(256, 512, 2, batch_first=True)
        self.fc = nn.Linear(512, vocab)

    def forward(self, x):
        return self.fc(self.lstm(self.emb(x))[0])


model = Model()
optim = torch.optim.Adam(model.parameters(), lr=2e-3)
loss_fn = nn.CrossEntropyLoss()


def step():
    starts = torch.randint(0, len(data) - 51, (32,))
    x = torch.stack([data[i:i + 50] for i in starts])
    y = torch.stack([data[i + 1:i + 51] for i in starts])
    optim.zero_grad()
    loss = loss_fn(model(x).reshape(-1, vocab), y.reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optim.step()
    return loss.item()


for _ in range(3):
    step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    step_ms = (time.perf_counter() - start) * 1e3 / STEPS
print(f"PyTorch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}): "
      f"{step_ms:.1f} ms per step over {STEPS} profiled steps")
events = sorted(prof.key_averages(), key=lambda e: e.cpu_time_total, reverse=True)
top = {e.key: e.cpu_time_total / 1e3 / STEPS for e in events if e.key.startswith("aten::")}
top = dict(list(top.items())[:12])
for op, ms in top.items():
    print(f"  {op:44s} {ms:8.2f} ms {100 * ms / step_ms:5.1f}%")
# The last line, for scripts/step-breakdown.sh: the same figures as JSON.
print(json.dumps({"step": step_ms, **top}))
