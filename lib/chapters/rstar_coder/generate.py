"""Three-step test-input generation (rStar-Coder, section 3).

1. A generator with scale parameters: `problem.generate(rng, {name: value})`, which returns None when
   the values break a constraint it knows about.
2. Each scale parameter is instantiated from the grid

       C = {1, ..., 9} ∪ {10^i : 0 <= i <= e},

   capped by the problem's `max_scale` (e = 5 for most problems here: 10^5). The first (main)
   parameter walks the grid round-robin, so every grid value is used about equally often; the
   others are drawn uniformly from their own grid.
3. A validator parses each generated input and checks every constraint; rejected inputs are
   dropped and counted.

`ceiling` restricts the grid to values <= ceiling: `ceiling=1000` gives the small-only inputs the
paper observed when GPT-4o is prompted for inputs directly ("never exceed 10^3").
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from .problems import Problem, normalize_output, run_trusted

SMALL_CEILING = 1000  # the paper's observed ceiling of prompted inputs


def scale_grid(max_value: int, ceiling: int | None = None, max_exp: int = 5) -> list[int]:
    """C = {1..9} ∪ {10^i : i <= max_exp}, values above max_value (or ceiling) removed."""
    top = min(max_value, ceiling) if ceiling else max_value
    return sorted(v for v in set(range(1, 10)) | {10**i for i in range(max_exp + 1)} if v <= top)


@dataclass
class InputSet:
    problem: str
    inputs: list[str] = field(default_factory=list)  # kept (validated) input texts
    scales: list[dict] = field(default_factory=list)  # the scale parameters of each kept input
    attempts: int = 0  # generator calls
    declined: int = 0  # generator returned None (parameters break a constraint it knows)
    rejected: int = 0  # generated but refused by the validator

    @property
    def max_scales(self) -> list[int]:
        """Each input's largest scale value: its order of magnitude."""
        return [max(s.values()) for s in self.scales]


def generate_inputs(problem: Problem, n_inputs: int, seed: int, ceiling: int | None = None,
                    max_attempts_factor: int = 4) -> InputSet:
    """Up to n_inputs validated inputs (fewer only if max_attempts_factor * n_inputs calls do not suffice)."""
    grids = {name: scale_grid(top, ceiling) for name, top in problem.max_scale.items()}
    main, others = problem.scales[0], problem.scales[1:]
    rng = random.Random(f"{problem.name}:{seed}:{ceiling}")  # str seeds hash deterministically (SHA-512)
    out = InputSet(problem.name)
    while len(out.inputs) < n_inputs and out.attempts < max_attempts_factor * n_inputs:
        scales = {main: grids[main][out.attempts % len(grids[main])]}
        scales.update({name: rng.choice(grids[name]) for name in others})
        out.attempts += 1
        text = problem.generate(rng, scales)
        if text is None:
            out.declined += 1
        elif not problem.validate(text):
            out.rejected += 1
        else:
            out.inputs.append(text)
            out.scales.append(scales)
    return out


def oracle_outputs(problem: Problem, inputs: list[str]) -> tuple[list[str], float]:
    """The trusted oracle's normalized outputs, and its total wall time in seconds (in-process)."""
    t0 = time.perf_counter()
    outs = [normalize_output(run_trusted(problem.oracle, text)) for text in inputs]
    return outs, time.perf_counter() - t0


def magnitude(value: int) -> int:
    """floor(log10(value)): 0 for 1..9, 1 for 10..99, ..."""
    return int(math.floor(math.log10(value)))
