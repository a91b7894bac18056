"""Split-KV decode attention (Triton) against its references: on CPU under the Triton interpreter
(tests/conftest.py sets TRITON_INTERPRET=1 when there is no GPU), on the GPU where there is one.
Glossary: B, H, Hkv, G = H // Hkv, S, D."""

import pytest
import torch

from msrbook.kernels.decode_attention import (
    DecodeConfig, decode_attention, decode_attention_blocked_ref, decode_attention_ref, default_config, main)
from msrbook.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Per-dtype tolerances (atol = rtol), against the fp32 reference on the same rounded inputs:
# - fp32: everything stays fp32 (the dot runs in IEEE fp32, not tf32); only summation order and
#   exp2-vs-exp rounding differ. Seen <= 7e-7 on outputs of magnitude ~1; 1e-5 leaves 10x room.
# - fp16: p is rounded to fp16 before the PV product and the output is rounded to fp16, each a
#   relative 2^-11 = 4.9e-4. Seen <= 5.1e-4; 2e-3 is four roundings.
# - bf16 (GPU only; the interpreter's bf16 arithmetic is wrong): the same two roundings at 2^-8 =
#   3.9e-3 each; 2e-2 is five of them.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}

# (B, H, Hkv, S, D, num_splits, block_n); None = the heuristic's choice.
SHAPES = [
    pytest.param(1, 4, 4, 1, 64, None, None, id="S1-G1"),
    pytest.param(3, 8, 2, 37, 64, 2, 16, id="B3-G4-S37-tail"),
    pytest.param(2, 8, 1, 100, 128, 3, 32, id="G8-D128-S100"),
    pytest.param(1, 4, 1, 10, 64, 1, 16, id="S-below-one-block"),
    pytest.param(2, 8, 8, 50, 128, 8, 16, id="more-splits-than-blocks"),
    pytest.param(3, 16, 2, 130, 64, None, None, id="B3-G8-heuristic"),
]


def make_inputs(B, H, Hkv, S, D, dtype, seed=0):
    """Fresh random q [B, H, D], k, v [B, Hkv, S, D] (never zeros)."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=gen).to(DEVICE, dtype)
                 for shape in ((B, H, D), (B, Hkv, S, D), (B, Hkv, S, D)))


@pytest.mark.parametrize("B,H,Hkv,S,D,num_splits,block_n", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_kernel_matches_naive_reference(B, H, Hkv, S, D, num_splits, block_n, dtype):
    q, k, v = make_inputs(B, H, Hkv, S, D, dtype, seed=S)
    out = decode_attention(q, k, v, num_splits=num_splits, block_n=block_n)
    assert out.shape == (B, H, D) and out.dtype == dtype and out.device == q.device
    tol = TOL[dtype]
    assert_close(out.float(), decode_attention_ref(q, k, v), rtol=tol, atol=tol, name="triton vs ref")


@pytest.mark.parametrize("B,H,Hkv,S,D,num_splits,block_n", SHAPES)
def test_blocked_reference_matches_naive(B, H, Hkv, S, D, num_splits, block_n):
    q, k, v = make_inputs(B, H, Hkv, S, D, torch.float32, seed=S + 1)
    q, k, v = q.cpu(), k.cpu(), v.cpu()
    blocked = decode_attention_blocked_ref(q, k, v, num_splits or 2, block_n or 16)
    # Both in fp32 on the CPU; the split/online-softmax order changes rounding only (seen <= 5e-7).
    assert_close(blocked, decode_attention_ref(q, k, v), rtol=1e-5, atol=1e-5, name="blocked vs naive")


def test_every_output_and_split_buffer_is_written(monkeypatch):
    """Poison every buffer the wrapper allocates with NaN: an element the kernels skip (an empty
    split's partial output or log-sum-exp, a padded head row, the output) would surface as NaN."""
    q, k, v = make_inputs(2, 8, 2, 50, 64, torch.float32, seed=3)
    real_empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", poisoned_empty)
    out = decode_attention(q, k, v, num_splits=6, block_n=16)  # 4 blocks: splits 4 and 5 are empty
    monkeypatch.undo()
    assert not torch.isnan(out).any()
    assert_close(out, decode_attention_ref(q, k, v), rtol=1e-5, atol=1e-5, name="poisoned run")


def test_wrong_scale_is_caught():
    """The check can fail: the same kernel with another softmax scale must not pass."""
    q, k, v = make_inputs(2, 8, 2, 37, 64, torch.float32, seed=4)
    out = decode_attention(q, k, v, sm_scale=0.5, num_splits=2, block_n=16)
    with pytest.raises(AssertionError, match="max abs err"):
        assert_close(out, decode_attention_ref(q, k, v), rtol=1e-5, atol=1e-5)
    assert_close(out, decode_attention_ref(q, k, v, sm_scale=0.5), rtol=1e-5, atol=1e-5)


def test_strided_kv_cache_view():
    """A view into a longer cache (S stride larger than D * S_used) is read correctly."""
    q, k_full, v_full = make_inputs(2, 8, 2, 64, 64, torch.float32, seed=5)
    k, v = k_full[:, :, :45], v_full[:, :, :45]  # [B, Hkv, 45, D] views
    assert_close(decode_attention(q, k, v, num_splits=2, block_n=16), decode_attention_ref(q, k, v),
                 rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("elem_bytes", [2, 4])
@pytest.mark.parametrize("B,Hkv,S,D", [(16, 8, 131072, 128), (1, 1, 1, 64), (3, 2, 37, 64), (1, 8, 100000, 256)])
def test_default_config_is_valid(B, Hkv, S, D, elem_bytes):
    cfg = default_config(B, Hkv, S, D, sm_count=132, elem_bytes=elem_bytes)
    assert isinstance(cfg, DecodeConfig)
    assert cfg.block_n >= 16 and cfg.block_n & (cfg.block_n - 1) == 0
    assert 2 * cfg.block_n * D * elem_bytes <= 64 * 1024  # one K+V stage fits the shared-memory budget
    assert 1 <= cfg.num_splits <= -(-S // cfg.block_n)  # never more splits than tiles
    assert cfg.num_splits & (cfg.num_splits - 1) == 0


def test_default_config_on_a_small_shared_memory_gpu():
    assert default_config(16, 8, 131072, 128, sm_count=128, smem_bytes=99 * 1024).num_stages == 2
    assert default_config(16, 8, 131072, 128, sm_count=132).num_stages == 3


def test_main_self_check_runs():
    main(device=DEVICE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 needs a GPU: the interpreter's bf16 is wrong")
@pytest.mark.parametrize("B,H,Hkv,S,D", [(3, 32, 8, 1000, 128), (2, 8, 1, 4097, 64), (16, 64, 8, 32768, 128)])
def test_bf16_on_gpu(B, H, Hkv, S, D):
    q, k, v = make_inputs(B, H, Hkv, S, D, torch.bfloat16, seed=6)
    out = decode_attention(q, k, v)
    assert_close(out.float(), decode_attention_ref(q, k, v), rtol=TOL[torch.bfloat16], atol=TOL[torch.bfloat16])
