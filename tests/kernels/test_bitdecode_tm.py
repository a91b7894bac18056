"""The experimental tokens-in-M low-bit decode (kernels/bitdecode/tm.py, impl="triton_tm") equals the fp32 reference on
the dequantized cache, under the Triton interpreter (plain convert; the inline-PTX convert it shares
with kernels/bitdecode/ is tested in test_bitdecode_asm.py), and compiles for sm_90.

Tolerance: 1e-2 of the output's largest magnitude, the reasoning of test_bitdecode.py (fp16
roundings of q o s and p o s_v, each 2^-11 relative, summed over many tokens), here with p up to
2^8 before normalisation (lazy rescaling), which changes no relative rounding.
"""

import os
import subprocess
import sys

import pytest

from msrbook.kernels.bitdecode import bitdecode_attention
from msrbook.kernels.decode_attention import decode_attention_ref
from msrbook.testing import assert_close

from bitdecode_cases import quant_case


@pytest.mark.parametrize("bits,k_mode,B,H,Hkv,T,D,splits", [
    (4, "KC", 2, 4, 1, 300, 64, 2),  # MHA-like G=4 over one KV head, partial residual
    (2, "KT", 1, 8, 2, 517, 64, 3),  # awkward length, uneven splits
    (4, "KT", 1, 2, 2, 1, 32, None),  # one token: the residual only
    (2, "KC", 3, 6, 2, 140, 32, None),  # G=3 (padded to 4), batch 3
    (4, "KC", 1, 2, 2, 640, 64, 1),  # G=1, one split over several tiles
])
def test_tm_equals_reference(bits, k_mode, B, H, Hkv, T, D, splits):
    q, cache = quant_case(bits, k_mode, B, H, Hkv, T, D, seed=T)
    ref = decode_attention_ref(q, *cache.dequantized())
    out = bitdecode_attention(q, cache, impl="triton_tm", num_splits=splits).float()
    assert_close(out, ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"tm {bits}-bit {k_mode}")


@pytest.mark.parametrize("impl", ("triton_tm", "triton_tm2"))
@pytest.mark.parametrize("bits", (4, 2))
def test_tm_lazy_rescale_with_a_rising_maximum(bits, impl):
    """Scores that grow along the cache force many rescales (one split streams all tiles); both
    tokens-in-M kernels (triton_tm2: kernels/bitdecode/tm2.py) share the lazy rescale."""
    q, cache = quant_case(bits, "KC", 1, 4, 2, 1024 + 37, 64, seed=bits, ramp=6.0)
    ref = decode_attention_ref(q, *cache.dequantized())
    out = bitdecode_attention(q, cache, impl=impl, num_splits=1).float()
    assert_close(out, ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"{impl} lazy rescale")


COMPILE_TM = """
from msrbook.kernels.bitdecode import compile_for_target
for bits, G, warps in ((4, 1, 1), (2, 4, 2)):
    ptx = compile_for_target("triton_tm", bits=bits, G=G, D=128, magic_cvt="asm", num_warps=warps).asm["ptx"]
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
