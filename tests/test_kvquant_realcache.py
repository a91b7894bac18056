"""The fake-quantization harness against the real cache and kernel (msrbook.chapters.bitdecoding.kvquant_realcache), on a
tiny random model in float32 (the kernel computes in fp16), kernels under the Triton interpreter on CPU.

Tolerance: the kernel rounds q to fp16 (2^-11 relative) and multiplies fp16 operands with fp32
accumulation, so its logits should sit ~1e-3 of their scale from the harness's; quantization itself
moves them by ~1e-2 (4 bits) to ~1e-1 (2 bits) of that scale here. The test asks the difference to be
below 5% of the quantization shift: a wrong code, scale, zero or residual anywhere would move the
logits by as much as quantization does.
"""

import pytest

from msrbook.chapters.bitdecoding import kvquant_eval as ev
from msrbook.chapters.bitdecoding import kvquant_realcache as rc

from test_kvquant_eval import tiny_model, tokens


@pytest.mark.parametrize("impl,mode", [("triton", "KC-4"), ("triton", "KT-2"), ("ref", "KC-2")])
@pytest.mark.parametrize("prompt,cont", [(124, 8), (250, 6)])  # a flush while decoding; a flush in the prefill
def test_kernel_decodes_what_the_harness_assumes(impl, mode, prompt, cont):
    import torch

    model, ids = tiny_model(torch.float32), tokens(prompt + cont, seed=11)[0].tolist()
    cfg = ev.mode_config(mode, 128, 128)  # R = 128: the cache packs 128 tokens at the 128th
    r = rc.compare_decode(model, ids[:prompt], ids[prompt:], cfg, impl)
    assert r["steps"] == cont - 1
    assert r["quantization_logit_shift"] > 1e-3  # not vacuous: quantization moved the logits
    assert r["max_abs_logit_diff"] < 0.05 * r["quantization_logit_shift"], r
