"""Mutual verification of outputs (rStar-Coder, section 3), the baseline labellers, and the Wilson
interval used to report labelling accuracy.

Mutual verification. Run every candidate on the same inputs x_1..x_T; candidate i gives the output
vector o_i = (o_i1, ..., o_iT), where a run that does not finish normally contributes its verdict
(`<time_limit>`, `<runtime_error>`, ...) as a value of its own. Group candidates by identical
vectors. With n candidates and G the largest group,

    accept  iff  |G| / n >= tau  and no other group is as large as G,

and then label every x_t with G's output and G's solutions as correct. The paper uses tau = 0.6, and
tau = 0.4 for its hardest problems (Codeforces rating above 1600).

Wilson 95% interval for k successes in n trials, p = k / n, z = 1.96:

    (p + z^2 / 2n ± z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass

from .problems import normalize_output

PAPER_THRESHOLD, PAPER_HARD_THRESHOLD = 0.6, 0.4


def output_value(verdict: str, stdout: str) -> str:
    """What a run contributes to its output vector: the normalized stdout, or its failure verdict."""
    return normalize_output(stdout) if verdict == "ok" else f"<{verdict}>"


@dataclass(frozen=True)
class Decision:
    accepted: bool
    label: tuple | None  # the labelled output vector (None when rejected)
    members: tuple  # candidate indices in the largest group
    share: float  # |largest group| / n
    reason: str  # "accepted", "below threshold", "tie for largest"


def mutual_verification(vectors: list[tuple], threshold: float) -> Decision:
    """Group candidates' output vectors; accept the largest group if its share >= threshold and unique."""
    if not vectors:
        raise ValueError("mutual verification needs at least one candidate")
    counts = Counter(vectors)
    (top, size), *rest = counts.most_common()
    members = tuple(i for i, v in enumerate(vectors) if v == top)
    share = size / len(vectors)
    if rest and rest[0][1] == size:
        return Decision(False, None, members, share, "tie for largest")
    if share < threshold - 1e-12:  # shares are ratios of small integers: 0.6 must accept 6 of 10
        return Decision(False, None, members, share, "below threshold")
    return Decision(True, top, members, share, "accepted")


def threshold_for(hard: bool, threshold: float = PAPER_THRESHOLD, hard_threshold: float = PAPER_HARD_THRESHOLD) -> float:
    return hard_threshold if hard else threshold


def single_candidate_labels(vectors: list[tuple], rng: random.Random) -> tuple:
    """Baseline: trust one randomly chosen candidate's outputs, with no cross-check."""
    return vectors[rng.randrange(len(vectors))]


def error_probability(scale: int, p0: float, per_decade: float, cap: float = 0.95) -> float:
    """Simulated direct-labelling error rate: p0 at scale 1, + per_decade per factor of 10, capped."""
    return min(cap, p0 + per_decade * math.log10(max(scale, 1)))


def corrupt(output: str, rng: random.Random) -> str:
    """A plausible wrong answer: one integer nudged by +-1 (or YES/NO flipped, or a token changed)."""
    toks = re.split(r"(\s+)", output) if output else ["0"]
    spots = [i for i, t in enumerate(toks) if t and not t.isspace()]
    if not spots:
        return "0"
    i = rng.choice(spots)
    t = toks[i]
    if re.fullmatch(r"-?\d+", t):
        toks[i] = str(int(t) + rng.choice((-1, 1)))
    elif t in ("YES", "NO"):
        toks[i] = "NO" if t == "YES" else "YES"
    else:
        toks[i] = t[:-1] + ("b" if t[-1] != "b" else "a")
    return "".join(toks)


def direct_labels(oracle: list[str], scales: list[int], rng: random.Random, p0: float, per_decade: float) -> list[str]:
    """SIMULATED stand-in for an LLM writing outputs directly (not GPT-4o): each oracle output is
    corrupted with probability error_probability(scale)."""
    return [corrupt(o, rng) if rng.random() < error_probability(s, p0, per_decade) else o
            for o, s in zip(oracle, scales)]


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float, float]:
    """(k / n, low, high): the Wilson score interval, 95% by default."""
    if n <= 0:
        raise ValueError("Wilson interval needs n > 0")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)
