"""Where a TorchKMC step spends its GPU time at a large box (a development probe, not a book result).

Usage: python3 tools/gpu_kmc_profile.py [cells] [replicas] [sites_per_vacancy]
                                        [site_map: on|map|table|off|auto] [compile: 0|1] [fused: on|off|auto]
       python3 tools/gpu_kmc_profile.py same   (the fused in-place step against the torch one on the
                                               GPU, graph replay: the same trajectory, or exit 1)
Steps under CUDA-graph replay (eager, or through torch.compile with compile=1, as the notebooks
run them), timed per chunk, with the peak GPU memory per site; then, eager only, one profiled chunk
without the graph so that torch.profiler names the kernels. Prints the top kernels by CUDA time.
"""

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from msrbook.simulators.bcc import n_sites
from msrbook.simulators.kmc_torch import TorchKMC

if sys.argv[1:2] == ["same"]:
    for cells, R, V, m in ((16, 1000, 64, None), (24, 300, 200, "map"), (24, 300, 200, "table"), (40, 1000, 200, None)):
        a, b = (TorchKMC(cells, R, 0.05, V, 573.0, seed=7, device="cuda", max_local=16, fused=f, site_map=m)
                for f in (False, True))
        for _ in range(8):
            a._chunk(float("inf"))
            b._chunk(float("inf"))
        a.check(), b.check()
        same = all(torch.equal(getattr(a, n), getattr(b, n)) for n in ("species", "vac_pos", "events", "energy"))
        same &= a._vmap is None or torch.equal(a._vmap, b._vmap)
        same &= a._vtab is None or torch.equal(a._vtab, b._vtab)
        dt = ((a.time - b.time).abs() / a.time).max().item()
        print(f"cells {cells} R {R} V {V} site_map {a.site_map}: {8 * a.graph_steps} steps, same state {same}, "
              f"max rel. clock difference {dt:.1e}", flush=True)
        if m == "map":  # the map's fused trajectory, for the table's
            ref = b
        if m == "table":  # the same trajectory as the map's
            same &= all(torch.equal(getattr(ref, n), getattr(b, n)) for n in ("species", "vac_pos", "events", "time"))
        if not same or dt > 1e-12:
            sys.exit(1)
    sys.exit(0)
cells = int(sys.argv[1]) if len(sys.argv) > 1 else 172
R = int(sys.argv[2]) if len(sys.argv) > 2 else 3370
spv = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
site_map = {"on": True, "map": "map", "table": "table", "off": False, "auto": None}[
    sys.argv[4] if len(sys.argv) > 4 else "auto"]
compiled = len(sys.argv) > 5 and sys.argv[5] == "1"
fused = {"on": True, "off": False, "auto": None}[sys.argv[6] if len(sys.argv) > 6 else "auto"]
N = n_sites(cells)
V = max(1, N // spv)
t0 = time.perf_counter()
torch.cuda.reset_peak_memory_stats()
kmc = TorchKMC(cells, R, 0.0134, V, 573.0, seed=0, device="cuda", max_local=8, site_map=site_map, compile=compiled,
                fused=fused)
torch.cuda.synchronize()
print(f"cells {cells} sites {N} V {V} R {R} site_map {kmc.site_map} compile {compiled} fused {kmc.fused}: built in "
      f"{time.perf_counter() - t0:.1f} s, {torch.cuda.max_memory_allocated() / (R * N):.2f} bytes/site", flush=True)
kmc._chunk(float("inf"))
torch.cuda.synchronize()
for _ in range(3):
    t0 = time.perf_counter()
    for _ in range(10):
        kmc._chunk(float("inf"))
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / (10 * kmc.graph_steps)
    print(f"graph step {dt * 1e6:.1f} us -> {R / dt / 1e6:.2f} M events/s; peak "
          f"{torch.cuda.max_memory_allocated() / (R * N):.2f} bytes/site", flush=True)
if compiled:
    kmc.check()
    sys.exit(0)
kmc.use_graph = False
kmc._chunk(float("inf"))
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    kmc._chunk(float("inf"))
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90))
kmc.check()
