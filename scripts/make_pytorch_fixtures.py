"""PyTorch fixtures for the model crate's parity tests (needs `pip install torch`).

For each case it builds the PyTorch tutorial's model (nn.Embedding -> nn.LSTM(batch_first=True)
-> nn.Linear) with odd sizes and a vocabulary with non-ASCII characters, and writes, under
crates/char-lstm/tests/fixtures/:
  <case>.pt    the state_dict, as torch.save writes it (what `trainer import` reads)
  <case>.json  the parameters, input ids, a non-zero initial state, the logits, every layer's
               final (h, c), the mean cross-entropy loss, every parameter's gradient, every
               parameter after one Adam step (lr 1e-2) with gradient-norm clipping, and the
               loss over a text computed the way `trainer eval` does (stream and windows)
  small_vocab.txt            a text whose sorted(set(text)) is the fixtures' vocabulary
  small_no_fc_bias.pt   broken state_dicts, for the import errors
  small_wrong_shape.pt

  python3 scripts/make_pytorch_fixtures.py
  python3 scripts/make_pytorch_fixtures.py --check-export runs/x/model.safetensors --case small
      (loads a `trainer export` of an imported fixture and checks that PyTorch's logits match)
"""
import argparse, json, pathlib
import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/char-lstm/tests/fixtures"
VOCAB = list("\n !,.?aehlotéü")[:13]  # 13 characters, two of them non-ASCII
CASES = {
    # name: (embedding, hidden, layers, batch, seq_len, seed)
    "small": (7, 11, 2, 3, 5, 1),
    "three_layer": (5, 6, 3, 2, 4, 2),
}
EVAL_SEQ_LEN, EVAL_CHUNK = 50, 1000  # trainer eval: the run's data.seq_len, its stream chunk
LR, CLIP = 1e-2, 0.1  # CLIP below both cases' gradient norms, so clipping acts


class Model(nn.Module):
    def __init__(self, vocab, emb, hidden, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x), state)
        return self.fc(out), state


def flat(t):
    return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]


def build(case):
    emb, hidden, layers, batch, seq, seed = CASES[case]
    torch.manual_seed(seed)
    model = Model(len(VOCAB), emb, hidden, layers)
    # Non-zero biases everywhere, so that a bias wired to the wrong gate shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    x = torch.randint(0, len(VOCAB), (batch, seq))
    y = torch.randint(0, len(VOCAB), (batch, seq))
    h0 = torch.randn(layers, batch, hidden) * 0.5
    c0 = torch.randn(layers, batch, hidden) * 0.5
    return model, x, y, h0, c0


def eval_text(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(VOCAB), (317,), generator=g)


def eval_losses(model, data):
    """Mean loss over the text as one stream (chunks, state carried) and over non-overlapping
    windows (state reset), as in ../shared/bench/pytorch_reference.py."""
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        total, n, state = 0.0, 0, None
        for i in range(0, len(data) - 1, EVAL_CHUNK):
            x = data[i:i + EVAL_CHUNK][None]
            y = data[i + 1:i + 1 + x.shape[1]][None]
            x = x[:, :y.shape[1]]
            out, state = model(x, state)
            total += ce(out.reshape(-1, len(VOCAB)), y.reshape(-1), reduction="sum").item(); n += y.numel()
        stream = total / n
        starts = list(range(0, len(data) - EVAL_SEQ_LEN - 1, EVAL_SEQ_LEN))
        x = torch.stack([data[j:j + EVAL_SEQ_LEN] for j in starts])
        y = torch.stack([data[j + 1:j + EVAL_SEQ_LEN + 1] for j in starts])
        out, _ = model(x)
        windows = ce(out.reshape(-1, len(VOCAB)), y.reshape(-1)).item()
    return stream, windows


def make(case):
    model, x, y, h0, c0 = build(case)
    emb, hidden, layers, *_ = CASES[case]
    torch.save(model.state_dict(), OUT / f"{case}.pt")
    text = eval_text(CASES[case][-1])
    stream, windows = eval_losses(model, text)
    params = {n: {"shape": list(p.shape), "values": flat(p)} for n, p in model.named_parameters()}
    logits, (hn, cn) = model(x, (h0, c0))
    loss = nn.functional.cross_entropy(logits.reshape(-1, len(VOCAB)), y.reshape(-1))
    loss.backward()
    grads = {n: flat(p.grad) for n, p in model.named_parameters()}
    norm = nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    torch.optim.Adam(model.parameters(), lr=LR).step()
    after = {n: flat(p) for n, p in model.named_parameters()}
    fixture = {
        "vocab": VOCAB, "embedding_dim": emb, "hidden_dim": hidden, "num_layers": layers,
        "inputs": x.tolist(), "targets": y.tolist(),
        "initial_hidden": flat(h0), "initial_cell": flat(c0),
        "params": params,
        "logits": flat(logits), "final_hidden": flat(hn), "final_cell": flat(cn),
        "loss": float(loss.detach()), "grads": grads, "grad_norm": float(norm),
        "adam": {"learning_rate": LR, "grad_clip_norm": CLIP, "params_after": after},
        "eval": {"text": "".join(VOCAB[i] for i in text), "stream_loss": stream, "windows_loss": windows},
    }
    (OUT / f"{case}.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"{case}: loss {float(loss.detach()):.6f}, grad norm {float(norm):.4f}")


def check_export(path, case):
    from safetensors.torch import load_file
    model, x, _, h0, c0 = build(case)
    expected, _ = model(x, (h0, c0))
    model.load_state_dict(load_file(path))
    actual, _ = model(x, (h0, c0))
    diff = (actual - expected).abs().max().item()
    print(f"{path}: max |logit difference| {diff:.2e}")
    assert diff < 1e-5


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--check-export")
    p.add_argument("--case", default="small")
    a = p.parse_args()
    if a.check_export:
        check_export(a.check_export, a.case)
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        for case in CASES:
            make(case)
        (OUT / "small_vocab.txt").write_text("".join(VOCAB) * 2, encoding="utf-8")
        state = build("small")[0].state_dict()
        torch.save({("fc.offset" if k == "fc.bias" else k): v for k, v in state.items()}, OUT / "small_no_fc_bias.pt")
        torch.save({**state, "lstm.weight_hh_l1": torch.zeros(44, 10)}, OUT / "small_wrong_shape.pt")
