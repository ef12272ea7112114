"""PyTorch's (MKL's) single-precision matrix products at the shapes of a training step of the
default model (batch 32, seq_len 50, 2 x 512, embedding 256), with 2 threads: the median
GFLOP/s of 30 products each. What our kernels' share of a step is compared with.

    [MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2] python3 scripts/pytorch-matmul-speed.py

Needs `pip install torch`.
"""
import statistics
import time

import torch

torch.set_num_threads(2)
print("PyTorch", torch.__version__, "CPU capability:", torch.backends.cpu.get_cpu_capability())
# [rows, depth, columns]: a layer's input product over a batch's 1,600 steps, one time step's
# recurrent product, and two of the backward pass's.
for rows, depth, cols in [(1600, 512, 2048), (32, 512, 2048), (1600, 2048, 512), (512, 1600, 2048)]:
    a, b = torch.randn(rows, depth), torch.randn(depth, cols)
    for _ in range(5):
        a @ b
    seconds = []
    for _ in range(30):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    gflops = 2 * rows * depth * cols / statistics.median(seconds) / 1e9
    print(f"{rows} x {depth} x {cols}: {gflops:.0f} GFLOP/s", flush=True)
