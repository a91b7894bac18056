"""Claims: a measured number set beside the paper's, with a status computed by a written rule.

Each chapter's data/paper/<chapter>.yml declares, per claim id: `formula` (how the number is
computed), `unit`, `paper_value` (null where the paper has none), `source` (figure/table) and
`rule`. The status is never typed by hand; `status()` derives it from the rule:

* kind `ratio`: r = value / paper_value. "reproduced" if |r - 1| <= `within` (or r >= 1 when
  `or_above`), "partly" if |r - 1| <= `partly_within` (likewise), else "not reproduced".
* kind `at_least` / `at_most`: "reproduced" if value >= (<=) `threshold`, "partly" past
  `partly_threshold`, else "not reproduced". Used where the paper states a bound.
* kind `measured`: no paper number to compare; status "measured". An optional `target_at_least`
  (a goal of this book, not of the paper) is reported in the note as met or missed.

A claim whose `speed` is true, measured without a GPU, is "not measurable at this scale": a CPU
timing is never a claim about speed. A value of None needs a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import yaml

from .. import repo_root
from ..errors import BookError

STATUSES = ("reproduced", "partly", "not reproduced", "measured", "not measurable at this scale")
RULE_KINDS = ("ratio", "at_least", "at_most", "measured")


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    formula: str  # how the value is computed, in words and symbols
    unit: str  # "x", "GB/s", "ratio", "%", ...
    paper_value: float | list | None  # the paper's number; None where it has none
    source: str | None  # figure/table of the paper it comes from
    rule: dict  # see the module docstring
    speed: bool = False  # a timing: needs a GPU to be a claim


@lru_cache(maxsize=None)
def paper_specs(chapter: str) -> dict[str, ClaimSpec]:
    path = repo_root() / "data" / "paper" / f"{chapter}.yml"
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    specs = {}
    for cid, c in (raw.get("claims") or {}).items():
        rule = c.get("rule") or {"kind": "measured"}
        if rule.get("kind") not in RULE_KINDS:
            raise BookError(f"{path.name}: claim {cid!r} has rule kind {rule.get('kind')!r}; valid: {', '.join(RULE_KINDS)}")
        specs[cid] = ClaimSpec(cid, c["formula"], c.get("unit", ""), c.get("paper_value"), c.get("source"),
                               rule, bool(c.get("speed", False)))
    return specs


def spec(chapter: str, claim_id: str) -> ClaimSpec:
    specs = paper_specs(chapter)
    if claim_id not in specs:
        raise BookError(f"claim {claim_id!r} is not declared in data/paper/{chapter}.yml; declared: {', '.join(specs) or 'none'}")
    return specs[claim_id]


def _one(rule: dict, value: float, paper: float | None) -> str:
    kind = rule["kind"]
    if kind == "measured":
        return "measured"
    if kind == "ratio":
        if paper in (None, 0):
            raise BookError("a 'ratio' rule needs a non-zero paper_value")
        r = value / paper
        above = rule.get("or_above", False) and r >= 1
        if above or abs(r - 1) <= rule["within"]:
            return "reproduced"
        if abs(r - 1) <= rule.get("partly_within", rule["within"]):
            return "partly"
        return "not reproduced"
    sign = 1 if kind == "at_least" else -1
    if sign * (value - rule["threshold"]) >= 0:
        return "reproduced"
    if "partly_threshold" in rule and sign * (value - rule["partly_threshold"]) >= 0:
        return "partly"
    return "not reproduced"


def status(s: ClaimSpec, value, *, on_gpu: bool) -> tuple[str, str]:
    """(status, automatic note) for `value` under the spec's rule."""
    if value is None:
        return "not measurable at this scale", ""
    if s.speed and not on_gpu:
        return "not measurable at this scale", "a CPU timing is never a claim about speed"
    values = value if isinstance(value, list) else [value]
    papers = s.paper_value if isinstance(s.paper_value, list) else [s.paper_value] * len(values)
    if len(papers) != len(values):
        raise BookError(f"claim {s.id!r}: {len(values)} values but {len(papers)} paper values")
    each = [_one(s.rule, float(v), None if p is None else float(p)) for v, p in zip(values, papers)]
    if len(set(each)) == 1:
        st = each[0]
    else:
        st = "partly" if any(e in ("reproduced", "partly") for e in each) else "not reproduced"
    note = ""
    target = s.rule.get("target_at_least")
    if target is not None:
        met = all(float(v) >= target for v in values)
        note = f"book's target >= {target}: {'met' if met else 'missed'}"
    return st, note
