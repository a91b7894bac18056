"""The subnormal code convert (magic_cvt="sub" on a GPU, "sub_plain" anywhere; kernels/bitdecode/):
codes read as fp16 subnormals c * 2^-24 and the kernels undo the power-of-two scale in fp32, so the
outputs equal the plain convert's up to the order of fp32 rounding. Checked under the interpreter
for the three tensor-core kernels, K per channel and per token, against the plain convert of the
same kernel and against the fp32 reference (the PTX itself: test_bitdecode_asm.py; on a GPU:
tools/gpu_bitdecode_check.py --sub, which passed every case on an H200).

Tolerances: against the plain convert, 1e-5 of the output scale, with fp32 outputs (both paths
multiply the same fp16 operands exactly and differ only in powers of two, so what is left is fp32
summation order; an fp16 output would round some elements one ulp, 2^-11 relative, apart);
against the reference, 1e-2 as test_bitdecode.py.
"""

import pytest
import torch

from msrbook.kernels.bitdecode import bitdecode_attention
from msrbook.kernels.decode_attention import decode_attention_ref
from msrbook.kernels.bitdecode.quant import QuantConfig, QuantKVCache
from msrbook.testing import assert_close

CASES = [  # impl, bits, k_mode, B, H, Hkv, T, D, splits
    ("triton", 4, "KC", 2, 8, 2, 517, 64, 3),
    ("triton", 2, "KT", 1, 4, 4, 300, 32, 2),
    ("triton_tm", 4, "KT", 1, 6, 2, 260, 32, None),
    ("triton_tm", 2, "KC", 1, 2, 2, 640, 64, 1),
    ("triton_tm2", 4, "KC", 1, 3, 3, 640, 64, 2),
    ("triton_tm2", 2, "KC", 2, 8, 2, 300, 32, None),  # D=32: 16-bit V words (channel pairs need D >= 64)
    ("triton_tm2", 2, "KC", 1, 3, 3, 517, 64, 2),  # G=1, awkward length: V as int32 channel pairs
    ("triton_tm2", 2, "KC", 2, 6, 2, 1030, 128, 3),  # G=3 padded to 4, D=128 (the claim's), channel pairs
]


@pytest.mark.parametrize("impl,bits,k_mode,B,H,Hkv,T,D,splits", CASES)
def test_subnormal_convert_equals_the_plain_convert(impl, bits, k_mode, B, H, Hkv, T, D, splits):
    g = torch.Generator().manual_seed(T + bits)
    q = torch.randn(B, H, D, generator=g).half()
    k, v = (torch.randn(B, Hkv, T, D, generator=g) for _ in range(2))
    k[..., 3] *= 8  # an outlier channel: large K scales
    cache = QuantKVCache(QuantConfig(bits=bits, k_mode=k_mode), B, Hkv, D)
    cache.append(k.half(), v.half())
    kw = dict(tile_softmax=True) if impl == "triton" else {}
    q32 = q.float()  # fp32 outputs: no final fp16 rounding to flip between the two
    plain = bitdecode_attention(q32, cache, impl=impl, num_splits=splits, magic_cvt=False, **kw)
    sub = bitdecode_attention(q32, cache, impl=impl, num_splits=splits, magic_cvt="sub_plain", **kw)
    scale = float(plain.abs().max())
    assert_close(sub, plain, rtol=0, atol=1e-5 * scale, name=f"{impl} sub vs plain")
    ref = decode_attention_ref(q32, *cache.dequantized())
    assert_close(sub, ref, rtol=0, atol=1e-2 * float(ref.abs().max()), name=f"{impl} sub vs reference")


def test_subnormal_convert_is_not_the_identity():
    """The check above can fail: without the unscaling the same codes give outputs off by 2^24."""
    from msrbook.kernels.bitdecode import SUB_SCALE, kernel as bd

    assert SUB_SCALE == 2.0**24
    assert bd._cvt_mode("sub_plain") == 4 and bd._cvt_mode("sub", interpreter_ok=True) == 3
    with pytest.raises(ValueError, match="inline PTX"):
        bd._cvt_mode("sub")  # under the interpreter (this test session), the PTX form is refused
