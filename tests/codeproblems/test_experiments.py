"""The experiment pipeline on trusted code (in-process runner), and the quadratic candidates' time
behaviour in the real sandbox."""

import random

import pytest

from msrbook import sandbox
from msrbook.chapters.rstar_coder import catalog, experiments, generate


@pytest.fixture(scope="module")
def kth_run():
    p = catalog.get("kth_smallest")  # p_correct 0.9, two wrong mutants, no slow one
    s = generate.generate_inputs(p, 12, seed=1, ceiling=100)
    return experiments.run_problem(p, s, experiments.trusted_runner)


def test_run_problem_vectors(kth_run):
    r = kth_run
    assert r.runs == len(r.candidates) * len(r.inputs.inputs)
    truth = r.oracle_vector
    for c, vec in zip(r.candidates, r.vectors):
        assert (vec == truth) == (c.kind == "correct"), c.name


def test_catch_rows_flag_exactly_the_wrong(kth_run):
    rows = experiments.catch_rows(kth_run, "full grid")
    assert all(row["caught"] == (row["kind"] != "correct") for row in rows)
    assert all(row["smallest_failing_scale"] is None for row in rows if row["kind"] == "correct")


def test_pools_are_seeded_and_nested(kth_run):
    a = experiments.pools(kth_run, 16, 5, seed=0)
    assert a == experiments.pools(kth_run, 16, 5, seed=0) and a != experiments.pools(kth_run, 16, 5, seed=1)
    rows = experiments.verification_rows(kth_run, a, [4, 16], [0.6])
    assert len(rows) == 10
    for row in rows:  # an accepted group's labels are all right here, or all wrong on some input
        if row["accepted"]:
            assert row["labels"] == len(kth_run.inputs.inputs)


def test_accepted_labels_equal_the_oracle_when_the_majority_is_correct(kth_run):
    good = [0] * 10 + [len(kth_run.candidates) - 1] * 6  # 10 copies of the oracle, 6 of one wrong mutant
    row = experiments.verification_rows(kth_run, [good], [16], [0.6])[0]
    assert row["accepted"] and row["labels_correct"] == row["labels"]
    bad = [0] * 6 + [len(kth_run.candidates) - 1] * 10
    row = experiments.verification_rows(kth_run, [bad], [16], [0.6])[0]
    assert row["accepted"] and row["labels_correct"] < row["labels"]  # a wrong majority mislabels
    tie = [0] * 8 + [len(kth_run.candidates) - 1] * 8
    assert not experiments.verification_rows(kth_run, [tie], [16], [0.3])[0]["accepted"]


def test_accuracy_pools_rows():
    acc = experiments.accuracy([dict(labels=10, labels_correct=9), dict(labels=10, labels_correct=10)])
    assert acc["labels"] == 20 and acc["accuracy"] == 0.95 and acc["wilson_low"] < 0.95 < acc["wilson_high"]


@pytest.mark.skipif(not sandbox.available(), reason="the sandbox needs root and namespaces")
def test_quadratic_candidates_time_out_only_at_large_scale():
    """Each slow candidate finishes at scale <= 10^3 and exceeds a 1 s CPU limit at the grid's top."""
    slow = [p for p in catalog.PROBLEMS if p.slow is not None]
    tasks, expect = [], []
    for p in slow:
        src = next(c.source for c in experiments.catalogue(p) if c.kind == "slow")
        rng = random.Random(0)
        big = p.generate(rng, dict(p.max_scale))  # every scale parameter at its cap
        small = [p.generate(rng, {k: min(v, 1000) for k, v in p.max_scale.items()}) for _ in range(2)]  # all at 10^3
        assert all(x is not None and p.validate(x) for x in [big, *small])
        tasks += [(src, big)] + [(src, x) for x in small]
        expect += [(p.name, "time_limit")] + [(p.name, "ok")] * len(small)
    with sandbox.Sandbox(sandbox.Limits(wall_s=3.0, cpu_s=1.0, memory_mb=512)) as sb:
        got = [r.verdict.value for r in sb.run_many(tasks)]
    wrong = [(name, want, g) for (name, want), g in zip(expect, got) if want != g]
    assert not wrong, wrong
