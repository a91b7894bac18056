"""Throughput of the two simulators: events per second, physical time per wall second, memory per site.

Events per second counts every event of every replica. Physical time per wall second is that of one
box: the simulated time a replica advances divided by the wall time (the GPU advances R boxes at
once, so its ensemble covers R times as much). Both simulators run the same box and vacancy
concentration; the serial one is timed on the CPU of the same machine, after numba compiled it.
"""

from __future__ import annotations

import gc
import time

import torch

from msrbook.simulators.kmc_serial import SerialKMC
from msrbook.simulators.kmc_torch import TorchKMC


def allow_recompiles(n: int = 64) -> None:
    """One compiled step per box shape: raise dynamo's recompile limit above the number of shapes."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(n, getattr(cfg, name)))


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def release(device) -> None:
    """Free what earlier simulators left: compiled code (which references them), garbage, cached blocks."""
    torch._dynamo.reset()
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def torch_throughput(cells: int, replicas: int, vacancies: int, seconds: float, cu_frac: float = 0.0134,
                     temperature: float = 573.0, seed: int = 0, device="cpu", compile: bool = False,
                     max_local: int = 8) -> dict:
    """Time `seconds` of steady-state stepping (after one warm-up chunk, which compiles and captures).

    bytes_per_site: peak allocated memory during the timed part, less what was allocated before the
    simulator was built, / (R N); setup_bytes_per_site: the same over construction and warm-up."""
    cuda = torch.device(device).type == "cuda"
    release(device)
    base = torch.cuda.memory_allocated() if cuda else 0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    kmc = TorchKMC(cells, replicas, cu_frac, vacancies, temperature, seed=seed, device=device, compile=compile and cuda,
                   max_local=max_local)
    kmc._chunk(float("inf"))  # warm-up: compile, capture, one chunk of steps
    _sync(device)
    setup_s = time.perf_counter() - t0
    setup_peak = torch.cuda.max_memory_allocated() if cuda else 0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    e0, tp0, n = kmc.events.sum().item(), kmc.time.mean().item(), 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        kmc._chunk(float("inf"))
        _sync(device)
        n += 1
    wall = time.perf_counter() - t0
    kmc.check()
    sites = kmc.R * kmc.N
    out = {"simulator": "torch", "device": str(device), "cells": cells, "sites": kmc.N, "vacancies": vacancies,
           "replicas": replicas, "events": kmc.events.sum().item() - e0, "wall_s": wall, "setup_s": setup_s,
           "steps": n * kmc.graph_steps}
    out["events_per_s"] = out["events"] / wall
    out["step_us"] = wall / out["steps"] * 1e6
    out["phys_s_per_wall_s"] = (kmc.time.mean().item() - tp0) / wall
    out["bytes_per_site"] = (torch.cuda.max_memory_allocated() - base) / sites if cuda else float("nan")
    out["setup_bytes_per_site"] = (setup_peak - base) / sites if cuda else float("nan")
    kmc.close()
    del kmc
    release(device)
    return out


def serial_throughput(cells: int, vacancies: int, seconds: float, cu_frac: float = 0.0134,
                      temperature: float = 573.0, seed: int = 0) -> dict:
    """Events per second of the numba reference on one box, after 10^4 warm-up events (which compile)."""
    src = TorchKMC(cells, 1, cu_frac, vacancies, temperature, seed=seed)
    t0 = time.perf_counter()
    kmc = SerialKMC(src.species[0].numpy().copy(), cells, temperature, seed=seed)
    kmc.advance(float("inf"), 10_000)
    setup_s = time.perf_counter() - t0
    e0, tp0, t0 = kmc.events, kmc.time, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        kmc.advance(float("inf"), 20_000)
    wall = time.perf_counter() - t0
    return {"simulator": "serial", "device": "cpu", "cells": cells, "sites": kmc.N, "vacancies": vacancies,
            "replicas": 1, "events": kmc.events - e0, "wall_s": wall, "setup_s": setup_s,
            "events_per_s": (kmc.events - e0) / wall, "phys_s_per_wall_s": (kmc.time - tp0) / wall}
