#!/usr/bin/env python3
"""A synthetic text over a large vocabulary, for benchmarks of large-vocabulary training and
sampling: CHARS distinct CJK ideographs (U+4E00 on) with Zipf-like frequencies (the k-th most
frequent drawn with weight 1 / (k + 2.7)), in lines of 20 to 60 characters, seeded.

  scripts/synthetic-cjk.py OUT [--chars 6000] [--length 1100000] [--seed 1]

Every one of the CHARS characters appears at least once, so the vocabulary has exactly CHARS
characters plus the newline.
"""
import argparse
import random

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--chars", type=int, default=6000)
p.add_argument("--length", type=int, default=1_100_000)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
rng = random.Random(a.seed)
alphabet = [chr(0x4E00 + i) for i in range(a.chars)]
weights = [1.0 / (k + 2.7) for k in range(a.chars)]
body = rng.choices(alphabet, weights=weights, k=max(a.length - a.chars, 0)) + alphabet
rng.shuffle(body)
lines, at = [], 0
while at < len(body):
    n = rng.randint(20, 60)
    lines.append("".join(body[at:at + n]))
    at += n
with open(a.out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
print(f"{a.out}: {sum(map(len, lines)) + len(lines)} characters, {a.chars + 1} distinct")
