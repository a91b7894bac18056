"""Rewrite the `status` and `rule_note` of every committed claims.json under the current rules in
data/paper/<chapter>.yml, from the committed values; no value, interval or provenance changes.

    .venv/bin/python tools/rejudge_claims.py          # rewrite
    .venv/bin/python tools/rejudge_claims.py --check  # list what would change, exit 1 if anything

The book already shows statuses under the current rules (bookpages recomputes them); this keeps the
committed files, which people read too, in step after a rule changes. Whether a notebook ran on a
GPU comes from its provenance record beside the claims.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from msrbook import repo_root
from msrbook.pipeline.claims import rejudged

# Entries written before `rule_note` existed carry the rule's words at the end of `note`.
LEGACY_RULE_NOTE = re.compile(r"(^|; )book's target >= [0-9.e+-]+: (met|missed)$")


def split_legacy(entry: dict) -> dict:
    out = dict(entry)
    out["note"] = LEGACY_RULE_NOTE.sub("", entry.get("note") or "")
    return out


def rejudge_file(path: Path, results_root: Path) -> tuple[list, list]:
    """(old entries, new entries) of one claims.json."""
    chapter = path.relative_to(results_root).parts[0]
    prov = json.loads((path.parent / "provenance.json").read_text())
    old = json.loads(path.read_text())
    new = []
    for c in old:
        on_gpu = bool(((prov.get(c["notebook"]) or {}).get("device") or {}).get("gpu"))
        n = rejudged(chapter, split_legacy(c), on_gpu)
        if (n["value"], n.get("interval")) != (c["value"], c.get("interval")):
            raise AssertionError(f"{path}: {c['id']}: a value changed")  # never: rejudging reads values only
        new.append(n)
    return old, new


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of step")
    args = ap.parse_args(argv)
    root = repo_root() / "data" / "results"
    changed = 0
    for path in sorted(root.glob("*/**/claims.json")):
        old, new = rejudge_file(path, root)
        for o, n in zip(old, new):
            if o != n:
                changed += 1
                print(f"{path.relative_to(root)}: {o['id']}: {o['status']!r} -> {n['status']!r}"
                      f"{'' if n.get('rule_note') is None else ' (' + n['rule_note'] + ')'}")
        if not args.check and old != new:
            path.write_text(json.dumps(new, indent=2) + "\n")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
