"""Competitive-programming problem templates: the seed problems of the rStar-Coder chapter.

A template is what rStar-Coder's pipeline has for a problem once an LLM has written it: a statement,
an oracle solution (Python source that reads stdin and writes stdout), an input generator with named
scale parameters (`generate(rng, scales) -> str | None`, None when the parameters break the
constraints, as the paper's GENERATE_TEST_INPUT does), and an input validator (`validate(text) ->
bool`, the paper's VALIDATE_TEST_INPUT). Candidate solutions come from the oracle by mutation
(`Mutant`: one exact text replacement), from hand-written `Variant`s, and from a correct but
quadratic `slow` version that only a large input exposes.

`max_scale` caps each scale parameter where the oracle itself, in CPython, would need more than
about a third of the judge's 1 s CPU limit (a test checks the oracle at max scale).

Oracles and test code run in-process through `run_trusted`; candidates, untrusted by
construction, run through `msrbook.sandbox` in the notebooks.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
from dataclasses import dataclass, field
from typing import Callable

Generator = Callable[[random.Random, dict], "str | None"]


@dataclass(frozen=True)
class Mutant:
    """A wrong (or slow) candidate: the oracle with `old` replaced by `new` (exactly once)."""
    name: str  # short bug label, e.g. "off_by_one", "missing_modulo"
    old: str  # text that occurs exactly once in the oracle
    new: str  # its replacement


@dataclass(frozen=True)
class Variant:
    """A hand-written candidate source with a known label."""
    name: str
    source: str
    correct: bool = True


@dataclass(frozen=True)
class Problem:
    name: str
    statement: str  # one paragraph, with the input and output format
    oracle: str  # trusted reference solution (Python source, stdin -> stdout)
    generate: Generator  # (rng, {scale name: value}) -> input text, or None if the scales break constraints
    validate: Callable[[str], bool]  # parses an input and checks every constraint
    max_scale: dict  # {scale name: largest grid value}; the first name is the main size parameter
    mutants: tuple = ()  # Mutant(...): realistic wrong solutions derived from the oracle
    variants: tuple = ()  # Variant(...): other algorithms or styles, correct or not
    slow: "Mutant | str | None" = None  # correct but O(n^2): exceeds the time limit only at large n
    hard: bool = False  # the 40% agreement threshold applies (the paper's cf_rating > 1600 rule)
    p_correct: float = 0.7  # share of correct solutions the simulated sampler draws
    dominant: str | None = None  # a mutant the sampler's wrong answers favour (a wrong plurality)
    tags: tuple = field(default=())

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(self.max_scale)


def apply_mutant(source: str, m: Mutant) -> str:
    """The oracle with one replacement; raises unless `old` occurs exactly once."""
    count = source.count(m.old)
    if count != 1:
        raise ValueError(f"mutant {m.name!r}: {m.old!r} occurs {count} times in the source (need exactly 1)")
    return source.replace(m.old, m.new)


def run_trusted(source: str, stdin: str) -> str:
    """Run TRUSTED code (an oracle or a test's own source) in this process; returns its stdout."""
    out, inp = io.StringIO(), io.StringIO(stdin)

    def read_line(prompt: str = "") -> str:  # Jupyter replaces builtins.input; this one reads `stdin`
        line = inp.readline()
        if not line:
            raise EOFError("EOF when reading a line")
        return line.rstrip("\n")
    old_stdin = sys.stdin
    try:
        sys.stdin = inp
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<trusted>", "exec"), {"__name__": "__main__", "input": read_line})
    finally:
        sys.stdin = old_stdin
    return out.getvalue()


def normalize_output(text: str) -> str:
    """Outputs compare line by line with trailing blanks ignored, as most judges do."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


# -- small helpers the templates share ---------------------------------------------------------------

def ints(text: str) -> list[int]:
    return [int(t) for t in text.split()]


def fmt(*rows) -> str:
    """Lines of space-separated values; each row is a value or a sequence of values."""
    lines = []
    for r in rows:
        lines.append(" ".join(map(str, r)) if isinstance(r, (list, tuple)) else str(r))
    return "\n".join(lines) + "\n"


def safe(check: Callable[[str], bool]) -> Callable[[str], bool]:
    """A validator that rejects (instead of raising on) input it cannot parse."""
    def validate(text: str) -> bool:
        try:
            return bool(check(text))
        except (ValueError, IndexError):
            return False
    validate.__name__ = check.__name__
    return validate


def in_range(xs, lo: int, hi: int) -> bool:
    return all(lo <= x <= hi for x in xs)
