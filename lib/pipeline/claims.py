"""Claims: a measured number set beside the paper's, or beside this book's own target, with a status
computed by a written rule.

Each chapter's data/paper/<chapter>.yml declares, per claim id: `formula` (how the number is
computed), `unit`, `paper_value` (null where the paper has none), `source` (figure/table) and
`rule`. The status is never typed by hand; `status()` derives it from the rule, and every rule that
compares can fail:

* `ratio` (the paper's number): r = value / paper_value. "reproduced" if |r - 1| <= `within` (or
  r >= 1 when `or_above`), "partly" if |r - 1| <= `partly_within` (likewise), else "not reproduced".
* `at_least` / `at_most` (a bound read from the paper): "reproduced" if value >= (<=) `threshold`,
  "partly" past `partly_threshold`, else "not reproduced".
* `target` (a goal or test of this book, not of the paper): exactly one of `at_least` / `at_most`;
  "met" or "missed".
* `difference` (a point estimate of a difference, recorded with an `interval` [low, high], e.g. a
  bootstrap CI): "reproduced" when low > `margin` (default 0), "not reproduced" when high < `margin`,
  "inconclusive" when the interval holds the margin.
* `measured`: no paper number and no target; status "measured".
* `illustration` (true by construction; `why` says so): status "illustration", shown and never
  counted as reproduced.

A list value is judged element by element: a target is met only when every element meets it; for
the paper's rules a mixed result is "partly". A value of None is "not measurable at this scale" (the
notebook's note gives the reason), and so is a speed claim (`speed: true`) measured without a GPU:
a CPU timing is never a claim about speed.

A claims.json entry keeps the notebook's own words in `note` and the rule's words in `rule_note`
(only when there are some), so `recompute()` can judge a committed value again under the current
rule, without rerunning anything: the book shows statuses under the rules as they are now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import yaml

from .. import repo_root
from ..errors import BookError

STATUSES = ("reproduced", "partly", "not reproduced", "met", "missed", "inconclusive", "measured",
            "illustration", "not measurable at this scale")
FAILING = ("not reproduced", "missed")  # what a rule that compares says when the comparison fails
NOT_MEASURABLE = "not measurable at this scale"
CPU_SPEED = "a CPU timing is never a claim about speed"
FIELDS = ("id", "notebook", "value", "unit", "paper_value", "status", "note", "rule_note", "interval")
OPTIONAL = ("rule_note", "interval")  # written only when there is something to say
# kind -> (keys it needs, keys it may have); a key outside both is a typo and an error
RULE_KINDS = {
    "ratio": ({"within"}, {"partly_within", "or_above"}),
    "at_least": ({"threshold"}, {"partly_threshold"}),
    "at_most": ({"threshold"}, {"partly_threshold"}),
    "target": (set(), {"at_least", "at_most"}),
    "difference": (set(), {"margin"}),
    "measured": (set(), set()),
    "illustration": ({"why"}, set()),
}


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    formula: str  # how the value is computed, in words and symbols
    unit: str  # "x", "GB/s", "ratio", "%", ...
    paper_value: float | list | None  # the paper's number; None where it has none
    source: str | None  # figure/table of the paper it comes from
    rule: dict  # see the module docstring
    speed: bool = False  # a timing: needs a GPU to be a claim


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_rule(where: str, rule: dict, paper_value) -> None:
    """Raise a BookError naming `where` (file and claim) unless `rule` is a complete rule of its kind."""
    kind = rule.get("kind")
    if kind not in RULE_KINDS:
        raise BookError(f"{where}: rule kind {kind!r}; valid: {', '.join(RULE_KINDS)}")
    need, may = RULE_KINDS[kind]
    keys = set(rule) - {"kind"}
    if need - keys or keys - need - may:
        raise BookError(f"{where}: a {kind!r} rule needs {sorted(need) or 'no keys'} and may have {sorted(may) or 'no others'}; "
                        f"got {sorted(keys)}")
    if kind == "target" and len(keys) != 1:
        raise BookError(f"{where}: a 'target' rule needs exactly one of at_least, at_most")
    bad = [k for k in keys & {"within", "partly_within", "threshold", "partly_threshold", "at_least", "at_most", "margin"}
           if not _number(rule[k])]
    if bad:
        raise BookError(f"{where}: rule key(s) {', '.join(sorted(bad))} must be numbers")
    papers = paper_value if isinstance(paper_value, list) else [paper_value]
    if kind == "ratio" and not all(_number(p) and p != 0 for p in papers):
        raise BookError(f"{where}: a 'ratio' rule needs non-zero paper_value(s), got {paper_value!r}")
    sign = {"at_least": 1, "at_most": -1}.get(kind)
    if sign and "partly_threshold" in rule and sign * (rule["threshold"] - rule["partly_threshold"]) < 0:
        raise BookError(f"{where}: partly_threshold must lie on the failing side of threshold")


@lru_cache(maxsize=None)
def paper_specs(chapter: str) -> dict[str, ClaimSpec]:
    path = repo_root() / "data" / "paper" / f"{chapter}.yml"
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    specs = {}
    for cid, c in (raw.get("claims") or {}).items():
        if "rule" not in c:
            raise BookError(f"{path.name}: claim {cid!r} has no rule")
        check_rule(f"{path.name}: claim {cid!r}", c["rule"], c.get("paper_value"))
        specs[cid] = ClaimSpec(cid, c["formula"], c.get("unit", ""), c.get("paper_value"), c.get("source"),
                               dict(c["rule"]), bool(c.get("speed", False)))
    return specs


def spec(chapter: str, claim_id: str) -> ClaimSpec:
    specs = paper_specs(chapter)
    if claim_id not in specs:
        raise BookError(f"claim {claim_id!r} is not declared in data/paper/{chapter}.yml; declared: {', '.join(specs) or 'none'}")
    return specs[claim_id]


# -- judging one number -----------------------------------------------------------------------------
def _ratio(rule: dict, value: float, paper: float) -> str:
    r = value / paper
    above = rule.get("or_above", False) and r >= 1
    if above or abs(r - 1) <= rule["within"]:
        return "reproduced"
    if abs(r - 1) <= rule.get("partly_within", rule["within"]):
        return "partly"
    return "not reproduced"


def _bound(kind: str, rule: dict, value: float) -> str:
    sign = 1 if kind == "at_least" else -1
    if sign * (value - rule["threshold"]) >= 0:
        return "reproduced"
    if "partly_threshold" in rule and sign * (value - rule["partly_threshold"]) >= 0:
        return "partly"
    return "not reproduced"


def _target(rule: dict, value: float) -> str:
    ok = value >= rule["at_least"] if "at_least" in rule else value <= rule["at_most"]
    return "met" if ok else "missed"


def _one(rule: dict, value: float, paper: float | None) -> str:
    kind = rule["kind"]
    if kind == "ratio":
        return _ratio(rule, value, paper)
    if kind == "target":
        return _target(rule, value)
    return _bound(kind, rule, value)


def _combine(kind: str, each: list[str]) -> str:
    """One status for a list value: a target holds only if every element meets it."""
    if kind == "target":
        return "missed" if "missed" in each else "met"
    if len(set(each)) == 1:
        return each[0]
    return "partly" if any(e in ("reproduced", "partly") for e in each) else "not reproduced"


def _difference(s: ClaimSpec, value, interval) -> tuple[str, str]:
    if interval is None:
        raise BookError(f"claim {s.id!r}: a 'difference' rule needs an interval [low, high] with its value")
    lo, hi = check_interval(s.id, value, interval)
    margin = s.rule.get("margin", 0)
    st, side = (("reproduced", "above") if lo > margin else ("not reproduced", "below") if hi < margin
                else ("inconclusive", "holds"))
    return st, f"interval [{lo:.4g}, {hi:.4g}] {side} {margin:g}"


def check_interval(claim_id: str, value, interval) -> list[float] | None:
    """[low, high] as floats, with low <= value <= high; None stays None."""
    if interval is None:
        return None
    if not (isinstance(interval, (list, tuple)) and len(interval) == 2 and all(_number(x) for x in interval)):
        raise BookError(f"claim {claim_id!r}: interval must be two finite numbers [low, high], got {interval!r}")
    lo, hi = float(interval[0]), float(interval[1])
    if not _number(value) or not lo <= value <= hi:
        raise BookError(f"claim {claim_id!r}: an interval needs one value inside it, low <= value <= high; "
                        f"got value {value!r}, interval [{lo}, {hi}]")
    return [lo, hi]


def status(s: ClaimSpec, value, *, on_gpu: bool, interval=None) -> tuple[str, str]:
    """(status, the rule's note) for `value` (and its `interval`, if any) under the spec's rule."""
    kind = s.rule["kind"]
    if value is None:
        return NOT_MEASURABLE, ""
    if s.speed and not on_gpu:
        return NOT_MEASURABLE, CPU_SPEED
    if kind == "difference":
        return _difference(s, value, interval)
    if kind == "measured":
        return "measured", ""
    if kind == "illustration":
        return "illustration", s.rule["why"]
    values = value if isinstance(value, list) else [value]
    papers = s.paper_value if isinstance(s.paper_value, list) else [s.paper_value] * len(values)
    if len(papers) != len(values):
        raise BookError(f"claim {s.id!r}: {len(values)} values but {len(papers)} paper values")
    st = _combine(kind, [_one(s.rule, float(v), p) for v, p in zip(values, papers)])
    if kind == "target":
        op, bar = (">=", s.rule["at_least"]) if "at_least" in s.rule else ("<=", s.rule["at_most"])
        return st, f"book's target {op} {bar:g}"
    return st, ""


# -- claims.json entries --------------------------------------------------------------------------------
def new_entry(chapter: str, claim_id: str, notebook: str, value, note: str, interval, on_gpu: bool) -> dict:
    """A new claims.json entry; the status and the rule's note come from the rule."""
    s = spec(chapter, claim_id)
    if value is None and not note:
        raise BookError(f"claim {claim_id!r}: a value of None needs a one-line reason in `note`")
    if isinstance(value, (list, tuple)):
        value = [float(v) for v in value]
    elif value is not None:
        value = float(value)
    out = {"id": claim_id, "notebook": notebook, "value": value, "unit": s.unit, "paper_value": s.paper_value,
           "note": note}
    if interval is not None:
        out["interval"] = check_interval(claim_id, value, interval)
    return rejudged(chapter, out, on_gpu)


def recompute(chapter: str, entry: dict, on_gpu: bool) -> tuple[str, str]:
    """(status, the rule's note) of a committed claims.json entry under the current rule in
    data/paper/<chapter>.yml; `on_gpu` is whether its notebook ran on a GPU (its provenance)."""
    return status(spec(chapter, entry["id"]), entry["value"], on_gpu=on_gpu, interval=entry.get("interval"))


def rejudged(chapter: str, entry: dict, on_gpu: bool) -> dict:
    """The entry with `status` and `rule_note` recomputed; every other field as it was."""
    st, rule_note = recompute(chapter, entry, on_gpu)
    out = {k: v for k, v in entry.items() if k not in ("status", "rule_note")}
    out.update(status=st, rule_note=rule_note)
    order = [k for k in FIELDS if k in out and (k not in OPTIONAL or out[k] not in (None, ""))]
    return {k: out[k] for k in order + [k for k in out if k not in FIELDS]}
