"""The `ci` preset trains in under a minute on 2 cores and ends well below the unigram loss; the
trainer is deterministic with a seed; the weight cache is reused instead of retraining."""

import dataclasses

import pytest
import torch

from msrbook.models import train as train_mod
from msrbook.models.config import preset
from msrbook.models.corpus import ByteTokenizer, encode_split, load_corpus
from msrbook.models.evaluate import unigram_entropy


@pytest.fixture(scope="module")
def ci_run():
    return train_mod.train(preset("ci"), seed=0, device="cpu", progress=False)


def test_ci_preset_trains_its_300_steps(ci_run):
    """The ci preset's cost is bounded by its step count (no test asserts time: a busy machine must
    not fail it); it evaluates every 50 steps."""
    run = ci_run
    assert [h["step"] for h in run.history] == [50, 100, 150, 200, 250, 300]


def test_ci_preset_ends_well_below_the_unigram_loss(ci_run):
    run = ci_run
    val = encode_split(load_corpus("shakespeare"), "val", ByteTokenizer())
    h1 = unigram_entropy(val, 256)  # 3.35 nats: the best any context-free model can do on it
    final = run.history[-1]["val_loss"]
    # measured 2.05 nats; 0.8 nats below (a 2.2x smaller perplexity) means it learned context
    assert final < h1 - 0.8, (final, h1)
    assert run.history[0]["val_loss"] > final  # and it kept improving


def test_schedule_warms_up_then_decays_to_the_floor():
    tc = preset("ci").train
    lrs = [train_mod.lr_at(s, tc) for s in range(tc.steps)]
    assert lrs[0] == pytest.approx(tc.lr / tc.warmup) and lrs[tc.warmup - 1] == pytest.approx(tc.lr)
    assert max(lrs) == pytest.approx(tc.lr) and lrs[-1] == pytest.approx(tc.min_lr_frac * tc.lr)
    assert all(a >= b for a, b in zip(lrs[tc.warmup:], lrs[tc.warmup + 1:]))


def test_training_is_deterministic_with_a_seed():
    p = dataclasses.replace(preset("ci"), train=dataclasses.replace(preset("ci").train, steps=4, eval_every=2))
    a, b = (train_mod.train(p, seed=3, device="cpu", progress=False) for _ in range(2))
    c = train_mod.train(p, seed=4, device="cpu", progress=False)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_weight_cache_is_reused(ci_run, tmp_path, monkeypatch):
    run = ci_run
    monkeypatch.setattr(train_mod, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: run)  # the first call "trains" (reuses ci_run)
    first = train_mod.load_or_train("ci", seed=0, device="cpu")
    assert not first.from_cache and first.cache_path.startswith(str(tmp_path))
    assert f"-torch{torch.__version__}-cpu-fp32-" in first.cache_path and "ci-seed0-" in first.cache_path

    def no_training(*a, **k):
        raise AssertionError("a cached model was retrained")

    monkeypatch.setattr(train_mod, "train", no_training)
    second = train_mod.load_or_train("ci", seed=0, device="cpu")
    assert second.from_cache and second.history == run.history
    x = torch.randint(0, 256, (2, 33))
    with torch.no_grad():
        assert torch.equal(second.model(x), run.model(x))
    assert train_mod.cache_path(preset("ci"), 1, "cpu") != first.cache_path  # another seed, another file
