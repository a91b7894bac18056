"""The accuracy harness against the real low-bit cache of BitDecoding (arXiv:2503.18773).

`kvquant_eval` measures accuracy with fake quantization: K and V quantized and dequantized in
float32, attention in float32. What a deployment runs is different code: `QuantKVCache` packs codes
with its fused quantize-and-pack kernel, and `bitdecode_attention` decodes from the packed words on
tensor cores, with q in fp16. `compare_decode` runs both on the same prompt and continuation and
reports how far their next-token logits are apart, so the accuracy numbers can be trusted to
describe the kernel.

Call `msrbook.runtime.prepare_triton()` before this module's functions run on a machine without a
GPU: the kernels then run under the Triton interpreter (slowly: use a small model there).
"""

from __future__ import annotations

import torch

from . import kvquant_eval as ev
from msrbook.kernels.bitdecode import QuantConfig, QuantKVCache, bitdecode_attention
from msrbook.models import attention
from msrbook.models.model import Decoder


def real_cache(model: Decoder, cfg: QuantConfig, impl: str = "triton") -> Decoder:
    """A Decoder sharing `model`'s weights whose attention keeps one QuantKVCache per layer: a chunk
    of several tokens (the prompt) is appended and attended with fp16 attention, as a serving system
    prefills; a single token is appended and attended by `bitdecode_attention(impl=...)`. The lab's own
    float32 KV cache must still be passed to forward (it hands attention the new tokens' K and V)."""
    caches: dict[int, QuantKVCache] = {}

    def fn(q, k, v, *, scale, layer=0):
        t, s = q.shape[2], k.shape[2]  # q (B, H, T, D), k/v (B, Hk, S, D)
        if layer not in caches:
            caches[layer] = QuantKVCache(cfg, k.shape[0], k.shape[1], k.shape[3], device=k.device, max_tokens=s)
        cache = caches[layer]
        if cache.length != s - t:
            raise ValueError(f"layer {layer}: the real cache holds {cache.length} tokens, the step starts at {s - t}")
        cache.append(k[:, :, s - t:].half(), v[:, :, s - t:].half())
        if t > 1:
            return ev.mixed_attention(q, k, v, scale=scale, cfg=None)
        out = bitdecode_attention(q[:, :, 0].half().contiguous(), cache, sm_scale=scale, impl=impl)  # (B, H, D)
        return out.to(q.dtype)[:, :, None]  # (B, H, 1, D)

    name = f"kvcache-real-{impl}-{ev.attention_name(cfg)}"
    attention.register(name, fn)
    return ev.swap_attention(model, name)


@torch.no_grad()
def compare_decode(model: Decoder, prompt: list[int], cont: list[int], cfg: QuantConfig,
                   impl: str = "triton") -> dict:
    """Prefill `prompt`, then teacher-force `cont` one token at a time through the harness
    (`kvquant_eval.with_cache`) and through the real cache and kernel (`real_cache`). Returns the
    steps compared, the largest |logit difference| between the two, the largest shift quantization
    itself causes (harness against an fp16 cache: what the difference must be small against), the
    largest |logit|, the share of steps whose argmax agrees, and the mean NLL of `cont` under each."""
    dev = model.tok_emb.weight.device
    ids = torch.tensor([prompt + cont], device=dev)  # (1, P + C)
    p, n = len(prompt), len(prompt) + len(cont)
    out = {}
    kernel, fp16 = real_cache(model, cfg, impl), ev.with_cache(model, None)
    for key, prefill, step in (("fp16", fp16, fp16), ("harness", fp16, ev.with_cache(model, cfg)),
                               ("kernel", kernel, kernel)):
        caches = model.new_caches(1, n)
        prefill(ids[:, :p], start=0, caches=caches)  # fp16 attention in both (the real cache packs here)
        out[key] = torch.cat([step(ids[:, i:i + 1], start=i, caches=caches) for i in range(p, n - 1)], dim=1)[0]
    h, k, f = (out[key].double() for key in ("harness", "kernel", "fp16"))  # (C - 1, V): predictions of cont[1:]
    target = torch.tensor(cont[1:], device=dev)
    nll = {key: torch.nn.functional.cross_entropy(x, target).item() for key, x in (("harness", h), ("kernel", k))}
    return {"steps": h.shape[0], "max_abs_logit_diff": float((h - k).abs().max()),
            "quantization_logit_shift": float((h - f).abs().max()), "max_abs_logit": float(h.abs().max()),
            "argmax_agreement": float((h.argmax(-1) == k.argmax(-1)).double().mean()),
            "nll_harness": nll["harness"], "nll_kernel": nll["kernel"]}
