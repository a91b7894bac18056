"""All problem templates, in a fixed order (the order tables and figures use)."""

from __future__ import annotations

from . import templates_arrays, templates_dp, templates_graphs, templates_strings
from .problems import Problem

PROBLEMS: tuple[Problem, ...] = (templates_arrays.PROBLEMS + templates_graphs.PROBLEMS + templates_dp.PROBLEMS
                                 + templates_strings.PROBLEMS)
BY_NAME = {p.name: p for p in PROBLEMS}


def get(name: str) -> Problem:
    if name not in BY_NAME:
        raise KeyError(f"unknown problem {name!r}; valid: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def select(names: list[str] | None) -> list[Problem]:
    """The named problems (all of them for None or an empty list)."""
    return [get(n) for n in names] if names else list(PROBLEMS)
