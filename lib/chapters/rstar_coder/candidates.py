"""Candidate solutions: a problem's catalogue of known sources, and a seeded sampler of pools.

rStar-Coder samples 16 long-reasoning solutions per problem from an LLM. Here a pool of n candidates
is drawn from a problem's catalogue, which holds

* correct ones: the oracle, the oracle restyled (wrapped in `main()`), hand-written variants;
* wrong ones: mutants of the oracle (one realistic bug each) and hand-written wrong variants;
* the `slow` one: correct output, but O(n^2), so it exceeds the time limit at large scale.

The sampler is a stand-in for the LLM: each draw is correct with probability `p_correct` (the
problem's own value); a wrong draw picks the problem's `dominant` mutant with probability
`DOMINANT_WEIGHT` when it has one (a bug many samples share, which can form a wrong plurality), else
a uniform choice among the wrong and slow sources. Duplicated sources in a pool are realistic: LLM
samples often coincide.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from textwrap import indent

from .problems import Mutant, Problem, apply_mutant

KINDS = ("correct", "wrong", "slow")
DOMINANT_WEIGHT = 0.7  # share of wrong draws that repeat the dominant bug, where a problem has one


@dataclass(frozen=True)
class Candidate:
    name: str  # "oracle", "oracle_in_main", "variant/<name>", "mutant/<name>", "slow"
    source: str  # Python source: stdin -> stdout
    kind: str  # one of KINDS


def in_main(source: str) -> str:
    """The same program restyled: its body inside `def main()` (a common LLM style)."""
    return "def main():\n" + indent(source, "    ") + "\n\nmain()\n"


def catalogue(problem: Problem) -> list[Candidate]:
    """Every distinct known candidate of a problem, correct ones first."""
    out = [Candidate("oracle", problem.oracle, "correct"),
           Candidate("oracle_in_main", in_main(problem.oracle), "correct")]
    out += [Candidate(f"variant/{v.name}", v.source, "correct") for v in problem.variants if v.correct]
    out += [Candidate(f"mutant/{m.name}", apply_mutant(problem.oracle, m), "wrong") for m in problem.mutants]
    out += [Candidate(f"variant/{v.name}", v.source, "wrong") for v in problem.variants if not v.correct]
    if problem.slow is not None:
        src = apply_mutant(problem.oracle, problem.slow) if isinstance(problem.slow, Mutant) else problem.slow
        out.append(Candidate("slow", src, "slow"))
    return out


def dominant_name(problem: Problem) -> str | None:
    if problem.dominant is None:
        return None
    names = {c.name.split("/", 1)[-1]: c.name for c in catalogue(problem) if c.kind != "correct"}
    if problem.dominant not in names:
        raise ValueError(f"{problem.name}: dominant {problem.dominant!r} is not one of its wrong candidates")
    return names[problem.dominant]


def sample_pool(problem: Problem, n: int, rng: random.Random) -> list[int]:
    """Indices into catalogue(problem) of n sampled candidates (with repetition)."""
    cat = catalogue(problem)
    good = [i for i, c in enumerate(cat) if c.kind == "correct"]
    bad = [i for i, c in enumerate(cat) if c.kind != "correct"]
    dom = dominant_name(problem)
    dom_i = next((i for i, c in enumerate(cat) if c.name == dom), None)
    pool = []
    for _ in range(n):
        if not bad or rng.random() < problem.p_correct:
            pool.append(rng.choice(good))
        elif dom_i is not None and rng.random() < DOMINANT_WEIGHT:
            pool.append(dom_i)
        else:
            pool.append(rng.choice(bad))
    return pool
