"""Where a TorchKMC step spends its GPU time at a large box (a development probe, not a book result).

Usage: python3 tools/gpu_kmc_profile.py [cells] [replicas] [sites_per_vacancy]
Eager steps (no torch.compile) under CUDA-graph replay, timed per chunk, then one profiled chunk
without the graph so that torch.profiler names the kernels. Prints the top kernels by CUDA time.
"""

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from msrbook.simulators.bcc import n_sites
from msrbook.simulators.kmc_torch import TorchKMC

cells = int(sys.argv[1]) if len(sys.argv) > 1 else 172
R = int(sys.argv[2]) if len(sys.argv) > 2 else 3370
spv = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
N = n_sites(cells)
V = max(1, N // spv)
t0 = time.perf_counter()
kmc = TorchKMC(cells, R, 0.0134, V, 573.0, seed=0, device="cuda", max_local=8)
torch.cuda.synchronize()
print(f"cells {cells} sites {N} V {V} R {R}: built in {time.perf_counter() - t0:.1f} s", flush=True)
kmc._chunk(float("inf"))
torch.cuda.synchronize()
for _ in range(3):
    t0 = time.perf_counter()
    for _ in range(10):
        kmc._chunk(float("inf"))
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / (10 * kmc.graph_steps)
    print(f"graph step {dt * 1e6:.1f} us -> {R / dt / 1e6:.2f} M events/s", flush=True)
kmc.use_graph = False
kmc._chunk(float("inf"))
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    kmc._chunk(float("inf"))
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90))
kmc.check()
