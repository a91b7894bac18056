"""The end-to-end decode stack: byte accounting and the attention plug."""

import torch

from msrbook.models import decode_stack as ds
from msrbook.kernels.decode_attention import decode_attention_ref


def test_weight_bytes_counts_every_weight_tensor():
    w = ds.make_weights(ds.TINY, "cpu", torch.float16)
    tensors = [w["norm"], w["head"]] + [t for lw in w["layers"] for t in lw.values()]
    assert sum(t.numel() * t.element_size() for t in tensors) == ds.TINY.weight_bytes(2)


def test_llama31_8b_shape_has_8b_parameters():
    # published: 8.03e9 parameters including the 128256 x 4096 input embedding, which a step does not read
    params = ds.LLAMA31_8B.weight_bytes(1) + 128256 * 4096
    assert abs(params / 8.03e9 - 1) < 0.01


def test_attention_plug_changes_output_and_cache_bytes():
    cfg = ds.TINY
    torch.manual_seed(0)
    w = ds.make_weights(cfg, "cpu", torch.float32, seed=1)
    S = 37
    kv = [(torch.randn(1, cfg.kv_heads, S, cfg.head_dim), torch.randn(1, cfg.kv_heads, S, cfg.head_dim)) for _ in range(cfg.layers)]
    x = torch.randn(1, cfg.hidden)
    full = ds.decode_step(cfg, w, x, lambda i, q: decode_attention_ref(q, *kv[i]), ds.rope_tables(cfg, S, "cpu"))
    # dropping the last cached token must change the logits (the attention output is used)
    short = ds.decode_step(cfg, w, x, lambda i, q: decode_attention_ref(q, kv[i][0][:, :, :-1], kv[i][1][:, :, :-1]), ds.rope_tables(cfg, S, "cpu"))
    assert full.shape == (1, cfg.vocab) and torch.isfinite(full).all()
    assert (full - short).abs().max() > 1e-4
    assert cfg.kv_bytes_fp16(1, S) == sum(2 * k.numel() * 2 for k, _ in kv)


def test_graphed_step_runs_eagerly_on_cpu():
    cfg = ds.TINY
    w = ds.make_weights(cfg, "cpu", torch.float32)
    kv = torch.randn(1, cfg.kv_heads, 5, cfg.head_dim)
    step = ds.GraphedStep(cfg, w, lambda i, q: decode_attention_ref(q, kv, kv), pos=5)
    assert not step.graphed
    assert step().shape == (1, cfg.vocab)
