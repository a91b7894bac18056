"""The decoder equals its naive reference; KV-cached decoding equals full recompute; the attention
registry swaps attention without changing outputs when the swapped function is exact."""

import dataclasses

import pytest
import torch

from msrbook.models import attention
from msrbook.models.config import ModelConfig
from msrbook.models.generate import decode_one, generate, prefill
from msrbook.models.model import Decoder
from msrbook.models.reference import naive_logits
from msrbook.models.rope import RopeConfig
from msrbook.errors import BookError

LAYOUTS = {  # awkward head layouts, each with H, Hk, Hv, Dk, Dv set independently
    "mha": ModelConfig(n_q=4, n_k=4, n_v=4, d_qk=32, d_v=32),
    "gqa-3": ModelConfig(n_q=6, n_k=2, n_v=2, d_qk=64, d_v=64, d_model=96),
    "diffqkv": ModelConfig(n_q=6, n_k=1, n_v=3, d_qk=16, d_v=24),
    "diffqkv-augq": ModelConfig(n_q=4, n_k=4, n_v=1, d_qk=32, d_v=16, aug_q=192),
    "yarn": ModelConfig(rope=RopeConfig(scaling="yarn", factor=4.0, original_max_len=64)),
}


def model_for(cfg, seed=0, dtype=torch.float64):
    return Decoder(cfg).init_weights(torch.Generator().manual_seed(seed)).to(dtype).eval()


def tokens(b, t, seed=0, vocab=256):
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_decoder_equals_naive_reference(layout):
    m = model_for(LAYOUTS[layout])
    idx = tokens(3, 37)  # batch 3, a length that is no power of two
    with torch.no_grad():
        got = m(idx)
    # float64 on both paths: only summation order differs, so 1e-10 is far above rounding
    # (~1e-15 seen) and far below any real error (a wrong head mapping moves logits by ~1e-2)
    torch.testing.assert_close(got, naive_logits(m, idx), rtol=0, atol=1e-10)


@pytest.mark.parametrize("layout", ["gqa-3", "diffqkv-augq"])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_kv_cached_decode_equals_full_recompute(layout, dtype, atol):
    # float32: cached and full paths reduce in different orders; logits are O(1), so 2e-5 is
    # ~100 ulps, while reading a wrong cache slot shifts them by ~1e-2
    m = model_for(LAYOUTS[layout], dtype=dtype)
    idx = tokens(3, 29, seed=1)
    with torch.no_grad():
        full = m(idx)  # (B, T, V)
        caches = m.new_caches(3, 29)
        steps = [prefill(m, idx[:, :11], caches)]
        steps += [decode_one(m, idx[:, t:t + 1], t, caches) for t in range(11, 29)]
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 10:], rtol=0, atol=atol)


def test_chunked_prefill_equals_full():
    m = model_for(LAYOUTS["diffqkv"])
    idx = tokens(2, 40, seed=2)
    with torch.no_grad():
        caches = m.new_caches(2, 40)
        a = m(idx[:, :17], 0, caches)
        b = m(idx[:, 17:], 17, caches)  # a 23-token chunk attends bottom-right over 40 keys
        full = m(idx)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=0, atol=1e-10)


def _expanded_sdpa(q, k, v, *, scale, layer=0):
    """Exact, but another route: heads expanded by hand, then SDPA with an explicit mask."""
    k, v = attention.expand_heads(k, q.shape[1]), attention.expand_heads(v, q.shape[1])
    mask = attention.causal_mask(q.shape[2], k.shape[2], q.device)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


@pytest.mark.parametrize("name", ["naive", "test-expanded-sdpa"])
def test_registry_swap_keeps_outputs(name):
    attention.register("test-expanded-sdpa", _expanded_sdpa)
    base = model_for(LAYOUTS["diffqkv"])
    swapped = Decoder(dataclasses.replace(base.cfg, attention=name)).to(torch.float64).eval()
    swapped.load_state_dict(base.state_dict())
    idx = tokens(3, 21, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(swapped(idx), base(idx), rtol=0, atol=1e-10)


def test_registry_calls_the_swapped_function_with_each_layer():
    seen = []

    def spy(q, k, v, *, scale, layer):
        seen.append((layer, tuple(q.shape), tuple(k.shape), tuple(v.shape)))
        return attention.naive_attention(q, k, v, scale=scale, layer=layer)

    attention.register("test-spy", spy)
    m = model_for(dataclasses.replace(LAYOUTS["diffqkv"], attention="test-spy"))
    with torch.no_grad():
        m(tokens(3, 5))
    assert seen == [(i, (3, 6, 5, 16), (3, 1, 5, 16), (3, 3, 5, 24)) for i in range(2)]


def test_registry_errors():
    with pytest.raises(BookError, match="valid attention: sdpa, naive"):
        attention.get("flash-please")
    with pytest.raises(BookError, match="built in"):
        attention.register("sdpa", _expanded_sdpa)


def test_greedy_generation_equals_argmax_of_full_recompute():
    m = model_for(LAYOUTS["gqa-3"])
    idx = tokens(3, 7, seed=4)
    out = generate(m, idx, 9)
    ref = idx
    with torch.no_grad():
        for _ in range(9):
            ref = torch.cat([ref, m(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)


def test_sampled_generation_is_seeded():
    m = model_for(LAYOUTS["mha"], dtype=torch.float32)
    idx = tokens(2, 5, seed=5)
    a = generate(m, idx, 20, temperature=1.0, seed=7)
    assert torch.equal(a, generate(m, idx, 20, temperature=1.0, seed=7))
    assert not torch.equal(a, generate(m, idx, 20, temperature=1.0, seed=8))
    assert torch.equal(generate(m, idx, 20, temperature=1.0, top_k=1, seed=7), generate(m, idx, 20))


def test_generation_stops_at_eos():
    m = model_for(LAYOUTS["mha"])
    idx = tokens(1, 5, seed=6)
    first = int(generate(m, idx, 1)[0, -1])
    out = generate(m, idx, 10, eos=first)
    assert out.shape == (1, 6) and int(out[0, -1]) == first
