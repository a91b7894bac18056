"""The chapter's experiments: run a problem's candidate catalogue on its inputs once, then answer every
question (pools of 2..16 candidates, thresholds 0.3..0.9, baseline labellers, small vs full inputs)
from those outputs without running anything again.

Running each distinct source once is exact, not an approximation: the programs are deterministic, so
two copies of one source in a pool give the same output vector.

A `Runner` takes (source, stdin) tasks and returns (verdict, stdout) pairs in order. Notebooks pass
`sandbox_runner(Sandbox(...))`, because candidates are untrusted; unit tests of trusted code may pass
`trusted_runner`.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from typing import Callable

from .candidates import Candidate, catalogue, sample_pool
from .generate import InputSet, generate_inputs, oracle_outputs
from .problems import Problem, run_trusted
from .verify import PAPER_HARD_THRESHOLD, PAPER_THRESHOLD, direct_labels, mutual_verification, output_value, single_candidate_labels, threshold_for, wilson

Runner = Callable[[list], list]  # [(source, stdin)] -> [(verdict, stdout)]
HARD_OFFSET = PAPER_THRESHOLD - PAPER_HARD_THRESHOLD  # the hard-problem rule: tau - 0.2 (the paper's 0.6 -> 0.4)


def sandbox_runner(sandbox) -> Runner:
    """Untrusted code: every task is its own isolated process (msrbook.sandbox)."""
    def run(tasks):
        return [(r.verdict.value, r.stdout) for r in sandbox.run_many(tasks)]
    return run


def trusted_runner(tasks) -> list:
    """TRUSTED code only (tests): in-process, no limits."""
    out = []
    for src, stdin in tasks:
        try:
            out.append(("ok", run_trusted(src, stdin)))
        except Exception:  # a wrong program may raise; that is its verdict, not a test failure
            out.append(("runtime_error", ""))
    return out


def digest(value: str) -> str:
    """Outputs are compared by digest: a 10^5-number output is 600 kB, its digest 16 bytes."""
    return hashlib.blake2b(value.encode(), digest_size=12).hexdigest()


@dataclass
class ProblemRun:
    problem: Problem
    inputs: InputSet
    oracle: list[str]  # the oracle's normalized outputs (trusted, in-process)
    candidates: list[Candidate]  # the catalogue, in order
    vectors: list[tuple]  # per candidate: digest of each input's output value
    verdicts: list[tuple]  # per candidate: each run's verdict
    runs: int  # sandbox runs made
    run_s: float  # wall seconds the runs took
    oracle_s: float  # wall seconds of the oracle (in-process)

    @property
    def oracle_vector(self) -> tuple:
        return tuple(digest(o) for o in self.oracle)


def run_problem(problem: Problem, inputs: InputSet, runner: Runner) -> ProblemRun:
    """Every catalogue candidate on every input, in one batch of tasks."""
    cands = catalogue(problem)
    oracle, oracle_s = oracle_outputs(problem, inputs.inputs)
    tasks = [(c.source, x) for c in cands for x in inputs.inputs]
    t0 = time.perf_counter()
    results = runner(tasks)
    run_s = time.perf_counter() - t0
    T = len(inputs.inputs)
    vectors, verdicts = [], []
    for i in range(len(cands)):
        chunk = results[i * T:(i + 1) * T]
        vectors.append(tuple(digest(output_value(v, out)) for v, out in chunk))
        verdicts.append(tuple(v for v, _ in chunk))
    return ProblemRun(problem, inputs, oracle, cands, vectors, verdicts, len(tasks), run_s, oracle_s)


# -- labelling --------------------------------------------------------------------------------------

def pools(run: ProblemRun, n_max: int, repeats: int, seed: int) -> list[list[int]]:
    """`repeats` seeded pools of n_max catalogue indices; a pool of n uses the first n (nested)."""
    rng = random.Random(f"pool:{run.problem.name}:{seed}")
    return [sample_pool(run.problem, n_max, rng) for _ in range(repeats)]


def verification_rows(run: ProblemRun, pool_list, sizes, thresholds, hard_rule: bool = False) -> list[dict]:
    """One row per (pool, size, threshold): accepted?, why, share, labelled-correct count."""
    truth = run.oracle_vector
    rows = []
    for r, pool in enumerate(pool_list):
        for n in sizes:
            vectors = [run.vectors[i] for i in pool[:n]]
            n_correct = sum(run.candidates[i].kind == "correct" for i in pool[:n])
            for tau in thresholds:
                t = threshold_for(run.problem.hard, tau, tau - HARD_OFFSET) if hard_rule else tau
                d = mutual_verification(vectors, t)
                good = sum(a == b for a, b in zip(d.label, truth)) if d.accepted else 0
                rows.append(dict(problem=run.problem.name, hard=run.problem.hard, repeat=r, n_candidates=n,
                                 threshold=tau, correct_in_pool=n_correct, accepted=d.accepted, reason=d.reason,
                                 share=round(d.share, 4), labels=len(truth) if d.accepted else 0,
                                 labels_correct=good))
    return rows


def baseline_rows(run: ProblemRun, pool_list, p0: float, per_decade: float, seed: int) -> list[dict]:
    """Single-candidate and simulated direct labelling, one row per pool (every input labelled)."""
    truth = run.oracle_vector
    rng = random.Random(f"baseline:{run.problem.name}:{seed}")
    scales = run.inputs.max_scales
    rows = []
    for r, pool in enumerate(pool_list):
        one = single_candidate_labels([run.vectors[i] for i in pool], rng)
        direct = [digest(o) for o in direct_labels(run.oracle, scales, rng, p0, per_decade)]
        for method, labels in (("single candidate", one), ("direct (simulated)", direct)):
            rows.append(dict(problem=run.problem.name, repeat=r, method=method, labels=len(truth),
                             labels_correct=sum(a == b for a, b in zip(labels, truth))))
    return rows


def accuracy(rows: list[dict]) -> dict:
    """Pooled labelling accuracy with its Wilson interval, over the accepted rows given."""
    k = sum(r["labels_correct"] for r in rows)
    n = sum(r["labels"] for r in rows)
    p, lo, hi = wilson(k, n) if n else (float("nan"),) * 3
    return dict(labels=n, labels_correct=k, accuracy=p, wilson_low=lo, wilson_high=hi)


# -- which wrong solutions an input set catches ---------------------------------------------------------

def catch_rows(run: ProblemRun, label: str) -> list[dict]:
    """Per non-correct candidate: caught (some output differs from the oracle's) on this input set?"""
    truth = run.oracle_vector
    scales = run.inputs.max_scales
    rows = []
    for c, vec, verdicts in zip(run.candidates, run.vectors, run.verdicts):
        bad = [t for t, (a, b) in enumerate(zip(vec, truth)) if a != b]
        rows.append(dict(problem=run.problem.name, candidate=c.name, kind=c.kind, inputs=label,
                         caught=bool(bad), failing_inputs=len(bad),
                         smallest_failing_scale=min((scales[t] for t in bad), default=None),
                         timeouts=sum(v == "time_limit" for v in verdicts)))
    return rows


# -- whole experiments (what the notebooks call) ---------------------------------------------------------

def run_problems(problems, n_inputs: int, seed: int, runner: Runner, ceiling: int | None = None) -> list[ProblemRun]:
    """Three-step inputs for each problem, then its whole catalogue on them."""
    return [run_problem(p, generate_inputs(p, n_inputs, seed, ceiling), runner) for p in problems]


def speed_row(runs: list[ProblemRun], label: str) -> dict:
    n, s = sum(r.runs for r in runs), sum(r.run_s for r in runs)
    return dict(inputs=label, problems=len(runs), sandbox_runs=n, run_s=round(s, 3), runs_per_s=n / s if s else None,
                timeouts=sum(v == "time_limit" for r in runs for vs in r.verdicts for v in vs),
                oracle_s=round(sum(r.oracle_s for r in runs), 3))


def verification_summary(runs: list[ProblemRun], n_max: int, sizes, thresholds, repeats: int, seed: int) -> list[dict]:
    """Acceptance and pooled labelling accuracy per (rule, pool size, threshold), over all problems."""
    out = []
    for hard_rule in (False, True):
        rows = [row for r in runs for row in verification_rows(r, pools(r, n_max, repeats, seed), sizes, thresholds, hard_rule)]
        for n in sizes:
            for tau in thresholds:
                sel = [x for x in rows if x["n_candidates"] == n and x["threshold"] == tau]
                acc = [x for x in sel if x["accepted"]]
                out.append(dict(rule="tau - 0.2 for hard" if hard_rule else "tau for all", n_candidates=n, threshold=tau,
                                pools=len(sel), accepted=len(acc), ties=sum(x["reason"] == "tie for largest" for x in sel),
                                wrong_group_accepted=sum(x["labels_correct"] < x["labels"] for x in acc), **accuracy(acc)))
    return out


def per_problem_summary(runs: list[ProblemRun], n: int, tau: float, repeats: int, seed: int) -> list[dict]:
    out = []
    for r in runs:
        rows = verification_rows(r, pools(r, n, repeats, seed), [n], [tau])
        acc = [x for x in rows if x["accepted"]]
        out.append(dict(problem=r.problem.name, hard=r.problem.hard, p_correct=r.problem.p_correct,
                        dominant_bug=r.problem.dominant or "", mean_correct_share=sum(x["correct_in_pool"] for x in rows) / (n * len(rows)),
                        acceptance=len(acc) / len(rows), **accuracy(acc)))
    return out


def baseline_summary(runs: list[ProblemRun], n: int, tau: float, repeats: int, seed: int, p0: float,
                     per_decade: float) -> list[dict]:
    """Mutual verification (accepted problems) against the two labellers that label everything."""
    mv = [x for r in runs for x in verification_rows(r, pools(r, n, repeats, seed), [n], [tau]) if x["accepted"]]
    base = [x for r in runs for x in baseline_rows(r, pools(r, n, repeats, seed), p0, per_decade, seed)]
    out = [dict(method=f"mutual verification (n={n}, tau={tau})", **accuracy(mv))]
    for m in ("single candidate", "direct (simulated)"):
        out.append(dict(method=m, **accuracy([x for x in base if x["method"] == m])))
    return out
