"""The timing harness and the decode sweep: formulas against hand-computed values, CPU code paths."""

import math

import pytest
import torch

from msrbook.bench import (
    available_sdpa_backends, gbps, measure_bandwidth, roofline_gbps, rotating, rotation_copies, sdpa_decode, time_ms)
from msrbook.chapters.decode_roofline.sweep import best_backend_ratio, sweep
from msrbook.kernels.decode_attention import decode_attention_ref, decode_bytes, decode_flops
from msrbook.testing import assert_close


def test_decode_bytes_by_hand():
    # B=2, H=8, Hkv=2, S=100, D=64, fp16: K+V 2*2*2*100*64 = 51200 elements, q+out 2*2*8*64 = 2048.
    assert decode_bytes(2, 8, 2, 100, 64, 2) == (51200 + 2048) * 2 == 106496
    # The chapter's headline shape: B=16, 64 q / 8 kv heads, 128K tokens, D=128, fp16:
    # K+V = 2*16*8*131072*128*2 = 8589934592 bytes (8 GiB), q+out = 2*16*64*128*2 = 524288.
    assert decode_bytes(16, 64, 8, 131072, 128, 2) == 8589934592 + 524288
    assert decode_bytes(16, 64, 8, 131072, 128, 4) == 2 * decode_bytes(16, 64, 8, 131072, 128, 2)


def test_decode_flops_by_hand():
    assert decode_flops(2, 8, 100, 64) == 409600  # 4 * 2 * 8 * 100 * 64
    assert decode_flops(16, 64, 131072, 128) == 68719476736  # 2^36: ~0.5 FLOP per byte of fp16 KV


def test_gbps_and_roofline():
    assert gbps(10**9, 1.0) == pytest.approx(1000.0)  # 1 GB in 1 ms = 1000 GB/s (decimal)
    assert gbps(8590458880, 2.0) == pytest.approx(4295.22944)
    assert roofline_gbps({"read_gbps": 4400.0, "copy_gbps": 4300.0}) == 4400.0
    assert roofline_gbps({"read_gbps": 2900.0, "copy_gbps": 3000.0}) == 3000.0


def test_time_ms_on_cpu_returns_positive_median():
    x = torch.randn(256, 256)
    ms = time_ms(lambda: x @ x, warmup=1, rep=5, device="cpu")
    assert ms > 0 and math.isfinite(ms)


def test_rotating_cycles_through_input_sets():
    seen = []
    call = rotating(lambda a, b: seen.append((a, b)), [(1, 2), (3, 4), (5, 6)])
    for _ in range(4):
        call()
    assert seen == [(1, 2), (3, 4), (5, 6), (1, 2)]
    assert rotation_copies(10**6, "cpu") == 1


def test_measure_bandwidth_keys_on_cpu():
    bw = measure_bandwidth("cpu", nbytes=2**20)  # a code-path check only: CPU numbers are no roofline
    assert set(bw) == {"read_gbps", "copy_gbps"} and all(v > 0 for v in bw.values())


def test_sdpa_decode_math_matches_reference_with_gqa():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 8, 64, generator=gen)  # [B, H, D]
    k, v = torch.randn(3, 2, 37, 64, generator=gen), torch.randn(3, 2, 37, 64, generator=gen)  # [B, Hkv, S, D]
    out = sdpa_decode(q, k, v, "math")
    assert out.shape == (3, 8, 64)
    assert_close(out, decode_attention_ref(q, k, v), rtol=1e-5, atol=1e-5, name="sdpa math")  # both fp32
    assert "math" in available_sdpa_backends(q, k, v)


def test_sweep_triton_on_cpu():
    rows = sweep([1], [33], [(4, 2)], D=64, dtype=torch.float32, backends=("triton", "sdpa_math"),
                 warmup=1, rep=3, progress=False)
    assert [r["backend"] for r in rows] == ["triton", "sdpa_math"]
    for r in rows:
        assert r["error"] == "" and r["ms"] > 0 and r["bytes"] == decode_bytes(1, 4, 2, 33, 64, 4)
        assert (r["batch"], r["seq_len"], r["n_q"], r["n_kv"], r["head_dim"], r["dtype"]) == (1, 33, 4, 2, 64, "float32")
        assert r["gbps"] == pytest.approx(gbps(r["bytes"], r["ms"]))
    assert best_backend_ratio(rows, 1, 33, 4, 2) == pytest.approx(rows[1]["ms"] / rows[0]["ms"])
    with pytest.raises(ValueError):
        best_backend_ratio(rows, 2, 33, 4, 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks how a backend that cannot run on CPU is recorded")
def test_sweep_records_a_backend_that_cannot_run():
    rows = sweep([1], [20], [(2, 1)], D=64, dtype=torch.float32, backends=("triton", "tilelang"),
                 warmup=1, rep=3, progress=False)
    assert rows[0]["error"] == "" and rows[1]["error"] != "" and math.isnan(rows[1]["ms"])


def test_sweep_raises_on_unknown_backend_and_wrong_result(monkeypatch):
    with pytest.raises(ValueError, match="unknown decode baseline"):
        sweep([1], [20], [(2, 1)], D=64, dtype=torch.float32, backends=("nope",), progress=False)
    import msrbook.bench as bench

    monkeypatch.setattr(bench, "decode_attention", lambda q, k, v: torch.zeros_like(q))
    with pytest.raises(AssertionError, match="triton"):
        sweep([1], [20], [(2, 1)], D=64, dtype=torch.float32, backends=("triton",), warmup=1, rep=3, progress=False)


def test_time_graph_ms_falls_back_off_cuda():
    """Off CUDA there is no graph to capture: the eager median, and graphed False says so."""
    from msrbook.bench import time_graph_ms

    calls = []
    ms, graphed = time_graph_ms(lambda: calls.append(1), warmup=1, rep=2, device="cpu")
    assert graphed is False and ms >= 0 and len(calls) >= 3
