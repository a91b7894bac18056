"""The TileLang decode kernel lowers to CUDA for Hopper on a CPU-only machine, and (on a GPU)
matches the fp32 reference. Glossary: B, H, Hkv, G = H // Hkv, S, D."""

import re

import pytest
import torch

pytest.importorskip("tilelang")

from msrbook.kernels.decode_attention import decode_attention_ref, default_config  # noqa: E402
from msrbook.kernels.decode_attention_tilelang import decode_attention_tilelang, lower_cuda_source, plan  # noqa: E402
from msrbook.testing import assert_close  # noqa: E402


@pytest.mark.parametrize("B,H,Hkv,D,dtype", [
    pytest.param(2, 64, 8, 128, "float16", id="G8-D128-fp16"),
    pytest.param(3, 4, 4, 64, "bfloat16", id="G1-D64-bf16"),
])
def test_lowers_for_sm90a(B, H, Hkv, D, dtype):
    src = lower_cuda_source(B, H, Hkv, 1000, D, dtype=dtype, target="cuda -arch=sm_90a", num_splits=4)
    split, combine = "decode_attention_split_kv_kernel", "decode_attention_split_kv_kernel_1"
    assert re.search(rf'extern "C" __global__ void .*\b{split}\(', src), "stage-1 kernel missing"
    assert re.search(rf'extern "C" __global__ void .*\b{combine}\(', src), "combine kernel missing"
    assert re.search(r"\bint S\b", src), "S should be a runtime argument (dynamic shape), not baked in"
    assert "buf_dyn_shmem" in src and "K_shared" in src and "V_shared" in src, "K/V tiles not in shared memory"
    assert re.search(r"tl::(mma_sync|wgmma)", src), "no tensor-core product in the kernel"
    assert "tma_load" in src or "cp_async" in src, "K/V tiles are not copied asynchronously"
    assert ("bfloat16_t" if dtype == "bfloat16" else "half_t") in src


@pytest.mark.parametrize("dtype,name", [(torch.float16, "float16"), (torch.bfloat16, "bfloat16")])
def test_plan_key_defaults_and_overrides(dtype, name):
    """The wrapper's planning step (all of the wrapper that runs without a GPU)."""
    q = torch.empty(16, 64, 128, dtype=dtype, device="meta")  # [B, H, D]; meta: shapes only, no memory
    k = torch.empty(16, 8, 131072, 128, dtype=dtype, device="meta")  # [B, Hkv, S, D]
    splits = default_config(16, 8, 131072, 128, 132, elem_bytes=2).num_splits
    assert plan(q, k) == (16, 64, 8, 128, splits, 128, 2, 128, name, None)
    assert plan(q, k, num_splits=5, block_n=64, sm_scale=0.1)[4:6] + plan(q, k, sm_scale=0.1)[-1:] == (5, 64, 0.1)
    with pytest.raises(KeyError):  # fp32 has no TileLang path here
        plan(q.float(), k.float())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="TileLang kernels run only on a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("B,H,Hkv,S,D", [(3, 32, 8, 1000, 128), (2, 8, 1, 37, 64), (1, 4, 4, 1, 128)])
def test_matches_reference_on_gpu(B, H, Hkv, S, D, dtype):
    gen = torch.Generator(device="cuda").manual_seed(S)
    q = torch.randn(B, H, D, device="cuda", generator=gen).to(dtype)  # [B, H, D]
    k, v = (torch.randn(B, Hkv, S, D, device="cuda", generator=gen).to(dtype) for _ in range(2))  # [B, Hkv, S, D]
    out = decode_attention_tilelang(q, k, v)
    # p and the output are rounded to the input dtype (fp16 2^-11, bf16 2^-8 relative), as in Triton.
    tol = 2e-3 if dtype == torch.float16 else 2e-2
    assert_close(out.float(), decode_attention_ref(q, k, v), rtol=tol, atol=tol, name=f"tilelang {dtype}")
