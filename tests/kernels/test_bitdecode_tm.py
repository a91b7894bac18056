"""The experimental tokens-in-M low-bit decode (kernels/bitdecode_tm.py) equals the fp32 reference on
the dequantized cache, under the Triton interpreter (plain convert; the inline-PTX convert it shares
with kernels/bitdecode.py is tested in test_bitdecode_asm.py), and compiles for sm_90.

Tolerance: 1e-2 of the output's largest magnitude, the reasoning of test_bitdecode.py (fp16
roundings of q o s and p o s_v, each 2^-11 relative, summed over many tokens), here with p up to
2^8 before normalisation (lazy rescaling), which changes no relative rounding.
"""

import os
import subprocess
import sys

import pytest
import torch

from msrbook.kernels.bitdecode_tm import bitdecode_tm_attention
from msrbook.kernels.decode_attention import decode_attention_ref
from msrbook.kvquant import QuantConfig, QuantKVCache
from msrbook.testing import assert_close


def _case(bits, k_mode, B, H, Hkv, T, D, seed, ramp=0.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, D, generator=g).half()
    k, v = (torch.randn(B, Hkv, T, D, generator=g) for _ in range(2))
    if ramp:  # later tokens align with q more and more: the running max grows all the way
        k += ramp * torch.linspace(0, 1, T)[None, None, :, None] * q.float().reshape(B, Hkv, H // Hkv, D).mean(2)[:, :, None, :]
    cache = QuantKVCache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, D)
    cache.append(k.half(), v.half())
    return q, cache


@pytest.mark.parametrize("bits,k_mode,B,H,Hkv,T,D,splits", [
    (4, "KC", 2, 4, 1, 300, 64, 2),  # MHA-like G=4 over one KV head, partial residual
    (2, "KT", 1, 8, 2, 517, 64, 3),  # awkward length, uneven splits
    (4, "KT", 1, 2, 2, 1, 32, None),  # one token: the residual only
    (2, "KC", 3, 6, 2, 140, 32, None),  # G=3 (padded to 4), batch 3
    (4, "KC", 1, 2, 2, 640, 64, 1),  # G=1, one split over several tiles
])
def test_tm_equals_reference(bits, k_mode, B, H, Hkv, T, D, splits):
    q, cache = _case(bits, k_mode, B, H, Hkv, T, D, seed=T)
    ref = decode_attention_ref(q, *cache.dequantized())
    out = bitdecode_tm_attention(q, cache, num_splits=splits).float()
    assert_close(out, ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"tm {bits}-bit {k_mode}")


@pytest.mark.parametrize("bits", (4, 2))
def test_tm_lazy_rescale_with_a_rising_maximum(bits):
    """Scores that grow along the cache force many rescales (one split streams all tiles)."""
    q, cache = _case(bits, "KC", 1, 4, 2, 1024 + 37, 64, seed=bits, ramp=6.0)
    ref = decode_attention_ref(q, *cache.dequantized())
    out = bitdecode_tm_attention(q, cache, num_splits=1).float()
    assert_close(out, ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name="tm lazy rescale")


COMPILE_TM = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from msrbook.kernels.bitdecode_tm import _tm_split_kernel as fn
for bits, G, warps in ((4, 1, 1), (2, 4, 2)):
    word = "*i32" if bits == 4 else "*i16"
    types = dict(Q="*fp16", KC=word, KM="*i32", VC=word, VM="*i32", KR="*fp16", VR="*fp16", PartialOut="*fp32", Lse="*fp32", qk_scale="fp32")
    const = dict(G=G, BLOCK_G=triton.next_power_of_2(G), D=128, BITS=bits, TILE=128, K_PER_CHANNEL=True, BLOCK_R=16, MAGIC=2, LAZY=8.0)
    sig = {n: types.get(n, "constexpr" if n in const else "i32") for n in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if types.get(n, "").startswith("*") or n.startswith("stride_")}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs), target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=3))
    ptx = k.asm["ptx"]
    print(bits, G, ptx.count("mma.sync.aligned.m16n8k16"), ptx.count("cvt.rn.f16.u32"), ptx.count("lop3.b32"))
"""


def test_tm_compiles_for_sm90():
    """m16n8k16 products (N = the padded query heads, 8), the inline-PTX convert, no int->fp16 converts."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", COMPILE_TM], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for line in out.stdout.splitlines():
        bits, G, mma, cvt, lop3 = (int(x) for x in line.split())
        assert mma > 0 and cvt == 0 and lop3 > 0, line
    assert len(out.stdout.splitlines()) == 2
