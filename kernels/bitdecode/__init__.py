"""BitDecoding (arXiv:2503.18773): decode attention straight from a 4- or 2-bit KV cache.

One family of kernels, one module each, imports pointing one way (codes <- kernel, tm, tm2;
pack <- quant <- kernel):

    quant.py   the quantizer, the packing layout and QuantKVCache (pure torch, plus one launch of pack)
    pack.py    the fused quantize-and-pack kernel (K and V of a block of tokens in one launch)
    codes.py   device helpers every decode kernel shares (codes to fp16, slab products, softmax)
    kernel.py  the default decode kernel (query heads in M), the CUDA-core variant, the wrapper
               `bitdecode_attention`, the naive reference, `compile_for_target`, `main()`
    tm.py      tokens in M (impl="triton_tm");  tm2.py  the same in channel halves (impl="triton_tm2")

The benchmark drivers that compare these kernels with the fp16 baselines are chapter code:
msrbook.chapters.bitdecoding.bench.
"""

from .codes import ASM_SLOT_PAIR, ASM_SLOT_PAIR_SUB, SUB_SCALE
from .kernel import (SWEEP, BitDecodeConfig, bitdecode_attention, bitdecode_bytes, compile_for_target, config_for,
                     default_config, default_cvt, fallback_config, launch_config, main, plan)
from .pack import quantize_pack_kv
from .quant import QuantConfig, QuantKVCache

__all__ = ["ASM_SLOT_PAIR", "ASM_SLOT_PAIR_SUB", "SUB_SCALE", "SWEEP", "BitDecodeConfig", "QuantConfig",
           "QuantKVCache", "bitdecode_attention", "bitdecode_bytes", "compile_for_target", "config_for",
           "default_config", "default_cvt", "fallback_config", "launch_config", "main", "plan", "quantize_pack_kv"]
